"""The real `relay` of a node-locked venv, run as a subprocess (issue 7's acceptance)."""

from __future__ import annotations

import hashlib
import http.client
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import relay_cli
from relay_cli.wheel import write_wheel
from relay_core.errors import SignatureError
from relay_core.signing import load_public_key, verify, verify_ed25519
from relay_core.testing import tamper

from .conftest import LICENSE_KEY, SIGNING_SECRET, LockedInstall, Run, clean_env, run

KEY_ENV = {"RELAY_NODE_LOCKED_LICENSE_KEY": LICENSE_KEY}
NOW = time.time()


@pytest.fixture
def site(tmp_path: Path, locked_install: LockedInstall) -> Path:
    """A customer's working directory holding a valid ./relay.lic for this machine."""
    (tmp_path / "relay.lic").write_bytes(locked_install.machine_file())
    return tmp_path


def add_license(install: LockedInstall, site: Path, name: str = "one") -> tuple[Run, str]:
    key = f"KEY-{name.upper()}"
    path = site / f"{name}.lic"
    path.write_bytes(install.writer.license(key=key, issued=NOW - 60))
    return install.relay("add", "--file", str(path), "--key", key, cwd=site, env=KEY_ENV), key


def unlock_failure(result: Run) -> str:
    """The reason of `Error: failed to unlock relay: <reason>`, checking it is the one line."""
    assert result.code == 1, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    prefix = "Error: failed to unlock relay: "
    assert lines[0].startswith(prefix), result.err
    return lines[0].removeprefix(prefix)


def test_version_carries_the_node_locked_suffix(
    locked_install: LockedInstall, tmp_path: Path
) -> None:
    """`relay version` ends with +node-locked.<first 4>..<last 4> of this machine's fingerprint."""
    fp = locked_install.fingerprint
    expected = f"{relay_cli.__version__}+node-locked.{fp[:4]}..{fp[-4:]}"
    assert locked_install.relay("version", cwd=tmp_path) == Run(0, expected + "\n", "")
    assert locked_install.relay("--version", cwd=tmp_path).out == f"relay version {expected}\n"
    assert locked_install.relay("-v", "version", cwd=tmp_path).out == expected + "\n"
    assert list(tmp_path.iterdir()) == []


def test_valid_machine_file_add_without_public_key_then_ls(
    locked_install: LockedInstall, site: Path
) -> None:
    """With the right machine file and key, `add` (no --public-key) and `ls` work."""
    added, _ = add_license(locked_install, site)
    assert added.code == 0, added.err
    assert added.out.startswith("license added successfully: ")
    guid = added.out.split(": ", 1)[1].strip()
    listed = locked_install.relay("ls", "--plain", cwd=site, env=KEY_ENV)
    assert listed.code == 0, listed.err
    assert guid in listed.out
    assert (site / "relay.sqlite").exists()


def test_public_key_flag_does_not_exist_when_locked(
    locked_install: LockedInstall, site: Path
) -> None:
    """`add --public-key` is an unknown flag: the vendor's key cannot be swapped."""
    path = site / "x.lic"
    path.write_bytes(locked_install.writer.license(key="K"))
    result = locked_install.relay(
        "add", "--file", str(path), "--key", "K", "--public-key", "00" * 32, cwd=site, env=KEY_ENV
    )
    assert (result.code, result.err) == (1, "Error: unknown flag: --public-key\n")
    assert not (site / "relay.sqlite").exists()


@pytest.fixture
def server(locked_install: LockedInstall, site: Path) -> Iterator[subprocess.Popen[str]]:
    """`relay serve` of the locked venv on the locked address and port, stopped afterwards."""
    env = clean_env(
        {
            **KEY_ENV,
            "RELAY_PORT": "1",
            "RELAY_ADDR": "0.0.0.0",
            "RELAY_SIGNING_SECRET": "env",
            "RELAY_SIGNING_KEY_FILE": "/nonexistent/key.pem",  # ignored: the lock has a key
        }
    )
    process = subprocess.Popen(
        [locked_install.relay_path, "serve"],
        cwd=site,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_serve_answers_health_on_the_locked_address_port_and_secret(
    locked_install: LockedInstall, server: subprocess.Popen[str]
) -> None:
    """The locked port, address and signing secret win over RELAY_PORT/RELAY_ADDR/RELAY_SIGNING_SECRET."""
    deadline = time.monotonic() + 20
    answer = None
    while answer is None and time.monotonic() < deadline:
        assert server.poll() is None, server.communicate()
        try:
            answer = get(locked_install.port, "/v1/health")
        except OSError:
            time.sleep(0.05)
    assert answer is not None, "relay serve did not answer in time"
    status, headers, body = answer
    assert status == 200
    verify(headers["relay-signature"], body, SIGNING_SECRET, now=time.time())
    with pytest.raises(SignatureError):
        verify(headers["relay-signature"], body, "env", now=time.time())
    public = load_public_key(locked_install.signing_public_key)
    verify_ed25519(headers["relay-signature"], body, public, now=time.time())


@pytest.mark.parametrize(
    "flag",
    [
        ("--port", "1"),
        ("-p", "1"),
        ("--bind", "0.0.0.0"),
        ("-b", "0.0.0.0"),
        ("--signing-secret", "x"),
        ("--signing-key-file", "x"),
    ],
)
def test_locked_serve_flags_are_unknown(
    locked_install: LockedInstall, site: Path, flag: tuple[str, str]
) -> None:
    """A locked port, address and secret remove their serve flags."""
    result = locked_install.relay("serve", *flag, cwd=site, env=KEY_ENV)
    assert result.code == 1
    word = flag[0]
    unknown = (
        f"unknown flag: {word}"
        if word.startswith("--")
        else f"unknown shorthand flag: {word[1]!r} in {word}"
    )
    assert result.err == f"Error: {unknown}\n"
    assert result.err.count("\n") == 1
    assert not (site / "relay.sqlite").exists()


def test_license_key_never_appears_in_logs(locked_install: LockedInstall, site: Path) -> None:
    """At -vvvv the unlock logs its steps but never the license key, on success or failure."""
    ok = locked_install.relay("-vvvv", "ls", cwd=site, env=KEY_ENV)
    assert ok.code == 0, ok.err
    assert "relay is node-locked" in ok.err
    bad = locked_install.relay(
        "-vvvv", "ls", cwd=site, env={"RELAY_NODE_LOCKED_LICENSE_KEY": "BAD-SECRET-KEY"}
    )
    assert bad.code == 1
    for text in (ok.out, ok.err, bad.out, bad.err):
        assert LICENSE_KEY not in text
        assert "BAD-SECRET-KEY" not in text


def other_fingerprint(fingerprint: str) -> str:
    return hashlib.sha256(fingerprint.encode()).hexdigest()


CASES = {
    "another machine's file": (
        {"fingerprint": "other"},
        "machine file could not be decrypted: machine file is invalid (wrong license key",
    ),
    "wrong hostname": ({"hostname": "not-this-host"}, "machine file hostname mismatch"),
    "wrong platform": ({"platform": "windows/arm64"}, "machine file platform mismatch"),
    "expired": (
        {"issued": NOW - 7200, "expiry": NOW - 3600},
        "machine file could not be decrypted: machine file is expired",
    ),
    "issued in the future": (
        {"issued": NOW + 3600},
        "machine file is desynced with system clock: system clock is out of sync",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_wrong_machine_file_fails_to_unlock_and_creates_no_database(
    locked_install: LockedInstall, tmp_path: Path, case: str
) -> None:
    """Each wrong machine file: exit 1, `failed to unlock relay: <reason>`, no database file."""
    changes, reason = CASES[case]
    if changes.get("fingerprint") == "other":
        changes = {"fingerprint": other_fingerprint(locked_install.fingerprint)}
    if "platform" in changes and locked_install.platform is None:
        pytest.skip("platform is not locked on this kind of machine")
    (tmp_path / "relay.lic").write_bytes(locked_install.machine_file(**changes))
    for args in (("ls",), ("add", "--file", "x.lic", "--key", "k"), ("stat", "--license", "x")):
        assert unlock_failure(locked_install.relay(*args, cwd=tmp_path, env=KEY_ENV)).startswith(
            reason
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relay.lic"]


def test_tampered_wrong_key_and_missing_files_fail_to_unlock(
    locked_install: LockedInstall, site: Path
) -> None:
    """Tampered file, wrong license key, no key, missing file: each its §6.2 reason, no database."""
    valid = (site / "relay.lic").read_bytes()
    (site / "tampered.lic").write_bytes(tamper(valid))
    relay = locked_install.relay
    tampered = relay("--node-locked-machine-file-path", "tampered.lic", "ls", cwd=site, env=KEY_ENV)
    assert unlock_failure(tampered).startswith(
        "machine file could not be verified: machine file is invalid ("
    )
    wrong_key = relay("--node-locked-license-key", "WRONG-KEY", "ls", cwd=site)
    assert unlock_failure(wrong_key).startswith(
        "machine file could not be decrypted: machine file is invalid (wrong license key"
    )
    assert unlock_failure(relay("ls", cwd=site)) == "license key is required"
    missing = relay(
        "ls", cwd=site, env={**KEY_ENV, "RELAY_NODE_LOCKED_MACHINE_FILE_PATH": "gone.lic"}
    )
    assert unlock_failure(missing) == (
        "machine file could not be read: open gone.lic: no such file or directory"
    )
    assert not (site / "relay.sqlite").exists()


def test_failed_unlock_leaves_an_existing_database_byte_for_byte(
    locked_install: LockedInstall, site: Path
) -> None:
    """A database made while unlocked is not touched (not even opened) by a failed unlock."""
    added, _ = add_license(locked_install, site)
    assert added.code == 0, added.err
    db = site / "relay.sqlite"
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    guid = added.out.split(": ", 1)[1].strip()
    wrong = {"RELAY_NODE_LOCKED_LICENSE_KEY": "WRONG"}
    for args in (("del", "--license", guid), ("ls",), ("--no-audit", "stat", "--license", guid)):
        unlock_failure(locked_install.relay(*args, cwd=site, env=wrong))
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before
    assert sorted(p.name for p in site.iterdir()) == ["one.lic", "relay.lic", "relay.sqlite"]


@pytest.mark.parametrize(
    "args", [("--help",), ("help", "serve"), ("fingerprint",), ("completion", "bash")]
)
def test_help_fingerprint_and_completion_need_no_machine_file(
    locked_install: LockedInstall, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """These commands run without a machine file or key and create nothing."""
    result = locked_install.relay(*args, cwd=tmp_path)
    assert result.code == 0, result.err
    assert list(tmp_path.iterdir()) == []


def test_locked_help_and_version_do_not_import_crypto(
    locked_install: LockedInstall, tmp_path: Path
) -> None:
    """The lock checks import relay-core's crypto lazily: help and version stay light."""
    probe = (
        "import json, sys\n"
        "sys.argv = ['relay', *json.loads(sys.argv[1])]\n"
        "from relay_cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)) + '\\n')\n"
    )
    for args in (["version"], ["--help"], ["serve", "--help"]):
        done = run([locked_install.python, "-c", probe, json.dumps(args)], cwd=tmp_path)
        modules = {name.split(".")[0] for name in json.loads(done.err.rsplit("MODULES ", 1)[1])}
        assert "relay_lock" in modules
        assert modules.isdisjoint({"cryptography", "relay_sqlite", "sqlite3", "falcon"}), args


@pytest.fixture
def swapped_lock(locked_install: LockedInstall, tmp_path: Path) -> Iterator[LockedInstall]:
    """Lets a test replace the installed lock; the session's lock is put back afterwards."""
    try:
        yield locked_install
    finally:
        locked_install.pip_install(next(locked_install.dist.glob("relay_lock-*.whl")))


def test_lock_for_another_machine_is_a_fingerprint_mismatch(
    swapped_lock: LockedInstall, tmp_path: Path
) -> None:
    """A lock built for another fingerprint (an install copied to this host) refuses to unlock."""
    install = swapped_lock
    foreign = install.build_lock(
        tmp_path / "foreign", fingerprint=other_fingerprint(install.fingerprint)
    )
    install.pip_install(foreign)
    (tmp_path / "relay.lic").write_bytes(install.machine_file())
    result = install.relay("ls", cwd=tmp_path, env=KEY_ENV)
    assert unlock_failure(result) == "machine file fingerprint mismatch"
    assert not (tmp_path / "relay.sqlite").exists()


def test_uninstalling_the_lock_wheel_unlocks(swapped_lock: LockedInstall, tmp_path: Path) -> None:
    """Without the lock wheel relay is unlocked again: no suffix, --public-key is back (docs say so)."""
    install = swapped_lock
    install.pip_uninstall("relay-lock")
    assert install.relay("version", cwd=tmp_path).out == relay_cli.__version__ + "\n"
    result = install.relay("add", "--file", "x.lic", "--key", "k", cwd=tmp_path)
    assert result.err == 'Error: required flag(s) "public-key" not set\n'


def test_a_second_lock_makes_every_command_fail_closed(
    swapped_lock: LockedInstall, tmp_path: Path
) -> None:
    """Two distributions in the relay.lock group: even `version` refuses, nothing is created."""
    install = swapped_lock
    extra = write_wheel(
        tmp_path / "extra",
        name="relay-lock-extra",
        version="1.0",
        summary="a second lock",
        files={"relay_lock_extra.py": b"LOCK = {}\n"},
        entry_points={"relay.lock": {"node": "relay_lock_extra:LOCK"}},
    )
    install.pip_install(extra)
    try:
        for args in (("version",), ("ls",)):
            result = install.relay(*args, cwd=tmp_path, env=KEY_ENV)
            assert unlock_failure(result).startswith("more than one node lock is installed: ")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["extra"]
    finally:
        install.pip_uninstall("relay-lock-extra")

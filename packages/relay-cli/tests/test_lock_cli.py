"""Locked mode through the real app: the unlock checks, removed flags, version, lock build."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from relay_cli.locking import LockConfig, UnlockError, unlock
from relay_cli.machine import Interface, LocalMachine, MachineError
from relay_cli.server import resolve_options
from relay_core.testing import LicenseWriter, tamper

from .conftest import Cli

MACHINE_ID = "3d1219c7c4c5404aaa1f6d2a48adfda4"
FINGERPRINT = "d79af7edac07c0273df28ab7cb304f623e483df88d6d667e3e3ae730fa6352b1"
OTHER_FINGERPRINT = "0" * 64
LICENSE_KEY = "MACHINE-LICENSE-KEY-V3"
DAY = 86400.0


def this_machine(
    *,
    machine_id: str = MACHINE_ID,
    platform: str = "linux/amd64",
    hostname: str = "relay-01",
    ip: str = "192.168.1.20",
) -> LocalMachine:
    def no_hostname() -> str:
        raise MachineError("hostname unavailable")

    return LocalMachine(
        machine_id=lambda: machine_id,
        platform_name=lambda: platform,
        host_name=no_hostname if hostname == "" else (lambda: hostname),
        interfaces=lambda: [
            Interface(1, "lo", up=True, loopback=True, ipv4=("127.0.0.1",)),
            Interface(2, "eth0", up=True, loopback=False, ipv4=(ip,)),
        ],
    )


def full_lock(writer: LicenseWriter, **changes: object) -> LockConfig:
    values: dict[str, object] = {
        "public_key": writer.public_key,
        "fingerprint": FINGERPRINT,
        "platform": "linux/amd64",
        "hostname": "relay-01",
        "ip": "192.168.1.20",
    }
    values.update(changes)
    return LockConfig.from_values(values)


def machine_file(writer: LicenseWriter, now: float, **changes: object) -> bytes:
    kwargs: dict[str, object] = {
        "license_key": LICENSE_KEY,
        "fingerprint": FINGERPRINT,
        "platform": "linux/amd64",
        "hostname": "relay-01",
        "ip": "192.168.1.20",
        "issued": now - 60,
        "expiry": now + DAY,
    }
    kwargs.update(changes)
    return writer.machine(**kwargs)  # type: ignore[arg-type]


@pytest.fixture
def locked(cli: Cli) -> Cli:
    """`cli` with a full lock for this (fake) machine and a valid ./relay.lic beside it."""
    cli.lock = full_lock(cli.writer)
    cli.machine = this_machine()
    path = cli.tmp / "relay.lic"
    path.write_bytes(machine_file(cli.writer, cli.clock.now()))
    cli.env["RELAY_NODE_LOCKED_MACHINE_FILE_PATH"] = str(path)
    cli.env["RELAY_NODE_LOCKED_LICENSE_KEY"] = LICENSE_KEY
    return cli


def check(cli: Cli, raw: bytes | None = None, **kwargs: object) -> str:
    """Run `unlock` for `cli`'s lock and machine on `raw` (default: the valid file); '' if it passes."""
    assert cli.lock is not None
    assert cli.machine is not None
    path = cli.tmp / "checked.lic"
    if raw is not None:
        path.write_bytes(raw)
    options: dict[str, object] = {
        "machine_file_path": str(path if raw is not None else cli.tmp / "relay.lic"),
        "license_key": LICENSE_KEY,
        "machine": cli.machine,
        "now": cli.clock.now(),
    }
    options.update(kwargs)
    try:
        unlock(cli.lock, **options)  # type: ignore[arg-type]
    except UnlockError as exc:
        return str(exc)
    return ""


def test_valid_machine_file_unlocks(locked: Cli) -> None:
    """A file for this fingerprint, platform, hostname and ip, in date, passes every check."""
    assert check(locked) == ""


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"platform": "linux/arm64"}, "machine file platform mismatch"),
        ({"platform": None}, "machine file platform mismatch"),
        ({"hostname": "relay-02"}, "machine file hostname mismatch"),
        ({"ip": "192.168.1.21"}, "machine file ip mismatch"),
        (
            {"expiry": 1.0, "issued": 0.0},
            "machine file could not be decrypted: machine file is expired",
        ),
    ],
)
def test_machine_file_values_must_match(
    locked: Cli, changes: dict[str, object], reason: str
) -> None:
    """Each attribute of the machine file is compared with the lock (spec §6.2 messages)."""
    assert check(locked, machine_file(locked.writer, locked.clock.now(), **changes)) == reason


def test_future_issued_machine_file_means_clock_out_of_sync(locked: Cli) -> None:
    """Issued more than five minutes ahead: the clock is called out of sync."""
    raw = machine_file(locked.writer, locked.clock.now(), issued=locked.clock.now() + 600)
    assert check(locked, raw) == (
        "machine file is desynced with system clock: system clock is out of sync"
    )


def test_machine_file_naming_another_fingerprint_is_a_mismatch(locked: Cli) -> None:
    """A file encrypted for this machine whose dataset names another fingerprint is refused."""
    document = {
        "data": {"id": "m-1", "type": "machines", "attributes": {"fingerprint": OTHER_FINGERPRINT}},
        "meta": {"issued": "2025-12-09T00:00:00.000Z", "expiry": None, "ttl": 0},
    }
    raw = locked.writer.seal(
        json.dumps(document).encode(), LICENSE_KEY + FINGERPRINT, alg=None, kind="machine"
    )
    assert check(locked, raw) == "machine file fingerprint mismatch"


def test_machine_file_of_another_machine_cannot_be_decrypted(locked: Cli) -> None:
    """A file issued for another fingerprint is encrypted with another key."""
    raw = machine_file(locked.writer, locked.clock.now(), fingerprint=OTHER_FINGERPRINT)
    assert check(locked, raw).startswith(
        "machine file could not be decrypted: machine file is invalid (wrong license key"
    )


def test_copied_installation_reports_a_fingerprint_mismatch(locked: Cli) -> None:
    """On another machine the computed fingerprint differs from the lock's: mismatch."""
    assert check(locked, machine=this_machine(machine_id="another-machine")) == (
        "machine file fingerprint mismatch"
    )


@pytest.mark.parametrize(
    ("machine", "reason"),
    [
        (this_machine(platform="linux/arm64"), "machine file platform mismatch"),
        (this_machine(hostname="relay-02"), "machine file hostname mismatch"),
        (this_machine(hostname=""), "machine could not determine hostname: hostname unavailable"),
        (this_machine(ip="192.168.1.99"), "machine file ip mismatch"),
        (this_machine(ip="192.0.2.2"), "machine could not determine ip: no private ip found"),
    ],
)
def test_this_machine_must_match_the_lock(locked: Cli, machine: LocalMachine, reason: str) -> None:
    """The real platform, hostname and ip are compared too, with spec §6.2 messages."""
    assert check(locked, machine=machine) == reason


@pytest.mark.parametrize("field", ["platform", "hostname", "ip"])
def test_lock_value_differing_from_file_and_machine_is_a_mismatch(locked: Cli, field: str) -> None:
    """The lock's own value must equal both the machine file's and the machine's."""
    other = {"platform": "linux/arm64", "hostname": "relay-02", "ip": "10.0.0.1"}[field]
    locked.lock = full_lock(locked.writer, **{field: other})
    assert check(locked) == f"machine file {field} mismatch"


def test_unset_lock_values_are_not_checked(locked: Cli) -> None:
    """A lock with only key and fingerprint ignores platform, hostname and ip."""
    locked.lock = LockConfig(public_key=locked.writer.public_key, fingerprint=FINGERPRINT)
    assert (
        check(locked, machine=this_machine(platform="linux/386", hostname="", ip="8.8.8.8")) == ""
    )


def test_missing_machine_id_is_reported(locked: Cli) -> None:
    """No machine id: `machine could not determine fingerprint: ...`."""

    def no_id() -> str:
        raise MachineError("no machine id found (looked in /x)")

    machine = LocalMachine(machine_id=no_id)
    assert check(locked, machine=machine) == (
        "machine could not determine fingerprint: no machine id found (looked in /x)"
    )


def test_required_values_and_unreadable_files(locked: Cli) -> None:
    """Empty path, empty key, missing file, tampered file and wrong key each have their reason."""
    assert check(locked, machine_file_path="") == "machine file path is required"
    assert check(locked, license_key="") == "license key is required"
    missing = str(locked.tmp / "nope.lic")
    assert check(locked, machine_file_path=missing) == (
        f"machine file could not be read: open {missing}: no such file or directory"
    )
    valid = (locked.tmp / "relay.lic").read_bytes()
    assert check(locked, tamper(valid)).startswith(
        "machine file could not be verified: machine file is invalid ("
    )
    assert check(locked, license_key="WRONG").startswith(
        "machine file could not be decrypted: machine file is invalid (wrong license key"
    )
    signed_by_other = machine_file(LicenseWriter.ed25519(), locked.clock.now())
    assert check(locked, signed_by_other) == (
        "machine file could not be verified: machine file is invalid "
        "(signature does not match public key)"
    )


def test_locked_add_uses_the_locked_key_and_has_no_public_key_flag(locked: Cli) -> None:
    """`add` works without --public-key; passing it, even via RELAY_PUBLIC_KEY, changes nothing."""
    path, key = locked.license("one")
    locked.env["RELAY_PUBLIC_KEY"] = LicenseWriter.ed25519().public_key
    result = locked("add", "--file", path, "--key", key)
    assert (result.code, result.err) == (0, "")
    assert len(locked.guids()) == 1
    rejected = locked("add", "--file", path, "--key", key, "--public-key", locked.writer.public_key)
    assert (rejected.code, rejected.err) == (1, "Error: unknown flag: --public-key\n")
    assert "--public-key" not in locked("add", "--help").out


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"RELAY_NODE_LOCKED_LICENSE_KEY": "WRONG"}, "machine file could not be decrypted"),
        ({"RELAY_NODE_LOCKED_LICENSE_KEY": ""}, "license key is required"),
        (
            {"RELAY_NODE_LOCKED_MACHINE_FILE_PATH": "/nonexistent/relay.lic"},
            "machine file could not be read",
        ),
    ],
)
def test_failed_unlock_is_one_line_and_opens_no_database(
    locked: Cli, env: dict[str, str], reason: str
) -> None:
    """`Error: failed to unlock relay: <reason>`, exit 1, and the store is never opened."""
    locked.env.update(env)
    for args in (
        ("ls",),
        ("stat", "--license", "x"),
        ("del", "--license", "x"),
        ("logs",),
        ("serve",),
    ):
        result = locked(*args)
        assert result.code == 1
        assert result.err.startswith(f"Error: failed to unlock relay: {reason}")
        assert result.err.count("\n") == 1
    assert locked.opened == []


def test_flags_override_the_environment_for_the_machine_file(locked: Cli) -> None:
    """--node-locked-license-key and --node-locked-machine-file-path win over the variables."""
    locked.env["RELAY_NODE_LOCKED_LICENSE_KEY"] = "WRONG"
    assert locked("--node-locked-license-key", LICENSE_KEY, "ls").code == 0
    locked.env["RELAY_NODE_LOCKED_MACHINE_FILE_PATH"] = "/nonexistent"
    good = str(locked.tmp / "relay.lic")
    result = locked(
        "--node-locked-machine-file-path", good, "--node-locked-license-key", LICENSE_KEY, "ls"
    )
    assert result.code == 0
    empty = locked("--node-locked-machine-file-path", "", "ls")
    assert empty.err == "Error: failed to unlock relay: machine file path is required\n"


def test_default_machine_file_is_relay_lic_in_the_working_directory(
    locked: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without path flag or variable, ./relay.lic is read."""
    del locked.env["RELAY_NODE_LOCKED_MACHINE_FILE_PATH"]
    monkeypatch.chdir(locked.tmp)
    assert locked("ls").code == 0
    monkeypatch.chdir(locked.tmp.parent)
    result = locked("ls")
    assert result.err == (
        "Error: failed to unlock relay: machine file could not be read: "
        "open ./relay.lic: no such file or directory\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("version",),
        ("--version",),
        ("--help",),
        ("help",),
        ("ls", "--help"),
        ("completion", "bash"),
        ("fingerprint",),
    ],
)
def test_help_version_completion_and_fingerprint_need_no_machine_file(
    locked: Cli, args: tuple[str, ...]
) -> None:
    """These run without unlocking (no machine file, no key) and open nothing."""
    locked.env.clear()
    result = locked(*args)
    assert result.code == 0
    assert locked.opened == []


def test_version_shows_the_locked_fingerprint(locked: Cli) -> None:
    """`version`, `--version` and the root help carry `+node-locked.d79a..52b1`."""
    import relay_cli

    suffix = f"{relay_cli.__version__}+node-locked.d79a..52b1"
    assert locked("version").out == suffix + "\n"
    assert locked("--version").out == f"relay version {suffix}\n"
    assert suffix in locked("--help").out


def test_fingerprint_prints_this_machines_fingerprint(locked: Cli) -> None:
    """`relay fingerprint` prints the protected id, nothing else."""
    assert locked("fingerprint").out == FINGERPRINT + "\n"
    locked.machine = LocalMachine(machine_id=lambda: (_ for _ in ()).throw(MachineError("none")))
    result = locked("fingerprint")
    assert (result.code, result.err) == (
        1,
        "Error: machine could not determine fingerprint: none\n",
    )


def test_locked_globals_exist_only_in_locked_mode(cli: Cli) -> None:
    """Unlocked, --node-locked-* are unknown, `add` has --public-key and nothing is checked."""
    assert "--node-locked-license-key" not in cli("--help").out
    assert cli("--node-locked-license-key", "x", "ls").code == 1
    assert "--public-key" in cli("add", "--help").out
    assert cli("ls").code == 0


def test_pinned_serve_flags_are_removed(locked: Cli) -> None:
    """A locked addr, port and secret remove --bind/-b, --port/-p and --signing-secret."""
    locked.lock = full_lock(locked.writer, addr="127.0.0.1", port=7001, signing_secret="s3cret")
    help_text = locked("serve", "--help").out
    for flag in ("--bind", "--port", "--signing-secret"):
        assert flag not in help_text
    assert "--ttl" in help_text
    for args in (
        ("--bind", "0.0.0.0"),
        ("-b", "0.0.0.0"),
        ("--port", "1"),
        ("-p", "1"),
        ("--signing-secret", "x"),
    ):
        result = locked("serve", *args)
        assert result.code == 1
        assert result.err.startswith("Error: unknown ")  # pflag: flag, or shorthand flag
        assert args[0] in result.err
    assert locked.opened == []


def test_only_pinned_serve_flags_are_removed(locked: Cli) -> None:
    """A lock pinning only the port keeps --bind and --signing-secret."""
    locked.lock = full_lock(locked.writer, port=7001)
    help_text = locked("serve", "--help").out
    assert "--bind" in help_text
    assert "--signing-secret" in help_text
    assert "--port" not in help_text


def test_locked_serve_values_ignore_flags_and_environment() -> None:
    """resolve_options takes the lock's addr, port and secret over flags and variables."""
    lock = LockConfig(
        public_key="00" * 32,
        fingerprint=FINGERPRINT,
        addr="127.0.0.1",
        port=7001,
        signing_secret="s",
    )
    env = {"RELAY_ADDR": "0.0.0.0", "RELAY_PORT": "9", "PORT": "8", "RELAY_SIGNING_SECRET": "env"}
    options = resolve_options(
        env,
        bind="10.0.0.1",
        port=5,
        signing_secret="flag",
        ttl=None,
        no_heartbeats=None,
        strategy=None,
        cull_interval=None,
        pool=None,
        threads=None,
        lock=lock,
    )
    assert (options.host, options.port, options.signing_secret) == ("127.0.0.1", 7001, "s")


def test_a_lock_with_a_signing_key_ignores_the_key_file_variable() -> None:
    """The baked key wins, so RELAY_SIGNING_KEY_FILE is not read (nor shown by --print-config,
    which prints these options: it showed a file the server would never open)."""
    lock = LockConfig(public_key="00" * 32, fingerprint=FINGERPRINT, signing_key="PEM")
    options = resolve_options(
        {"RELAY_SIGNING_KEY_FILE": "/nonexistent"},
        bind=None,
        port=None,
        signing_secret=None,
        ttl=None,
        no_heartbeats=None,
        strategy=None,
        cull_interval=None,
        pool=None,
        threads=None,
        lock=lock,
    )
    assert options.signing_key_file is None


def test_license_key_never_appears_in_logs(locked: Cli, caplog: pytest.LogCaptureFixture) -> None:
    """At -vvvv, successful and failed unlocks log the path but never the license key."""
    ok = locked("-vvvv", "ls")
    assert ok.code == 0
    assert "relay is node-locked" in ok.err
    assert "locker config" in ok.err
    locked.env["RELAY_NODE_LOCKED_LICENSE_KEY"] = "WRONG-BUT-SECRET"
    failed = locked("-vvvv", "ls")
    assert failed.code == 1
    for text in (ok.err, ok.out, failed.err, failed.out, caplog.text):
        assert LICENSE_KEY not in text
        assert "WRONG-BUT-SECRET" not in text


def test_lock_build_writes_an_installable_wheel(cli: Cli) -> None:
    """`relay lock build` prints the wheel's path; the wheel holds the constants and entry point."""
    out = cli.tmp / "dist"
    result = cli(
        "lock", "build", "--public-key", cli.writer.public_key, "--fingerprint", FINGERPRINT,
        "--platform", "linux/amd64", "--hostname", "relay-01", "--ip", "10.1.2.3",
        "--addr", "127.0.0.1", "--port", "7001", "--signing-secret", "s3cret", "--output", str(out),
    )  # fmt: skip
    assert (result.code, result.err) == (0, "")
    wheel = Path(result.out.strip())
    assert wheel.parent == out
    assert wheel.name.startswith("relay_lock-")
    with zipfile.ZipFile(wheel) as archive:
        namespace: dict[str, object] = {}
        exec(archive.read("relay_lock/__init__.py"), namespace)
        points = next(n for n in archive.namelist() if n.endswith("entry_points.txt"))
        assert archive.read(points) == b"[relay.lock]\nnode = relay_lock:LOCK\n"
    assert namespace["LOCK"] == {
        "public_key": cli.writer.public_key,
        "fingerprint": FINGERPRINT,
        "platform": "linux/amd64",
        "hostname": "relay-01",
        "ip": "10.1.2.3",
        "addr": "127.0.0.1",
        "port": 7001,
        "signing_secret": "s3cret",
    }
    assert cli.opened == []


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((), 'Error: required flag(s) "fingerprint", "output", "public-key" not set'),
        (("--public-key", "abc"), 'Error: invalid public key "abc": expected 64 hex digits'),
        (("--port", "0"), "Error: invalid port 0: expected an integer from 1 to 65535"),
        (("--port", "http"), 'Error: invalid argument "http" for "--port" flag'),
        (("--ip", "fe80::1"), 'Error: invalid ip "fe80::1": expected an IPv4 address'),
        (("--platform", "Linux/AMD64"), 'Error: invalid platform "Linux/AMD64"'),
    ],
)
def test_lock_build_rejects_bad_input_in_one_line(
    cli: Cli, args: tuple[str, ...], error: str
) -> None:
    """Bad or missing inputs are one `error:` line, exit 1, and no wheel is written."""
    flags = {"--public-key": cli.writer.public_key, "--fingerprint": FINGERPRINT}
    flags["--output"] = str(cli.tmp / "d")
    if args:
        flags.update(dict(zip(args[::2], args[1::2], strict=True)))
    else:
        flags.clear()
    result = cli("lock", "build", *(part for pair in flags.items() for part in pair))
    assert result.code == 1
    assert result.err.startswith(error)
    assert result.err.count("\n") == 1
    assert not (cli.tmp / "d").exists()

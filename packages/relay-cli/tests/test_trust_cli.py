"""`relay signing-key new|show` and `serve`'s trust settings (flags, variables, file errors)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from relay_cli.server import resolve_options
from relay_cli.trust import TrustError, load_access, read_signing_key
from relay_core.signing import load_public_key, public_key_hex

from .conftest import Cli
from .test_serve_options import NO_FLAGS


def test_new_writes_a_0600_key_and_prints_its_public_key(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    run = cli("signing-key", "new", "--out", str(path))
    assert run.code == 0, run.err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    hex_line, *pem = run.out.splitlines()
    key = read_signing_key(path)
    assert hex_line == public_key_hex(key)
    assert pem[0] == "-----BEGIN PUBLIC KEY-----"
    assert public_key_hex(load_public_key("\n".join(pem))) == hex_line
    assert cli("signing-key", "show", str(path)).out == run.out


def test_new_never_overwrites(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text("precious")
    run = cli("signing-key", "new", "--out", str(path))
    assert run.code == 1
    assert run.err == f"Error: {path} already exists: choose another --out or remove it\n"
    assert path.read_text() == "precious"
    assert cli("signing-key", "new").err == 'Error: required flag(s) "out" not set\n'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read signing key file .*: No such file or directory"),
        (b"hello", "is unusable: not an unencrypted PEM private key"),
    ],
)
def test_show_refuses_bad_files(
    cli: Cli, tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "key.pem"
    if content is not None:
        path.write_bytes(content)
    run = cli("signing-key", "show", str(path))
    assert run.code == 1
    assert run.err.startswith("Error: ")
    assert len(run.err.splitlines()) == 1
    import re

    assert re.search(message, run.err)


def test_trust_settings_from_flags_and_environment() -> None:
    env = {
        "RELAY_SIGNING_KEY_FILE": "k.pem",
        "RELAY_NODE_TOKEN_FILE": "tokens",
        "RELAY_ALLOW_FINGERPRINTS": "allow",
        "RELAY_MAX_NEW_NODES_PER_MINUTE": "60",
    }
    got = resolve_options(env, **NO_FLAGS)  # type: ignore[arg-type]
    assert (got.signing_key_file, got.node_token_file, got.allow_fingerprints) == (
        "k.pem",
        "tokens",
        "allow",
    )
    assert got.max_new_nodes_per_minute == 60
    flags = resolve_options(env, **NO_FLAGS, signing_key_file="f.pem", max_new_nodes_per_minute=5)  # type: ignore[arg-type]
    assert flags.signing_key_file == "f.pem"
    assert flags.max_new_nodes_per_minute == 5
    off = resolve_options({}, **NO_FLAGS)  # type: ignore[arg-type]
    assert off.signing_key_file is None
    assert off.max_new_nodes_per_minute is None


def test_serve_refuses_bad_trust_settings_before_opening(cli: Cli, tmp_path: Path) -> None:
    run = cli("serve", "--max-new-nodes-per-minute", "0")
    assert run.code == 1
    assert "must be at least 1" in run.err
    run = cli("serve", "--signing-key-file", str(tmp_path / "none.pem"))
    assert run.code == 1
    assert "cannot read signing key file" in run.err
    run = cli("serve", "--node-token-file", str(tmp_path / "none"))
    assert run.err.startswith("Error: cannot read node token file")
    (tmp_path / "empty").write_text("\n")
    run = cli("serve", "--node-token-file", str(tmp_path / "empty"))
    assert (
        run.err
        == f"Error: node token file {tmp_path / 'empty'}: no tokens in the file (one token per line)\n"
    )
    assert cli.opened == []


def test_load_access_is_none_when_all_off() -> None:
    assert (
        load_access(node_token_file=None, allow_fingerprints=None, max_new_nodes_per_minute=None)
        is None
    )
    with pytest.raises(TrustError, match="cannot read allow-list"):
        load_access(
            node_token_file=None, allow_fingerprints="/nonexistent/x", max_new_nodes_per_minute=None
        )


def test_lock_build_bakes_the_signing_key_and_serve_loses_the_flag(
    cli: Cli, tmp_path: Path
) -> None:
    """`relay lock build --signing-key-file` stores the key; locked `serve` has no such flag."""
    import zipfile

    from relay_cli.locking import LockConfig, LockConfigError
    from relay_cli.trust import locked_signing_key

    from .test_lock_cli import FINGERPRINT, full_lock, this_machine

    assert cli("signing-key", "new", "--out", str(tmp_path / "key.pem")).code == 0
    public = read_signing_key(tmp_path / "key.pem")
    run = cli(
        "lock", "build", "--public-key", cli.writer.public_key, "--fingerprint", FINGERPRINT,
        "--signing-key-file", str(tmp_path / "key.pem"), "--output", str(tmp_path / "dist"),
    )  # fmt: skip
    assert (run.code, run.err) == (0, "")
    with zipfile.ZipFile(run.out.strip()) as archive:
        namespace: dict[str, object] = {}
        exec(archive.read("relay_lock/__init__.py"), namespace)
    values = namespace["LOCK"]
    assert isinstance(values, dict)
    lock = LockConfig.from_values(values)
    assert lock.signing_key is not None
    assert public_key_hex(locked_signing_key(lock.signing_key)) == public_key_hex(public)

    cli.lock = full_lock(cli.writer, signing_key=lock.signing_key)
    cli.machine = this_machine()
    assert "--signing-key-file" not in cli("serve", "--help").out
    assert cli("serve", "--signing-key-file", "x").err.startswith(
        "Error: unknown flag: --signing-key-file"
    )
    with pytest.raises(LockConfigError, match="invalid signing-key"):
        LockConfig.from_values({**values, "signing_key": "not a key"})
    with pytest.raises(TrustError, match="signing key is unusable"):
        locked_signing_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    cli.lock = None
    bad = cli(
        "lock", "build", "--public-key", cli.writer.public_key, "--fingerprint", FINGERPRINT,
        "--signing-key-file", str(tmp_path / "none.pem"), "--output", str(tmp_path / "dist"),
    )  # fmt: skip
    assert bad.code == 1
    assert "cannot read signing key file" in bad.err


def test_a_key_file_others_can_read_is_loaded_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from relay_cli.trust import load_signing_key
    from relay_core.signing import new_private_key, private_key_pem

    # The CLI's own runs in this process stop "relay" from propagating: listen on it directly.
    logger = logging.getLogger("relay.cli")
    logger.addHandler(caplog.handler)
    monkeypatch.setattr(logger, "level", logging.WARNING)
    path = tmp_path / "key.pem"
    path.write_bytes(private_key_pem(new_private_key()))
    path.chmod(0o600)
    try:
        load_signing_key(str(path))
        assert "readable by other users" not in caplog.text
        path.chmod(0o644)
        load_signing_key(str(path))
    finally:
        logger.removeHandler(caplog.handler)
    assert (
        f"signing key file {path} is readable by other users (mode 0644): chmod 600 it"
        in caplog.text
    )

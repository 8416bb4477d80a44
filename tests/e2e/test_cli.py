"""The vendor CLI end to end: spec §8.1 `cmd_*` scripts, §8.3 cases, and issue 4's bad inputs."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest
from relay_core.testing import tamper

from .conftest import KEYGEN_LICENSE_1, KEYGEN_LICENSE_2, RELAY, Workspace, base_env


def guids_listed(ws: Workspace, *args: str) -> list[str]:
    run = ws.relay("ls", "--json", *args)
    assert run.code == 0, run.err
    return [row["id"] for row in json.loads(run.out)]


# -- spec §8.1: the reference's cmd_* integration scripts ----------------------------------------


def test_cmd_add(ws: Workspace) -> None:
    """`add` reports success and `ls --plain` shows the GUID."""
    lic = ws.license("license")
    run = ws.relay("add", "--file", "license.lic", "--key", lic.key, "--public-key", ws.public_key)
    assert (run.code, run.out, run.err) == (0, f"license added successfully: {lic.guid}\n", "")
    assert lic.guid in ws.relay("ls", "--plain").out


def test_cmd_add_pooled_and_ls_pooled(ws: Workspace) -> None:
    """Licenses in prod and dev are listed per pool and together; an unknown pool is an error."""
    prod, dev = ws.license("prod"), ws.license("dev")
    ws.add(prod, pool="prod")
    ws.add(dev, pool="dev")
    assert guids_listed(ws, "--pool", "prod") == [prod.guid]
    assert guids_listed(ws, "--pool", "dev") == [dev.guid]
    assert guids_listed(ws) == [prod.guid, dev.guid]
    plain = ws.relay("ls", "--pool", "prod", "--plain").out
    assert prod.guid in plain
    assert dev.guid not in plain
    missing = ws.relay("ls", "--pool", "nonexistent", "--plain")
    assert (missing.code, missing.out, missing.err) == (1, "", "error: pool not found\n")


def test_cmd_del(ws: Workspace) -> None:
    """Deleting the only license leaves `license pool is empty`."""
    lic = ws.license("license")
    ws.add(lic)
    assert lic.guid in ws.relay("ls", "--plain").out
    run = ws.relay("del", "--license", lic.guid)
    assert (run.code, run.out) == (0, f"license deleted successfully: {lic.guid}\n")
    assert ws.relay("ls", "--plain").out == "license pool is empty\n"


def test_cmd_del_pooled(ws: Workspace) -> None:
    """Pooled licenses are deleted by GUID; an emptied pool still exists and lists as empty."""
    prod, dev = ws.license("prod"), ws.license("dev")
    ws.add(prod, pool="prod")
    ws.add(dev, pool="dev")
    assert ws.relay("del", "--license", prod.guid).code == 0
    emptied = ws.relay("ls", "--pool", "prod", "--plain")
    assert (emptied.code, emptied.out) == (0, "license pool is empty\n")
    assert guids_listed(ws, "--pool", "dev") == [dev.guid]
    assert ws.relay("del", "--license", dev.guid).code == 0
    assert ws.relay("ls", "--plain").out == "license pool is empty\n"


def test_cmd_stat(ws: Workspace) -> None:
    """`stat --plain` prints the license's row."""
    lic = ws.license("license")
    ws.add(lic)
    run = ws.relay("stat", "--license", lic.guid, "--plain")
    assert run.code == 0
    assert lic.guid in run.out


def test_cmd_version(ws: Workspace) -> None:
    """`relay version` prints the version alone; `--version` prefixes `relay version`."""
    version = ws.relay("version").out
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*\n", version)
    assert ws.relay("--version").out == f"relay version {version}"
    assert not ws.db.exists()


# -- spec §8.3 ----------------------------------------------------------------------------------


def test_ls_and_stat_plain_layout_is_exact(ws: Workspace) -> None:
    """§1.8's layout byte for byte: widths from the longest cell, `| a | b |` rows, `+--+` rule."""
    lic = ws.license("license", guid="dcea31a4-1664-4633-9f52-4a1b0b5ea2ef")
    ws.add(lic)
    expected = (
        "| id                                   | pool | claims | node_id | last_claimed_at | last_released_at | file_expires_at |\n"
        "+--------------------------------------+------+--------+---------+-----------------+------------------+-----------------+\n"
        "| dcea31a4-1664-4633-9f52-4a1b0b5ea2ef | -    | 0      | -       | -               | -                | -               |\n"
    )
    assert ws.relay("ls", "--plain").out == expected
    assert ws.relay("stat", "--license", lic.guid, "--plain").out == expected
    assert ws.relay("ls", env={"CI": "1"}).out == expected
    assert ws.relay("ls", env={"RELAY_PLAIN": "t"}).out == expected


def test_ls_plain_second_spec_example(ws: Workspace) -> None:
    """§1.8's second example (a leased pooled license, 12 claims, node 3, and a free global one),
    byte for byte, with our file_expires_at column after the reference's six."""
    ws.add(ws.license("a", guid="dcea31a4-1664-4633-9f52-4a1b0b5ea2ef"), pool="production")
    ws.add(ws.license("b", guid="592d08c2-4045-462c-a981-dcd2bb78ce06"))
    with closing(sqlite3.connect(ws.db)) as conn, conn:
        conn.executemany(
            "INSERT INTO nodes (fingerprint, last_heartbeat_at, created_at) VALUES (?, 1764953352, 1)",
            [("fp-1",), ("fp-2",), ("fp-3",)],
        )
        conn.execute(
            "UPDATE licenses SET claims = 12, node_id = 3, last_claimed_at = 1764953352 "
            "WHERE guid = 'dcea31a4-1664-4633-9f52-4a1b0b5ea2ef'"
        )
    assert ws.relay("ls", "--plain").out == (
        "| id                                   | pool       | claims | node_id | last_claimed_at      | last_released_at | file_expires_at |\n"
        "+--------------------------------------+------------+--------+---------+----------------------+------------------+-----------------+\n"
        "| dcea31a4-1664-4633-9f52-4a1b0b5ea2ef | production | 12     | 3       | 2025-12-05T16:49:12Z | -                | -               |\n"
        "| 592d08c2-4045-462c-a981-dcd2bb78ce06 | -          | 0      | -       | -                    | -                | -               |\n"
    )


def test_bulk_add_with_comma_separated_values(ws: Workspace) -> None:
    """Comma-separated and repeated --file/--key pairs add every license in order."""
    a, b, c = ws.license("a"), ws.license("b"), ws.license("c")
    run = ws.relay(
        "add",
        "--file",
        "a.lic,b.lic",
        "--file",
        "c.lic",
        "--key",
        f"{a.key},{b.key}",
        "--key",
        c.key,
        "--public-key",
        ws.public_key,
    )
    assert run.out.splitlines() == [f"license added successfully: {x.guid}" for x in (a, b, c)]
    assert guids_listed(ws) == [a.guid, b.guid, c.guid]


def test_bulk_add_is_all_or_nothing(ws: Workspace) -> None:
    """One bad pair among good ones: an error line for it, nothing stored, exit 1 (Part A 9)."""
    a, b = ws.license("a"), ws.license("b")
    run = ws.relay(
        "add",
        "--file",
        "a.lic,missing.lic,b.lic",
        "--key",
        f"{a.key},x,{b.key}",
        "--public-key",
        ws.public_key,
    )
    assert (run.code, run.out) == (1, "")
    assert run.err_lines == ["error: license file not found at 'missing.lic'"]
    assert not ws.query("SELECT guid FROM licenses")


def test_signed_but_unencrypted_files_are_accepted(ws: Workspace) -> None:
    """`base64+ed25519` files are accepted (Part A 8)."""
    lic = ws.license("plain", alg="base64+ed25519")
    ws.add(lic)
    assert guids_listed(ws) == [lic.guid]


def test_future_issued_file_is_rejected(ws: Workspace) -> None:
    """A file issued more than 5 minutes in the future: `system clock is out of sync`."""
    ws.license("future", key="K", issued=time.time() + 3600)
    run = ws.relay("add", "--file", "future.lic", "--key", "K", "--public-key", ws.public_key)
    assert run.code == 1
    assert run.err.startswith("error: license decryption failed: system clock is out of sync")


def test_expired_real_keygen_files_are_rejected(ws: Workspace, fixtures: Path) -> None:
    """The real Keygen files expired on 2026-01-04: rejected as expired, `ls` unchanged."""
    key_hex = (fixtures / "public_key.hex").read_text().strip()
    kept = ws.license("kept")
    ws.add(kept)
    before = ws.relay("ls", "--plain").out
    for name, _guid, key in (KEYGEN_LICENSE_1, KEYGEN_LICENSE_2):
        run = ws.relay("add", "--file", str(fixtures / name), "--key", key, "--public-key", key_hex)
        assert run.code == 1
        assert len(run.err_lines) == 1, run.err
        assert run.err.startswith("error: license decryption failed: license file is expired")
    assert ws.relay("ls", "--plain").out == before


def test_ttl_below_30s_is_rejected(ws: Workspace) -> None:
    """`serve --ttl 10s` exits 1 with one line and creates no database."""
    run = ws.relay("serve", "--ttl", "10s")
    assert (run.code, run.out, run.err) == (
        1,
        "",
        "Error: time-to-live value must be at least 30s\n",
    )
    assert not ws.db.exists()


def test_no_audit_writes_no_audit_rows(ws: Workspace) -> None:
    """`--no-audit add` stores the license but no audit row."""
    lic = ws.license("a")
    run = ws.relay(
        "--no-audit", "add", "--file", "a.lic", "--key", lic.key, "--public-key", ws.public_key
    )
    assert run.code == 0
    assert ws.query("SELECT count(*) FROM audit_logs") == [(0,)]
    assert ws.query("SELECT count(*) FROM licenses") == [(1,)]


def test_bad_pragma(ws: Workspace) -> None:
    """`--pragma bad` exits 1 with the reference's message and opens no database."""
    run = ws.relay("--pragma", "bad", "ls")
    assert (run.code, run.err) == (1, "Error: invalid pragma format: bad (expected key=value)\n")
    assert not ws.db.exists()


def test_schema_migrations_row(ws: Workspace) -> None:
    """A database created by `relay` carries Keygen Relay's final migration version, clean."""
    assert ws.relay("ls").code == 0
    assert ws.query("SELECT version, dirty FROM schema_migrations") == [(1755607637, 0)]


def test_audit_rows_for_add_and_del(ws: Workspace) -> None:
    """add to a new pool writes pool.added + license.added; del writes license.removed with the pool."""
    lic = ws.license("a")
    ws.add(lic, pool="prod")
    ws.relay("del", "--license", lic.guid)
    rows = ws.query(
        "SELECT e.name, a.entity_type_id, a.pool_id FROM audit_logs a "
        "JOIN event_types e ON e.id = a.event_type_id ORDER BY a.id"
    )
    assert rows == [("pool.added", 3, None), ("license.added", 1, 1), ("license.removed", 1, 1)]


def test_help_and_completion_do_not_create_a_database(ws: Workspace) -> None:
    """help, --help, completion and version never open ./relay.sqlite."""
    for args in (
        ("--help",),
        ("help",),
        ("help", "add"),
        ("add", "--help"),
        ("completion", "bash"),
        ("completion", "zsh"),
        ("completion", "fish"),
        ("version",),
        ("--version",),
    ):
        run = ws.relay(*args)
        assert run.code == 0, (args, run.err)
        assert run.out
    assert not ws.db.exists()


def test_logs_after_add(ws: Workspace) -> None:
    """`relay logs --plain` names the pool and the license GUID."""
    lic = ws.license("a")
    ws.add(lic, pool="prod")
    out = ws.relay("logs", "--plain").out.splitlines()
    assert "license.added" in out[2]
    assert lic.guid in out[2]
    assert "pool.added" in out[3]
    assert "prod" in out[3]


# -- issue 4: bad inputs --------------------------------------------------------------------------


@pytest.fixture
def seeded(ws: Workspace) -> Workspace:
    """A workspace whose database already holds one license in pool prod."""
    ws.add(ws.license("seed"), pool="prod")
    return ws


def _bad_add_cases(ws: Workspace) -> dict[str, tuple[list[str], str]]:
    good = ws.license("good")
    tampered = ws.license("tampered")
    tampered.path.write_bytes(tamper(tampered.path.read_bytes()))
    (ws.root / "garbage.lic").write_bytes(b"\x00\x01 this is not a license file\n")
    (ws.root / "folder.lic").mkdir()
    unsupported = ws.root / "unsupported.lic"
    unsupported.write_bytes(ws.writer.seal(b'{"data":{}}', "K", alg="aes-128-cbc+ed448"))
    other_key = "ab" * 32
    pk = ["--public-key", ws.public_key]
    return {
        "missing file": (
            ["--file", "nope.lic", "--key", "K", *pk],
            "error: license file not found at 'nope.lic'",
        ),
        "directory": (
            ["--file", "folder.lic", "--key", "K", *pk],
            "error: failed to read license file",
        ),
        "garbage": (
            ["--file", "garbage.lic", "--key", "K", *pk],
            "error: license verification failed: license file is invalid",
        ),
        "tampered": (
            ["--file", "tampered.lic", "--key", tampered.key, *pk],
            "error: license verification failed: license file is invalid",
        ),
        "wrong key": (
            ["--file", "good.lic", "--key", "WRONG", *pk],
            "error: license decryption failed: license file is invalid",
        ),
        "wrong public key": (
            ["--file", "good.lic", "--key", good.key, "--public-key", other_key],
            "error: license verification failed: license file is invalid",
        ),
        "unsupported alg": (
            ["--file", "unsupported.lic", "--key", "K", *pk],
            "error: license verification failed: license file is invalid",
        ),
        "duplicate": (
            ["--file", "seed.lic", "--key", _seed_key(ws), *pk],
            "error: license with the provided key already exists",
        ),
        "mismatched counts": (
            ["--file", "good.lic,seed.lic", "--key", good.key, *pk],
            "error: number of key and file flags must match",
        ),
        "missing flags": (
            ["--file", "good.lic"],
            'Error: required flag(s) "key", "public-key" not set',
        ),
    }


def _seed_key(ws: Workspace) -> str:
    return str(ws.query("SELECT key FROM licenses")[0][0])


BAD_ADD = [
    "missing file",
    "directory",
    "garbage",
    "tampered",
    "wrong key",
    "wrong public key",
    "unsupported alg",
    "duplicate",
    "mismatched counts",
    "missing flags",
]


@pytest.mark.parametrize("case", BAD_ADD)
def test_bad_add_inputs(seeded: Workspace, case: str) -> None:
    """Each bad `add` input: one line on stderr, exit 1, nothing on stdout, database unchanged."""
    args, message = _bad_add_cases(seeded)[case]
    before = seeded.snapshot()
    run = seeded.relay("add", *args)
    assert run.code == 1
    assert run.out == ""
    assert len(run.err_lines) == 1, run.err
    assert run.err.startswith(message), run.err
    assert seeded.snapshot() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ls", "--pool", "unknown"], "error: pool not found"),
        (["logs", "--pool", "unknown"], "error: pool not found"),
        (["del", "--license", "nope"], "error: license nope not found"),
        (["del", "--license", "LICENSE", "--pool", "unknown"], "error: pool not found"),
        (["stat", "--license", "nope"], "error: license nope: license not found"),
        (["ls", "--bogus"], "Error: unknown flag: --bogus"),
        (["serve", "--strategy", "x"], 'Error: invalid argument "x" for "--strategy" flag'),
        (
            ["serve", "--cull-interval", "0s"],
            'Error: invalid argument "0s" for "--cull-interval" flag',
        ),
    ],
)
def test_bad_inputs_to_other_commands(seeded: Workspace, args: list[str], message: str) -> None:
    """Unknown pool, unknown id, bad flags: one line on stderr, exit 1, database unchanged."""
    guid = str(seeded.query("SELECT guid FROM licenses")[0][0])
    args = [guid if a == "LICENSE" else a for a in args]
    before = seeded.snapshot()
    run = seeded.relay(*args)
    assert (run.code, run.out) == (1, "")
    assert len(run.err_lines) == 1, run.err
    assert run.err.startswith(message), run.err
    assert seeded.snapshot() == before


def test_unwritable_database_path(ws: Workspace) -> None:
    """A database path that cannot be created: one line, exit 1, no file."""
    target = ws.root / "no" / "such" / "dir" / "relay.sqlite"
    run = ws.relay("--database", str(target), "ls")
    assert (run.code, run.out) == (1, "")
    assert len(run.err_lines) == 1, run.err
    assert run.err.startswith("error: ")
    assert not target.exists()


@pytest.mark.parametrize("kind", ["directory", "not a database"])
def test_database_path_that_is_not_a_database(ws: Workspace, kind: str) -> None:
    """--database naming a directory or a non-SQLite file: one line, exit 1, the path untouched."""
    target = ws.root / "target"
    if kind == "directory":
        target.mkdir()
    else:
        target.write_bytes(b"these are not the bytes of a database\n" * 100)
    before = target.read_bytes() if target.is_file() else None
    run = ws.relay("--database", str(target), "ls")
    assert (run.code, run.out) == (1, "")
    assert len(run.err_lines) == 1, run.err
    assert run.err.startswith("error: ")
    assert (target.read_bytes() if target.is_file() else None) == before


def _close_stdout() -> None:
    os.close(1)


@pytest.mark.parametrize("args", [["version"], ["--version"], ["-v", "version"]])
@pytest.mark.parametrize("stdout", ["full", "closed"])
def test_version_on_an_unwritable_stdout(ws: Workspace, args: list[str], stdout: str) -> None:
    """`relay version > /dev/full` and `relay version >&-`: one error line and exit 1, never a
    traceback."""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [RELAY, *args],
            cwd=ws.root,
            env=base_env(),
            stdout=full if stdout == "full" else None,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            preexec_fn=None if stdout == "full" else _close_stdout,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot write to stdout: ")
    assert done.stderr.count("\n") == 1

"""Disk and file faults: read-only paths, the database deleted or replaced under a running
server, and a full disk.

Read-only paths: these tests run as root in CI, and root writes anywhere, so the command runs
through a launcher that drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its capability
bounding set; root then obeys file modes like any user.

A full disk, two ways. A 4 MiB tmpfs mounted for the test and filled up (ENOSPC; skipped where
mounting is not allowed). And, everywhere, a file-size limit: CPython ignores SIGXFSZ at
start-up, so a write beyond RLIMIT_FSIZE fails with EFBIG instead of killing the server
(`test_python_ignores_sigxfsz` pins that); the limit is set and later raised from outside with
prlimit(2), as space freed by an operator would be.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path

import pytest

from .conftest import RELAY, Workspace, add_licenses, base_env, start_server, violations

_DROP_DAC = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
        sys.exit(99)
os.execv(sys.argv[1], sys.argv[1:])
"""

CLAIM_FAILED = b'{"error":"failed to claim license"}\n'
RELEASE_FAILED = b'{"error":"failed to release license"}\n'


@pytest.fixture
def as_user() -> Sequence[str]:
    """A launcher that makes the command obey file permissions even when the tests run as root."""
    if os.geteuid() != 0:
        return ()
    launcher = [sys.executable, "-c", _DROP_DAC]
    probe = subprocess.run([*launcher, "/bin/true"], check=False)
    if probe.returncode == 99:
        pytest.skip("cannot drop CAP_DAC_OVERRIDE here, and root ignores file modes")
    return launcher


@pytest.fixture
def read_only(ws: Workspace) -> Iterator[Path]:
    """A folder `ro` in the workspace; the test makes it (or its files) read-only."""
    folder = ws.root / "ro"
    folder.mkdir()
    try:
        yield folder
    finally:
        folder.chmod(0o755)
        for child in folder.iterdir():
            child.chmod(0o644)


def _serve_once(
    ws: Workspace, launcher: Sequence[str], database: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*launcher, RELAY, "serve", "--bind", "127.0.0.1", "--port", "0", "--database", database],
        cwd=ws.root,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_new_database_in_a_read_only_directory(
    ws: Workspace, as_user: Sequence[str], read_only: Path
) -> None:
    """`relay serve` on a new database in a read-only folder: one clear line, exit 1, no file."""
    read_only.chmod(0o555)
    run = _serve_once(ws, as_user, "ro/relay.sqlite")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "error: cannot create database ro/relay.sqlite: directory ro is not writable"
    ]
    assert list(read_only.iterdir()) == []


def test_read_only_database_file(ws: Workspace, as_user: Sequence[str], read_only: Path) -> None:
    """A database file without write permission: one clear line, exit 1, the file unchanged."""
    ws.add(ws.license("one"), database="ro/relay.sqlite")
    db = read_only / "relay.sqlite"
    before = ws.snapshot(db)
    db.chmod(0o444)
    run = _serve_once(ws, as_user, "ro/relay.sqlite")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "error: database ro/relay.sqlite is not writable (permission denied)"
    ]
    assert ws.snapshot(db) == before


def test_existing_database_in_a_read_only_directory(
    ws: Workspace, as_user: Sequence[str], read_only: Path
) -> None:
    """A writable database in a read-only folder (SQLite cannot create its -wal and -shm files
    there): one clear line naming the database, exit 1, the file unchanged."""
    ws.add(ws.license("one"), database="ro/relay.sqlite")
    db = read_only / "relay.sqlite"
    before = ws.snapshot(db)
    read_only.chmod(0o555)
    run = _serve_once(ws, as_user, "ro/relay.sqlite")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "error: database ro/relay.sqlite is not writable: directory ro is not writable, and "
        "SQLite keeps relay.sqlite-wal and relay.sqlite-shm beside the database"
    ]
    read_only.chmod(0o755)
    assert ws.snapshot(db) == before


def _backup(source: Path, target: Path) -> None:
    """The online backup documented in docs/operations.md."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def test_database_deleted_while_serving(ws: Workspace) -> None:
    """Deleting the database under a running server: claims and releases answer 500 with the
    JSON error instead of writing to a file nobody can see, health still answers, the server
    stays up and exits 0 on SIGTERM; restoring a backup and restarting recovers every lease."""
    add_licenses(ws, 5)
    server = start_server(ws)
    assert server.claim("node-1").status == 201
    assert server.claim("node-2").status == 201
    _backup(ws.db, ws.root / "backup.sqlite")

    ws.db.unlink()
    claim, release = server.claim("node-3"), server.release("node-1")
    assert (claim.status, claim.body) == (500, CLAIM_FAILED)
    assert claim.headers["content-type"] == "application/json"
    assert (release.status, release.body) == (500, RELEASE_FAILED)
    assert server.request("GET", "/v1/health").status == 200
    assert server.process.poll() is None
    code, _, err = server.stop()
    assert code == 0, err
    assert "deleted or replaced" in err

    shutil.copyfile(ws.root / "backup.sqlite", ws.db)
    again = start_server(ws)
    assert again.claim("node-1").status == 202
    assert again.claim("node-3").status == 201
    code, _, err = again.stop()
    assert code == 0, err
    assert violations(ws.db) == []


def test_database_replaced_while_serving(ws: Workspace) -> None:
    """Moving another database over the served one: requests answer 500 JSON, health answers,
    and after a restart the new file is intact (the old server's write-ahead log, left behind
    under the same name, must not be replayed into it) and serves its own licenses."""
    add_licenses(ws, 5)
    server = start_server(ws)
    for n in range(5):
        assert server.claim(f"node-{n}").status == 201
    assert server.release("node-0").status == 204

    replacement = ws.license("replacement")
    ws.add(replacement, database="other.sqlite")
    os.replace(ws.root / "other.sqlite", ws.db)
    claim = server.claim("node-9")
    assert (claim.status, claim.body) == (500, CLAIM_FAILED)
    assert server.request("GET", "/v1/health").status == 200
    code, _, err = server.stop()
    assert code == 0, err

    again = start_server(ws)
    claimed = again.claim("node-9")
    assert claimed.status == 201
    assert json.loads(claimed.body)["license_key"] == replacement.key
    code, _, err = again.stop()
    assert code == 0, err
    assert violations(ws.db) == []
    assert ws.query("SELECT guid FROM licenses") == [(replacement.guid,)]


def test_python_ignores_sigxfsz(ws: Workspace) -> None:
    """`relay serve` runs with SIGXFSZ ignored (CPython sets that up), so exceeding a file-size
    limit is an error to answer, not a signal that kills the server."""
    server = start_server(ws)
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    ignored = int(
        next(line for line in status.splitlines() if line.startswith("SigIgn:")).split()[1], 16
    )
    assert ignored & (1 << (signal.SIGXFSZ - 1))
    code, _, err = server.stop()
    assert code == 0, err


def test_disk_full_answers_500_then_recovers(ws: Workspace) -> None:
    """With writes failing (RLIMIT_FSIZE at the size the files have), claims and releases
    answer 500 with the JSON error, health answers and the server stays up; once the limit is
    raised the same server serves again without a restart, and the database is sound."""
    add_licenses(ws, 40)
    server = start_server(ws)
    pid = server.process.pid
    for n in range(10):
        assert server.claim(f"node-{n}").status == 201
    wal = ws.db.with_name("relay.sqlite-wal")
    limit = min(ws.db.stat().st_size, wal.stat().st_size if wal.exists() else 0)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        answers = []
        for n in range(10, 60):
            answers.append(server.claim(f"node-{n}"))
            answers.append(server.release(f"node-{n - 10}"))
        failed = [a for a in answers if a.status == 500]
        assert failed, "no write failed: the limit did not bite"
        assert {a.body for a in failed} <= {CLAIM_FAILED, RELEASE_FAILED}
        assert {a.status for a in answers} <= {201, 204, 404, 410, 500}
        assert server.request("GET", "/v1/health").status == 200
        assert server.process.poll() is None
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)

    for n in range(60, 70):
        assert server.claim(f"node-{n}").status in (201, 410)
    assert server.claim("node-60").status == 202
    code, _, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    assert "Traceback" not in err
    assert violations(ws.db) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for the test (skipped where mounting is not allowed)."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=False)


def _fill(path: Path) -> None:
    with path.open("wb", buffering=0) as filler:
        with contextlib.suppress(OSError):  # ENOSPC: the disk is full
            while True:
                filler.write(b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 512)


def test_full_disk_answers_500_then_recovers(ws: Workspace, small_disk: Path) -> None:
    """On a really full disk (ENOSPC): `relay add` fails with one line and changes nothing;
    claims and releases answer 500 JSON while health answers; once space is freed the same
    server serves again without a restart, and the database is sound."""
    database = str(small_disk / "relay.sqlite")
    first = [ws.license(f"disk-{i}") for i in range(10)]
    ws.add(*first, database=database)
    server = start_server(ws, "--database", database)
    assert server.claim("node-0").status == 201
    filler = small_disk / "filler"
    _fill(filler)

    late = ws.license("late")
    run = ws.relay(
        "add",
        "--public-key",
        ws.public_key,
        "--file",
        late.path.name,
        "--key",
        late.key,
        "--database",
        database,
    )
    assert run.code == 1
    assert run.err_lines == [f"error: cannot write database {database} (database or disk is full)"]
    answers = [server.claim(f"node-{n}") for n in range(1, 6)] + [server.release("node-0")]
    assert {(a.status, a.body) for a in answers[:-1]} == {(500, CLAIM_FAILED)}
    assert (answers[-1].status, answers[-1].body) == (500, RELEASE_FAILED)
    assert server.request("GET", "/v1/health").status == 200

    filler.unlink()
    assert server.claim("node-1").status == 201
    assert server.release("node-0").status == 204
    code, _, err = server.stop()
    assert code == 0, err
    assert violations(Path(database)) == []
    assert ws.query("SELECT count(*) FROM licenses", db=Path(database)) == [(10,)]

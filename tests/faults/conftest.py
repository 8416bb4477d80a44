"""Fault-injection fixtures: real `relay serve` processes on loopback, checked through SQLite.

The servers, workspaces and license files come from the end-to-end suite (tests/e2e). What is
added here: starting a server through a launcher (to drop capabilities or ignore a signal), keep-alive
clients for storms, a health probe that times `/v1/health` from its own thread, and
`violations()`, which reads the database directly and lists every broken invariant.
"""

from __future__ import annotations

import http.client
import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from pathlib import Path

import attrs
import pytest

from tests.e2e.conftest import (
    RELAY,
    LicenseFile,
    Server,
    ServerFactory,
    Workspace,
    base_env,
    free_port,
    serve,
    writer,
    ws,
)

__all__ = [
    "FaultServer",
    "HealthProbe",
    "KeepAlive",
    "LicenseFile",
    "Server",
    "ServerFactory",
    "Workspace",
    "add_licenses",
    "serve",
    "start_server",
    "violations",
    "writer",
    "ws",
]


def add_licenses(ws: Workspace, count: int, *, pool: str | None = None) -> list[LicenseFile]:
    """Write `count` fresh license files and add them with one `relay add` (all or nothing)."""
    files = []
    for _ in range(count):
        name = f"lic-{uuid.uuid4().hex[:12]}"
        files.append(ws.license(name))
    if files:
        ws.add(*files, pool=pool)
    return files


@attrs.define
class FaultServer(Server):
    """A `relay serve` whose stderr goes to a file, so a flood of log lines can never fill a pipe
    nobody reads and stall the server."""

    log: Path = attrs.field(kw_only=True)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> tuple[int, str, str]:
        code, out, _ = super().stop(sig, timeout)
        return code, out, self.log.read_text(errors="replace")


def start_server(
    ws: Workspace,
    *args: str,
    env: Mapping[str, str] | None = None,
    launcher: Sequence[str] = (),
    wait: bool = True,
) -> FaultServer:
    """`relay serve` on a free loopback port, optionally through a launcher (a command that
    ends by exec'ing its arguments, e.g. after ignoring a signal).

    The caller stops it (`stop()` or SIGKILL); an autouse fixture kills what a test leaves running.
    """
    port = free_port()
    log = ws.root / f"serve-{port}.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [*launcher, RELAY, "serve", "--bind", "127.0.0.1", "--port", str(port), *args],
            cwd=ws.root,
            env=base_env(env),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    server = FaultServer(process, "127.0.0.1", port, log=log)
    _STARTED.append(server)
    if wait:
        server.wait_ready()
    return server


_STARTED: list[Server] = []


@pytest.fixture(autouse=True)
def _stop_started_servers() -> Iterator[None]:
    """Kill any server a test started with `start_server` and left running."""
    try:
        yield
    finally:
        while _STARTED:
            server = _STARTED.pop()
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGKILL)
            server.process.wait()
            if server.process.stdout is not None:
                server.process.stdout.close()


class KeepAlive:
    """One node's HTTP/1.1 connection, reused across requests and reopened after an error."""

    def __init__(self, port: int, *, timeout: float = 30) -> None:
        self.port = port
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        """Send one request and read the whole answer; connection errors propagate (OSError,
        http.client.HTTPException) after the connection is dropped."""
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            self._conn.request(method, path, headers=dict(headers or {}))
            resp = self._conn.getresponse()
            body = resp.read()
        except BaseException:
            self.close()
            raise
        if resp.will_close:
            self.close()
        return resp.status, body

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@attrs.define
class HealthProbe:
    """Times `GET /v1/health` on a fresh connection every `interval` seconds, from its own thread.

    Use as a context manager around the fault; afterwards `failures` lists every probe that did
    not get 200, and `slowest` is the longest answer in seconds.
    """

    port: int
    interval: float = 0.1
    timeout: float = 5.0
    latencies: list[float] = attrs.Factory(list)
    failures: list[str] = attrs.Factory(list)
    _stop: threading.Event = attrs.Factory(threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HealthProbe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=self.timeout + 5)

    @property
    def slowest(self) -> float:
        return max(self.latencies, default=0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                conn.request("GET", "/v1/health")
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    self.failures.append(f"status {resp.status}")
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()
            self.latencies.append(time.monotonic() - started)
            self._stop.wait(self.interval)


# -- invariants read straight from the database ----------------------------------------------

_LICENSE_EVENTS = (
    "license.added",
    "license.removed",
    "license.leased",
    "license.lease_extended",
    "license.released",
    "license.lease_expired",
)
_NODE_EVENTS = ("node.activated", "node.heartbeat_ping", "node.deactivated", "node.culled")


def violations(db: Path, *, integrity: bool = True) -> list[str]:
    """Every broken invariant of the database at `db`, read in one snapshot; [] when sound.

    Leases: a license is held by at most one node, every holder exists and is active, a node
    holds at most one license. Audit (written in the same transaction as each change): replaying
    each license's and node's events in order never leases a held license, never releases a free
    one, never touches a removed one, and ends in the state the tables show; `claims` equals the
    number of `license.leased` rows; every audited entity exists (or was audited as removed).
    """
    found: list[str] = []
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        if integrity:
            check = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if check != ["ok"]:
                found.append(f"integrity_check: {check[:5]}")
            fk = conn.execute("PRAGMA foreign_key_check").fetchall()
            if fk:
                found.append(f"foreign_key_check: {fk[:5]}")
        event = dict(conn.execute("SELECT name, id FROM event_types"))
        name_of = {v: k for k, v in event.items()}
        entity = dict(conn.execute("SELECT name, id FROM entity_types"))
        nodes: dict[int, int | None] = dict(conn.execute("SELECT id, deactivated_at FROM nodes"))
        licenses = {
            lid: (node_id, claims)
            for lid, node_id, claims in conn.execute("SELECT id, node_id, claims FROM licenses")
        }
        holders = Counter(node_id for node_id, _ in licenses.values() if node_id is not None)
        for node_id, count in holders.items():
            if count > 1:
                found.append(f"node {node_id} holds {count} licenses")
        for lid, (node_id, _) in licenses.items():
            if node_id is None:
                continue
            if node_id not in nodes:
                found.append(f"license {lid} held by missing node {node_id}")
            elif nodes[node_id] is not None:
                found.append(f"license {lid} held by inactive node {node_id}")

        rows = conn.execute(
            "SELECT id, event_type_id, entity_type_id, entity_id FROM audit_logs ORDER BY id"
        ).fetchall()
        conn.execute("COMMIT")

    by_license: dict[int, list[tuple[int, str]]] = {}
    by_node: dict[int, list[tuple[int, str]]] = {}
    for row_id, event_id, entity_id_type, entity_id in rows:
        name = name_of.get(event_id, "?")
        if entity_id_type == entity["license"]:
            if name not in _LICENSE_EVENTS:
                found.append(f"audit row {row_id}: {name} on a license")
            by_license.setdefault(entity_id, []).append((row_id, name))
        elif entity_id_type == entity["node"]:
            if name not in _NODE_EVENTS:
                found.append(f"audit row {row_id}: {name} on a node")
            by_node.setdefault(entity_id, []).append((row_id, name))

    for lid in sorted(set(licenses) | set(by_license)):
        found += _license_story(lid, licenses.get(lid), by_license.get(lid, []))
    for nid in sorted(set(nodes) | set(by_node)):
        found += _node_story(nid, nid in nodes, nodes.get(nid), by_node.get(nid, []))
    return found


def _license_story(
    lid: int, row: tuple[int | None, int] | None, events: list[tuple[int, str]]
) -> list[str]:
    found: list[str] = []
    state = "absent"  # absent -> free <-> held -> removed
    leased = 0
    for row_id, name in events:
        where = f"license {lid}, audit row {row_id} ({name})"
        if name == "license.added":
            if state != "absent":
                found.append(f"{where}: added twice")
            state = "free"
        elif state in ("absent", "removed"):
            found.append(f"{where}: event for a license that is {state}")
        elif name == "license.leased":
            leased += 1
            if state == "held":
                found.append(f"{where}: leased while already held")
            state = "held"
        elif name == "license.lease_extended":
            if state != "held":
                found.append(f"{where}: extended while free")
        elif name in ("license.released", "license.lease_expired"):
            if state != "held":
                found.append(f"{where}: released while free")
            state = "free"
        elif name == "license.removed":
            if state == "held":
                found.append(f"{where}: removed while held (no release first)")
            state = "removed"
    if row is None:
        if state != "removed":
            found.append(f"license {lid}: audited as {state} but not in the table")
        return found
    node_id, claims = row
    expected = "held" if node_id is not None else "free"
    if state != expected:
        found.append(f"license {lid}: table says {expected}, its audit ends {state}")
    if leased != claims:
        found.append(f"license {lid}: claims = {claims} but {leased} license.leased rows")
    return found


def _node_story(
    nid: int, exists: bool, deactivated_at: int | None, events: list[tuple[int, str]]
) -> list[str]:
    found: list[str] = []
    active = False
    for row_id, name in events:
        where = f"node {nid}, audit row {row_id} ({name})"
        if name == "node.activated":
            if active:
                found.append(f"{where}: activated while active")
            active = True
        elif name == "node.heartbeat_ping":
            if not active:
                found.append(f"{where}: heartbeat while inactive")
        elif name in ("node.deactivated", "node.culled"):
            if not active:
                found.append(f"{where}: deactivated while inactive")
            active = False
    if not exists:
        found.append(f"node {nid}: audited but not in the table")
    elif active != (deactivated_at is None):
        found.append(
            f"node {nid}: table says {'active' if deactivated_at is None else 'inactive'}, "
            f"its audit ends {'active' if active else 'inactive'}"
        )
    elif not events:
        found.append(f"node {nid}: in the table without a node.activated row")
    return found


def wait_for_exit(process: subprocess.Popen[str], timeout: float) -> int | None:
    """The exit code, or None if the process is still running after `timeout` seconds."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def is_root() -> bool:
    return os.geteuid() == 0

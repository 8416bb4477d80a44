"""Races: many nodes at once, and the vendor's CLI writing while the server serves.

Storm lengths as in issue 6: 256 simultaneous claims; 64 nodes for 20 s while `relay add` and
`relay del` run. The database is checked with `violations()` during the storm (each check is
one read snapshot) and after it.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter

from .conftest import KeepAlive, Workspace, add_licenses, start_server, violations

STORM_SECONDS = 20.0
ALLOWED = {201, 202, 204, 404, 409, 410}


def test_256_simultaneous_claims_against_10_licenses(ws: Workspace) -> None:
    """256 distinct nodes claim at the same instant: exactly 10 get 201, 246 get 410, no 5xx,
    and the database shows 10 leases on 10 distinct active nodes and no other node rows."""
    add_licenses(ws, 10)
    server = start_server(ws)
    barrier = threading.Barrier(256)
    statuses: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def claim(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            conn.connect()
            barrier.wait(timeout=60)
            conn.request("PUT", f"/v1/nodes/racer-{n:03d}")
            resp = conn.getresponse()
            resp.read()
            with lock:
                statuses.append(resp.status)
        except (OSError, http.client.HTTPException, threading.BrokenBarrierError) as exc:
            with lock:
                errors.append(f"racer-{n}: {exc!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(256)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    code, _, err = server.stop()

    assert errors == []
    assert Counter(statuses) == {201: 10, 410: 246}
    assert code == 0, err
    assert violations(ws.db) == []
    held = ws.query(
        "SELECT count(*), count(DISTINCT l.node_id) FROM licenses l "
        "JOIN nodes n ON n.id = l.node_id WHERE n.deactivated_at IS NULL"
    )
    assert held == [(10, 10)]
    assert ws.query("SELECT count(*) FROM nodes") == [(10,)]


def test_64_nodes_churn_while_the_cli_adds_and_deletes(ws: Workspace) -> None:
    """64 nodes claim, heartbeat and release over keep-alive connections for 20 s, some in the
    wrong pool, while `relay add` and `relay del` run: no 5xx, no CLI failure, and no snapshot
    shows a shared license, a node with two licenses, a lease on an inactive node or an audit
    trail that disagrees with the tables."""
    initial = add_licenses(ws, 12) + add_licenses(ws, 12, pool="prod")
    server = start_server(ws)
    stop = threading.Event()
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def node(n: int) -> None:
        rng = random.Random(n)
        home = "prod" if n % 2 else None
        client = KeepAlive(server.port)
        holding = False
        try:
            while not stop.is_set():
                pool = home if rng.random() < 0.95 else ("prod" if home is None else None)
                headers = {"Relay-Pool": pool} if pool else {}
                method = "DELETE" if holding and rng.random() < 0.3 else "PUT"
                try:
                    status, body = client.request(method, f"/v1/nodes/node-{n:02d}", headers)
                except (OSError, http.client.HTTPException) as exc:
                    with lock:
                        failures.append(f"node-{n} {method}: {exc!r}")
                    continue
                with lock:
                    statuses[status] += 1
                    if status not in ALLOWED:
                        failures.append(f"node-{n} {method} -> {status} {body[:200]!r}")
                if pool == home:
                    holding = status in (201, 202) or (holding and status == 409)
                time.sleep(rng.uniform(0, 0.01))
        finally:
            client.close()

    cli_runs: Counter[str] = Counter()

    def vendor() -> None:
        rng = random.Random(64)
        present = [lic.guid for lic in initial]
        while not stop.is_set():
            try:
                files = add_licenses(ws, 2, pool=rng.choice([None, "prod"]))
            except AssertionError as exc:  # a failed `relay add` or a traceback
                failures.append(f"relay add: {exc}")
                return
            present += [lic.guid for lic in files]
            cli_runs["add"] += 1
            victim = present.pop(rng.randrange(len(present)))
            run = ws.relay("del", "--license", victim)
            if run.code != 0:
                failures.append(f"relay del {victim}: {run.err.strip()}")
            cli_runs["del"] += 1
            time.sleep(0.2)

    snapshots: list[list[str]] = []

    def auditor() -> None:
        while not stop.wait(1.0):
            snapshots.append(violations(ws.db, integrity=False))

    workers = [threading.Thread(target=node, args=(n,)) for n in range(64)]
    workers += [threading.Thread(target=vendor), threading.Thread(target=auditor)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(STORM_SECONDS)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    code, _, err = server.stop()

    assert failures == []
    assert not any(status >= 500 for status in statuses)
    # The storm really raced: leases, heartbeats, releases, empty pools and cross-pool refusals.
    assert {201, 202, 204, 409, 410} <= set(statuses)
    assert cli_runs["add"] >= 3
    assert cli_runs["del"] >= 3
    assert [found for found in snapshots if found] == []
    assert len(snapshots) >= STORM_SECONDS / 2
    assert code == 0, err
    assert violations(ws.db) == []

"""Acceptance of issue 15: several `relay serve` replicas on one PostgreSQL database, black-box.

Every replica is a real process on loopback; the database is read directly to check leases.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from relay_core.model import EntityType, EventType
from relay_postgres import MIGRATIONS

from .conftest import Workspace, add_licenses, query, replica, request

_HOLDERS = (
    "SELECT l.id, l.node_id, n.fingerprint, n.deactivated_at FROM licenses l "
    "JOIN nodes n ON n.id = l.node_id"
)


def _double_leases(db: str) -> list[str]:
    """Every license held by an inactive node, and every node holding two licenses."""
    found = []
    holders = query(db, _HOLDERS)
    for lic, _node, fp, deactivated in holders:
        if deactivated is not None:
            found.append(f"license {lic} held by inactive node {fp}")
    for node, count in Counter(node for _, node, _, _ in holders).items():
        if count > 1:
            found.append(f"node {node} holds {count} licenses")
    return found


def test_three_replicas_256_claims_10_licenses(ws: Workspace, db: str) -> None:
    add_licenses(ws, db, 10)
    replicas = [replica(ws, db) for _ in range(3)]
    barrier = threading.Barrier(64)

    def claim(n: int) -> int:
        if n < 64:
            barrier.wait()
        return request(replicas[n % 3].port, "PUT", f"/v1/nodes/node-{n}")[0]

    with ThreadPoolExecutor(64) as pool:
        statuses = Counter(pool.map(claim, range(256)))
    assert statuses == {201: 10, 410: 246}
    assert _double_leases(db) == []
    assert query(db, "SELECT count(*) FROM licenses WHERE node_id IS NOT NULL") == [(10,)]
    for server in replicas:
        assert server.process.poll() is None


def test_same_32_fingerprints_through_all_three_replicas_at_once(ws: Workspace, db: str) -> None:
    add_licenses(ws, db, 40)
    replicas = [replica(ws, db) for _ in range(3)]
    jobs = [(fp, server) for fp in range(32) for server in replicas]
    barrier = threading.Barrier(len(jobs))

    def claim(job: tuple[int, object]) -> tuple[int, int]:
        fp, server = job
        barrier.wait()
        return fp, request(server.port, "PUT", f"/v1/nodes/same-{fp}")[0]  # type: ignore[attr-defined]

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(claim, jobs))
    statuses = Counter(status for _, status in results)
    assert not [s for s in statuses if s >= 500 or s == 0], statuses
    assert set(statuses) <= {201, 202, 409}, statuses
    created = Counter(fp for fp, status in results if status == 201)
    assert all(count == 1 for count in created.values()), created
    assert _double_leases(db) == []
    per_fp = query(
        db,
        "SELECT n.fingerprint, count(l.id) FROM nodes n LEFT JOIN licenses l ON l.node_id = n.id "
        "GROUP BY n.fingerprint",
    )
    assert all(count <= 1 for _, count in per_fp)
    leased = query(db, "SELECT count(*) FROM licenses WHERE node_id IS NOT NULL")[0][0]
    assert leased == statuses[201] == len(created)


def test_sigkill_one_replica_in_a_storm(ws: Workspace, db: str) -> None:
    """The others keep answering; the dead one's nodes are culled in time, each exactly once."""
    ttl, cull = 30, 1
    add_licenses(ws, db, 30)
    replicas = [
        replica(ws, db, "--ttl", f"{ttl}s", "--cull-interval", f"{cull}s") for _ in range(3)
    ]
    victim = replicas[2]
    nodes = {f"storm-{n}": replicas[n % 3] for n in range(24)}
    for fp, server in nodes.items():
        assert request(server.port, "PUT", f"/v1/nodes/{fp}")[0] == 201
    last_beat: dict[str, float] = {}
    answers: Counter[int] = Counter()
    dead_answers: Counter[int] = Counter()
    stop = threading.Event()
    killed = threading.Event()
    lock = threading.Lock()

    def node(fp: str) -> None:
        server = nodes[fp]
        while not stop.is_set():
            if server is victim and killed.is_set():
                return  # its nodes lost their relay and, here, do not fail over
            status, _ = request(server.port, "PUT", f"/v1/nodes/{fp}", timeout=10)
            with lock:
                if server is victim:
                    dead_answers[status] += 1
                else:
                    answers[status] += 1
                if status == 202:
                    last_beat[fp] = time.time()
            stop.wait(0.2)

    def newcomer() -> None:
        n = 0
        while not stop.is_set():
            server = replicas[n % 2]
            status, _ = request(server.port, "PUT", f"/v1/nodes/new-{n}", timeout=10)
            released, _ = request(server.port, "DELETE", f"/v1/nodes/new-{n}", timeout=10)
            with lock:
                answers[status] += 1
                answers[released] += 1
            n += 1
            stop.wait(0.05)

    threads = [threading.Thread(target=node, args=(fp,)) for fp in nodes]
    threads.append(threading.Thread(target=newcomer))
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(10)
        killed.set()
        orphans = [fp for fp, server in nodes.items() if server is victim]
        deadline = max(last_beat.get(fp, 0) for fp in orphans) + ttl + cull + 2
        freed_at = None
        while time.time() < deadline + 10:
            held = query(
                db,
                "SELECT count(*) FROM licenses l JOIN nodes n ON n.id = l.node_id "
                "WHERE n.fingerprint = ANY(%s)",
                (orphans,),
            )[0][0]
            if held == 0:
                freed_at = time.time()
                break
            time.sleep(0.25)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert freed_at is not None, "the killed replica's leases were never culled"
    assert freed_at <= deadline, f"culled {freed_at - deadline:.1f}s after TTL + interval + 2s"
    assert not [s for s in answers if s >= 500 or s == 0], answers
    assert answers[202] > 100
    culled = query(
        db,
        "SELECT n.fingerprint, count(*) FROM audit_logs a JOIN nodes n ON n.id = a.entity_id "
        "WHERE a.event_type_id = 10 AND a.entity_type_id = 2 GROUP BY n.fingerprint",
    )
    assert dict(culled) == dict.fromkeys(orphans, 1)
    assert _double_leases(db) == []
    for server in replicas[:2]:
        assert server.process.poll() is None


def test_five_replicas_started_at_once_migrate_once(ws: Workspace, db: str) -> None:
    replicas = [replica(ws, db, wait=False) for _ in range(5)]
    for server in replicas:
        server.wait_ready()
    rows = query(db, "SELECT version, applied_by FROM relay_schema ORDER BY version")
    assert [version for version, _ in rows] == [m.version for m in MIGRATIONS]
    assert len({by for _, by in rows}) == 1
    for server in replicas:
        assert request(server.port, "GET", "/v1/health")[0] == 200
    listing = ws.relay("ls", "--json", env={"RELAY_DATABASE": db})
    assert listing.code == 0, listing.err
    assert json.loads(listing.out or "[]") == []


def test_relay_del_while_replicas_claim_and_release(ws: Workspace, db: str) -> None:
    """`relay del` on the shared database while two replicas lease and free those very licenses:
    nothing answers 5xx, every deletion succeeds, nothing stays leased to a deleted license or to
    two nodes, and each deleted license has exactly one `license.removed` row and no more
    releases than leases."""
    files = add_licenses(ws, db, 16)
    replicas = [replica(ws, db) for _ in range(2)]
    doomed = files[:8]  # the oldest: fifo leases them first, so the deletions race leases
    ids = {
        guid: lic_id
        for lic_id, guid in query(db, "SELECT id, guid FROM licenses")
        if guid in {lic.guid for lic in doomed}
    }
    stop = threading.Event()
    statuses: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()

    def churn(n: int) -> None:
        server = replicas[n % 2]
        for cycle in range(500):  # bounded; stopped long before
            if stop.is_set():
                return
            for method in ("PUT", "DELETE"):
                status, _ = request(server.port, method, f"/v1/nodes/churn-{n}-{cycle}")
                with lock:
                    statuses[method, status] += 1

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        deletions = [
            ws.relay("del", "--license", lic.guid, env={"RELAY_DATABASE": db}) for lic in doomed
        ]
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert [(run.code, run.err) for run in deletions] == [(0, "")] * len(doomed)
    assert set(statuses) <= {("PUT", 201), ("PUT", 410), ("DELETE", 204), ("DELETE", 404)}, statuses
    assert statuses["PUT", 201] > 0
    assert query(db, "SELECT count(*) FROM licenses WHERE guid = ANY(%s)", ([*ids],)) == [(0,)]
    assert _double_leases(db) == []
    assert query(db, "SELECT count(*) FROM licenses WHERE node_id IS NOT NULL") == [(0,)]
    events = Counter(
        (event, entity)
        for event, entity in query(
            db,
            "SELECT event_type_id, entity_id FROM audit_logs WHERE entity_id = ANY(%s) "
            "AND entity_type_id = %s",
            ([*ids.values()], int(EntityType.LICENSE)),
        )
    )
    for lic_id in ids.values():
        removed = events[EventType.LICENSE_REMOVED, lic_id]
        leased = events[EventType.LICENSE_LEASED, lic_id]
        released = events[EventType.LICENSE_RELEASED, lic_id]
        assert removed == 1, f"license {lic_id}: {removed} removals"
        assert leased > 0, f"license {lic_id} was never leased: nothing raced"
        assert released <= leased, f"license {lic_id}: {released} releases of {leased} leases"
    for server in replicas:
        assert server.process.poll() is None

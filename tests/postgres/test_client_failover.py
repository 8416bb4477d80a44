"""relay-client with the URLs of two real replicas on one PostgreSQL: a SIGKILL loses nothing."""

from __future__ import annotations

import signal
import time

from relay_client import RelayClient

from .conftest import Workspace, add_licenses, query, replica


def test_client_keeps_its_lease_when_its_replica_is_killed(ws: Workspace, db: str) -> None:
    files = add_licenses(ws, db, 1)
    first, second = replica(ws, db), replica(ws, db)
    client = RelayClient(
        [f"http://127.0.0.1:{first.port}", f"http://127.0.0.1:{second.port}"],
        fingerprint="failover-node",
        heartbeat_fraction=0.02,  # a heartbeat every 1.2 s with the 60 s TTL
        timeout=3,
    )
    lease = client.acquire()
    try:
        assert lease.license_key == files[0].key
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        beats = lease.heartbeats
        deadline = time.monotonic() + 20
        while lease.heartbeats < beats + 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lease.heartbeats >= beats + 3, "no heartbeat went through the other replica"
        assert not lease.lost
        assert query(db, "SELECT count(*) FROM licenses WHERE node_id IS NOT NULL") == [(1,)]
    finally:
        released = lease.release()
    assert released is True
    assert query(db, "SELECT count(*) FROM licenses WHERE node_id IS NOT NULL") == [(0,)]
    events = query(
        db,
        "SELECT e.name FROM audit_logs a JOIN event_types e ON e.id = a.event_type_id "
        "WHERE a.entity_type_id = 1 ORDER BY a.id",
    )
    assert [e for (e,) in events][:2] == ["license.added", "license.leased"]
    assert events[-1] == ("license.released",)

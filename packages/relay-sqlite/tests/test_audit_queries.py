"""Keygen Relay's README audit-log queries run unchanged on our file after a scripted session."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from relay_core import Relay
from relay_core.testing import FrozenClock, LicenseWriter
from relay_sqlite import SqliteStore

T0 = 1_765_324_800  # 2025-12-10T00:00:00Z

# The three recipes of the "Logs" section of Keygen Relay's README, as spec Part B describes them.
RECENT_EVENTS = "SELECT * FROM audit_logs ORDER BY created_at DESC LIMIT 10;"
RECENTLY_LEASED = """
SELECT licenses.guid, audit_logs.created_at
FROM audit_logs
JOIN event_types ON audit_logs.event_type_id = event_types.id
JOIN licenses ON audit_logs.entity_id = licenses.id
WHERE event_types.name = 'license.leased'
ORDER BY audit_logs.created_at DESC
LIMIT 10;
"""
WHOLE_HISTORY = """
SELECT audit_logs.id, event_types.name AS event, entity_types.name AS entity,
       audit_logs.entity_id, pools.name AS pool, audit_logs.created_at
FROM audit_logs
JOIN event_types ON audit_logs.event_type_id = event_types.id
JOIN entity_types ON audit_logs.entity_type_id = entity_types.id
LEFT JOIN pools ON audit_logs.pool_id = pools.id
ORDER BY audit_logs.created_at ASC;
"""


def run_session(path: Path, writer: LicenseWriter) -> tuple[str, str]:
    """Add two licenses to a pool, claim, extend, release, claim, cull, delete; return guids."""
    clock = FrozenClock(T0)
    store = SqliteStore(path)
    try:
        relay = Relay(store, clock=clock, ttl=60)
        files = [(writer.license(key=f"KEY-{n}", issued=T0 - 60), f"KEY-{n}") for n in (1, 2)]
        first, second = relay.add_licenses(files, public_key=writer.public_key, pool="prod")
        clock.advance(5)
        relay.claim("node-1", "prod")
        clock.advance(10)
        relay.claim("node-1", "prod")
        clock.advance(5)
        relay.release("node-1", "prod")
        clock.advance(5)
        relay.claim("node-2", "prod")
        clock.advance(61)
        assert relay.cull().culled == 1
        clock.advance(4)
        relay.remove_licenses([second.guid])
    finally:
        store.close()
    return first.guid, second.guid


def test_readme_audit_queries_return_the_session(tmp_path: Path, writer: LicenseWriter) -> None:
    """Recent events, recent leases and the named history match what the session did."""
    path = tmp_path / "relay.sqlite"
    first, _ = run_session(path, writer)
    history = [
        (1, "pool.added", "pool", 1, None, T0),
        (2, "license.added", "license", 1, "prod", T0),
        (3, "license.added", "license", 2, "prod", T0),
        (4, "node.activated", "node", 1, "prod", T0 + 5),
        (5, "license.leased", "license", 1, "prod", T0 + 5),
        (6, "node.heartbeat_ping", "node", 1, "prod", T0 + 5),
        (7, "license.lease_extended", "license", 1, "prod", T0 + 15),
        (8, "node.heartbeat_ping", "node", 1, "prod", T0 + 15),
        (9, "license.released", "license", 1, "prod", T0 + 20),
        (10, "node.deactivated", "node", 1, "prod", T0 + 20),
        (11, "node.activated", "node", 2, "prod", T0 + 25),
        (12, "license.leased", "license", 1, "prod", T0 + 25),
        (13, "node.heartbeat_ping", "node", 2, "prod", T0 + 25),
        (14, "license.lease_expired", "license", 1, "prod", T0 + 86),
        (15, "node.culled", "node", 2, "prod", T0 + 86),
        (16, "license.removed", "license", 2, "prod", T0 + 90),
    ]
    conn = sqlite3.connect(path)
    try:
        assert sorted(conn.execute(WHOLE_HISTORY).fetchall(), key=lambda r: r[0]) == history

        recent = conn.execute(RECENT_EVENTS).fetchall()
        assert [tuple(d[0] for d in conn.execute(RECENT_EVENTS).description)] == [
            ("id", "event_type_id", "entity_type_id", "entity_id", "created_at", "pool_id")
        ]
        assert sorted(r[0] for r in recent) == list(range(7, 17))
        assert [r[4] for r in recent] == sorted((r[4] for r in recent), reverse=True)

        assert conn.execute(RECENTLY_LEASED).fetchall() == [(first, T0 + 25), (first, T0 + 5)]
    finally:
        conn.close()

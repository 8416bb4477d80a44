"""Primitives the contract does not pin down byte for byte: the joined node lookup, audit batches."""

from __future__ import annotations

import random
import sqlite3

from relay_core.model import AuditEntry, EntityType, EventType, NewLicense, Strategy
from relay_core.ports import AuditQuery
from relay_sqlite import SqliteStore

T0 = 1_700_000_000


def test_get_node_lease_returns_the_active_node_and_its_license(store: SqliteStore) -> None:
    """One lookup answers the node and its lease: none, node only, node and license, deactivated."""
    with store.transaction() as tx:
        lic = tx.insert_license(NewLicense("g1", b"file-1", "k1", None), None, T0)
        assert tx.get_node_lease("fp") is None
        node = tx.activate_node("fp", T0)
        assert tx.get_node_lease("fp") == (node, None)
        leased = tx.lease_free_license(None, node.id, Strategy.FIFO, T0, random.Random(0))
        assert leased is not None
        assert leased.id == lic.id
        assert tx.get_node_lease("fp") == (node, leased)
        tx.release_license(lic.id, T0 + 1)
        tx.deactivate_node(node.id, T0 + 1)
        assert tx.get_node_lease("fp") is None


def test_audit_rows_beyond_one_statement_are_all_written_in_order(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    """250 audit rows (three INSERT statements of up to 100 rows) arrive whole and in order."""
    entries = [
        AuditEntry(EventType.NODE_CULLED, EntityType.NODE, i, i % 3 or None, T0 + i)
        for i in range(250)
    ]
    with store.transaction() as tx:
        tx.append_audit(entries)
        records = tx.read_audit(AuditQuery(limit=1000))
    assert [r.entity_id for r in reversed(records)] == list(range(250))
    rows = raw.execute(
        "SELECT event_type_id, entity_type_id, entity_id, pool_id, created_at "
        "FROM audit_logs ORDER BY id"
    ).fetchall()
    assert rows == [(10, 2, i, i % 3 or None, T0 + i) for i in range(250)]

"""The hot statements are index seeks: no sort of free rows, no scan of licenses or nodes."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from relay_core.model import Strategy
from relay_sqlite import SqliteStore
from relay_sqlite import transaction as sql

PARAMS: dict[str, Any] = {"pool": 1, "node": 1, "now": 5, "id": 3, "offset": 2}


@pytest.fixture(params=["as created", "after ANALYZE of an empty file", "after ANALYZE"])
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A populated file, with planner statistics absent, stale, or fresh."""
    path = tmp_path / "relay.sqlite"
    SqliteStore(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    if request.param == "after ANALYZE of an empty file":
        conn.execute("ANALYZE")
    conn.execute("BEGIN")
    conn.execute("INSERT INTO pools (name) VALUES ('a')")
    conn.executemany(
        "INSERT INTO licenses (guid, file, key, pool_id, created_at) VALUES (?, ?, ?, ?, ?)",
        [
            (f"g{i}", os.urandom(32), f"k{i}", 1 if i % 2 else None, 1000 + i // 10)
            for i in range(4000)
        ],
    )
    conn.executemany(
        "INSERT INTO nodes (fingerprint, last_heartbeat_at) VALUES (?, ?)",
        [(f"n{i}", i) for i in range(1500)],
    )
    conn.execute("UPDATE licenses SET node_id = id WHERE id <= 1000")
    conn.execute("UPDATE nodes SET deactivated_at = 1 WHERE id > 1200")
    conn.execute("COMMIT")
    if request.param == "after ANALYZE":
        conn.execute("ANALYZE")
    try:
        yield conn
    finally:
        conn.close()


def plan(conn: sqlite3.Connection, statement: str, params: Any = PARAMS) -> list[str]:
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement, params)]


def assert_seeks_only(steps: list[str]) -> None:
    for step in steps:
        assert "TEMP B-TREE" not in step, steps
        assert not step.startswith(("SCAN licenses", "SCAN nodes", "SCAN l", "SCAN n")), steps


@pytest.mark.parametrize("strategy", [Strategy.FIFO, Strategy.LIFO])
@pytest.mark.parametrize("global_pool", [True, False], ids=["global pool", "named pool"])
def test_fifo_and_lifo_walk_the_pick_index(
    conn: sqlite3.Connection, strategy: Strategy, global_pool: bool
) -> None:
    """The lease statement seeks relay_licenses_pick and never sorts the free licenses."""
    steps = plan(conn, sql._LEASE_ORDERED[strategy][global_pool])
    assert_seeks_only(steps)
    assert any("INDEX relay_licenses_pick (pool_id=? AND node_id=?)" in s for s in steps)


@pytest.mark.parametrize("global_pool", [True, False], ids=["global pool", "named pool"])
def test_rand_seeks_the_free_span_and_one_id(conn: sqlite3.Connection, global_pool: bool) -> None:
    """rand finds the free ids' span by two index seeks and tries ids by primary key."""
    statements = (sql._FREE_SPAN[global_pool], sql._LEASE_ID[global_pool])
    assert all("RANDOM()" not in s.upper() for s in statements)
    steps = plan(conn, sql._FREE_SPAN[global_pool])
    assert_seeks_only(steps)
    assert [s for s in steps if s.startswith("SEARCH")] == [
        "SEARCH licenses USING COVERING INDEX idx_licenses_pool_node (pool_id=? AND node_id=?)"
    ] * 2
    assert plan(conn, sql._LEASE_ID[global_pool]) == [
        "SEARCH licenses USING INTEGER PRIMARY KEY (rowid=?)"
    ]
    steps = plan(conn, sql._COUNT_FREE[global_pool])
    assert steps == [
        "SEARCH licenses USING COVERING INDEX relay_licenses_pick (pool_id=? AND node_id=?)"
    ]


@pytest.mark.parametrize("global_pool", [True, False], ids=["global pool", "named pool"])
def test_has_free_license_seeks(conn: sqlite3.Connection, global_pool: bool) -> None:
    """Asking whether a pool has a free license is an index seek."""
    assert_seeks_only(plan(conn, sql._HAS_FREE[global_pool]))


def test_cull_seeks_active_nodes_by_heartbeat(conn: sqlite3.Connection) -> None:
    """The cull finds stale active nodes by index range and their licenses by node_id."""
    steps = plan(conn, sql._CULL_NODES, (5, 1000))
    assert steps == ["SEARCH nodes USING INDEX relay_nodes_alive (last_heartbeat_at<?)"]
    steps = plan(conn, sql._CULL_LICENSES, ("[1, 2]",))
    assert_seeks_only(steps)
    assert "(node_id=?)" in steps[0]


def test_claim_lookups_use_unique_indexes(conn: sqlite3.Connection) -> None:
    """Node by fingerprint and license by holder are unique-index seeks."""
    steps = plan(
        conn,
        "SELECT * FROM nodes WHERE fingerprint = ? AND deactivated_at IS NULL",
        ("fp",),
    )
    assert_seeks_only(steps)
    steps = plan(conn, "SELECT * FROM licenses WHERE node_id = ?", (1,))
    assert_seeks_only(steps)


def test_report_scan_walks_the_lifecycle_index_in_order(conn: sqlite3.Connection) -> None:
    """A report's page of lifecycle rows is a seek on the partial index, with no sort."""
    from relay_core.reports import LIFECYCLE_EVENTS

    steps = plan(conn, sql.scan_sql(LIFECYCLE_EVENTS), (5, 5, 99))
    assert sum("relay_audit_lifecycle" in step for step in steps) == 2, steps  # page and its end
    assert not any("TEMP B-TREE" in step for step in steps), steps
    assert not any(step.startswith("SCAN") for step in steps), steps

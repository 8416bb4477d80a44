"""A report's scan of the audit log walks the lifecycle index in order: no sort, no heap."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from relay_core.model import EventType
from relay_core.reports import LIFECYCLE_EVENTS
from relay_postgres import PostgresStore
from relay_postgres import transaction as sql
from relay_postgres.migrations import LIFECYCLE_EVENT_IDS

ROWS = 20_000


@pytest.fixture
def conn(schema_url: str) -> Iterator[psycopg.Connection[tuple]]:
    """A log of mostly heartbeats (as a busy one is), analyzed.

    Statistics are fresh, as autovacuum keeps them on a table that grows: on a table that was
    never analyzed the planner guesses it small and may sort a bitmap scan's rows instead.
    """
    PostgresStore(schema_url).close()
    with psycopg.connect(schema_url, autocommit=True) as conn:
        # Nine heartbeat rows (events 4 and 8) for every lifecycle row.
        conn.execute(
            "INSERT INTO audit_logs (event_type_id, entity_type_id, entity_id, pool_id, "
            "created_at) SELECT CASE WHEN i %% 10 = 0 THEN 3 WHEN i %% 2 = 0 THEN 4 ELSE 8 END, "
            "1, i %% 500, NULL, 1000 + i / 4 FROM generate_series(1, %s) AS i",
            (ROWS,),
        )
        conn.execute("ANALYZE audit_logs")
        yield conn


def plan(conn: psycopg.Connection[tuple], query: str, params: Any) -> str:
    rows = conn.execute("EXPLAIN " + query, params).fetchall()
    return "\n".join(r[0] for r in rows)


def test_lifecycle_ids_match_the_reports_events() -> None:
    assert tuple(sorted(int(e) for e in LIFECYCLE_EVENTS)) == LIFECYCLE_EVENT_IDS


@pytest.mark.parametrize(
    "events", [LIFECYCLE_EVENTS, (EventType.LICENSE_LEASED, EventType.LICENSE_RELEASED)]
)
def test_report_scan_is_an_index_only_walk_of_the_lifecycle_index(
    conn: psycopg.Connection[tuple], events: tuple[EventType, ...]
) -> None:
    steps = plan(conn, sql.scan_sql(events), {"after": 1500, "offset": 99})
    assert steps.count("Index Only Scan using relay_audit_lifecycle") == 2, steps
    assert "Sort" not in steps, steps

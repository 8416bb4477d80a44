"""The database itself refuses double leases and duplicate fingerprints, whatever the SQL."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pg
from relay_core.model import Strategy
from relay_postgres import PostgresStore
from relay_postgres.transaction import _LEASE_DRAWN, _LEASE_ORDERED


@pytest.fixture
def url(schema_url: str) -> str:
    PostgresStore(schema_url).close()
    return schema_url


def test_one_node_cannot_hold_two_licenses(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        node = conn.execute("INSERT INTO nodes (fingerprint) VALUES ('n') RETURNING id").fetchone()
        for n in range(2):
            conn.execute(
                "INSERT INTO licenses (guid, file, key) VALUES (%s, %s, %s)",
                (f"g{n}", f"f{n}".encode(), f"k{n}"),
            )
        assert node is not None
        conn.execute("UPDATE licenses SET node_id = %s WHERE guid = 'g0'", (node[0],))
        with pytest.raises(pg.UniqueViolation):
            conn.execute("UPDATE licenses SET node_id = %s WHERE guid = 'g1'", (node[0],))


def test_one_fingerprint_has_one_node_row(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO nodes (fingerprint) VALUES ('n')")
        with pytest.raises(pg.UniqueViolation):
            conn.execute("INSERT INTO nodes (fingerprint) VALUES ('n')")


def test_a_license_file_is_unique_even_when_large(url: str) -> None:
    big = bytes(range(256)) * 40  # 10 KB: too large for a plain B-tree entry
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO licenses (guid, file, key) VALUES ('a', %s, 'ka')", (big,))
        with pytest.raises(pg.UniqueViolation):
            conn.execute("INSERT INTO licenses (guid, file, key) VALUES ('b', %s, 'kb')", (big,))


@pytest.mark.parametrize("strategy", list(Strategy))
@pytest.mark.parametrize("global_pool", [True, False])
def test_free_license_pick_walks_the_partial_indexes(
    url: str, strategy: Strategy, global_pool: bool
) -> None:
    """With 20,000 licenses, 19,000 of them leased, each strategy's lease statement (the real
    one) reads the free-license indexes and never scans or sorts the table."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO pools (name) VALUES ('p')")
        conn.execute(
            "INSERT INTO nodes (fingerprint) SELECT 'n' || g FROM generate_series(1, 20000) g"
        )
        conn.execute(
            "INSERT INTO licenses (guid, file, key, created_at, node_id, pool_id) "
            "SELECT 'g' || g, ('f' || g)::bytea, 'k' || g, g, "
            "CASE WHEN g % 20 <> 0 THEN g END, CASE WHEN g % 2 = 0 THEN 1 END "
            "FROM generate_series(1, 20000) g"
        )
        conn.execute("ANALYZE")
        params = {"pool": None if global_pool else 1, "node": 1, "now": 0, "offset": 3}
        if strategy is Strategy.RAND:
            statements = [_LEASE_DRAWN[global_pool]]
            params["draws"] = [0.5] * 32
        else:
            statements = [_LEASE_ORDERED[strategy][global_pool]]
        for statement in statements:
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + statement, params))
            assert "relay_licenses_free" in plan, plan
            assert "Seq Scan" not in plan, plan
            assert "Sort Key: licenses" not in plan, plan

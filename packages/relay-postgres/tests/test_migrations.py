"""Migrations: once per database however many replicas start together, and never backwards."""

from __future__ import annotations

import threading

import pytest
from relay_core.errors import SchemaVersionError
from relay_postgres import LATEST_VERSION, MIGRATIONS, PostgresStore
from relay_postgres.testing import PostgresServer


def test_five_stores_opening_at_once_migrate_once(
    postgres_server: PostgresServer, schema_url: str
) -> None:
    barrier = threading.Barrier(5)
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            stores.append(PostgresStore(schema_url))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert len(stores) == 5
        rows = postgres_server.execute(
            schema_url, "SELECT version, applied_by FROM relay_schema ORDER BY version"
        )
        assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]
        assert len({r[1] for r in rows}) == 1, "the migrations were applied by one connection"
    finally:
        for store in stores:
            store.close()


def test_schema_has_keygen_relays_tables_and_event_rows(
    postgres_server: PostgresServer, schema_url: str
) -> None:
    PostgresStore(schema_url).close()
    columns = postgres_server.execute(
        schema_url,
        "SELECT table_name, string_agg(column_name, ',' ORDER BY ordinal_position) "
        "FROM information_schema.columns WHERE table_schema = current_schema() "
        "GROUP BY table_name ORDER BY table_name",
    )
    assert dict(columns) == {
        "audit_logs": "id,event_type_id,entity_type_id,entity_id,created_at,pool_id",
        "entity_types": "id,name",
        "event_types": "id,name",
        "licenses": "id,guid,file,key,claims,last_claimed_at,last_released_at,node_id,pool_id,"
        "created_at,file_expires_at",
        "nodes": "id,fingerprint,last_heartbeat_at,created_at,deactivated_at",
        "pools": "id,name,created_at",
        "relay_denials": "pool_id,minute,count",
        "relay_schema": "version,name,applied_at,applied_by",
    }
    events = postgres_server.execute(schema_url, "SELECT id, name FROM event_types ORDER BY id")
    assert events[10] == (10, "node.culled")
    assert len(events) == 12


def test_a_newer_schema_is_refused(postgres_server: PostgresServer, schema_url: str) -> None:
    PostgresStore(schema_url).close()
    postgres_server.execute(
        schema_url,
        "INSERT INTO relay_schema (version, name) VALUES (%s, 'future')",
        (LATEST_VERSION + 1,),
    )
    with pytest.raises(SchemaVersionError, match="newer than this relay"):
        PostgresStore(schema_url)


def test_reopening_runs_nothing(postgres_server: PostgresServer, schema_url: str) -> None:
    PostgresStore(schema_url).close()
    before = postgres_server.execute(schema_url, "SELECT * FROM relay_schema")
    PostgresStore(schema_url).close()
    assert postgres_server.execute(schema_url, "SELECT * FROM relay_schema") == before

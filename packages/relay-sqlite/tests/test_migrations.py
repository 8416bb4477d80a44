"""Databases at each of Keygen Relay's 18 historical versions migrate forward, data intact."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from relay_core.errors import SchemaVersionError, StorageError
from relay_core.model import EntityType, EventType, Strategy
from relay_core.ports import ANY_POOL, AuditQuery
from relay_sqlite import LATEST_VERSION, SqliteStore
from relay_sqlite.connection import migrate
from relay_sqlite.migrations import MIGRATIONS

ADDED = 1733788800  # 2024-12-10T00:00:00Z
ADDED_TEXT = "2024-12-10 00:00:00"
BEAT = ADDED + 30
BEAT_TEXT = "2024-12-10 00:00:30"


def keygen_database(path: Path, version: int) -> None:
    """A file as Keygen Relay left it at `version`, built from our reconstruction."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(conn, str(path), upto=version)
    finally:
        conn.close()


def schema(path: Path) -> set[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return {(r[0], r[1]) for r in conn.execute("SELECT name, sql FROM sqlite_master")}
    finally:
        conn.close()


def columns(conn: sqlite3.Connection, table: str) -> dict[str, str]:
    return {r[1]: r[2] for r in conn.execute(f"PRAGMA table_info({table})")}


def seed(path: Path) -> None:
    """One held license, one free license, their node and one audit row, in that era's shapes."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        nodes = columns(conn, "nodes")
        text = nodes["created_at"] == "DATETIME"
        conn.execute(
            "INSERT INTO nodes (fingerprint, last_heartbeat_at, created_at) VALUES (?, ?, ?)",
            ("fp-1", BEAT_TEXT if text else BEAT, ADDED_TEXT if text else ADDED),
        )
        licenses = columns(conn, "licenses")
        text = licenses["created_at"] == "DATETIME"
        for n, node in ((1, 1), (2, None)):
            row = {
                "file": f"file-{n}".encode(),
                "key": f"key-{n}",
                "node_id": node,
                "claims": 1 if node else 0,
                "created_at": ADDED_TEXT if text else ADDED,
            }
            row["guid" if "guid" in licenses else "id"] = f"guid-{n}"
            names = ", ".join(row)
            marks = ", ".join("?" * len(row))
            conn.execute(f"INSERT INTO licenses ({names}) VALUES ({marks})", list(row.values()))
        if "audit_logs" in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}:
            audit = columns(conn, "audit_logs")
            entity = "guid-1" if audit["entity_id"] == "TEXT" else 1
            stamp = ADDED_TEXT if audit["created_at"] == "DATETIME" else ADDED
            conn.execute(
                "INSERT INTO audit_logs (event_type_id, entity_type_id, entity_id, created_at) "
                "VALUES (3, 1, ?, ?)",
                (entity, stamp),
            )
    finally:
        conn.close()


@pytest.fixture(scope="module")
def fresh_schema(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    path = tmp_path_factory.mktemp("fresh") / "relay.sqlite"
    SqliteStore(path).close()
    return schema(path)


@pytest.mark.parametrize(
    "version", [m.version for m in MIGRATIONS], ids=[m.name for m in MIGRATIONS]
)
def test_each_historical_version_migrates_to_the_final_schema(
    tmp_path: Path, version: int, fresh_schema: set[tuple[str, str]]
) -> None:
    """A database at this version opens, ends at (1755607637, 0) and equals a fresh one."""
    path = tmp_path / "old.sqlite"
    keygen_database(path, version)
    store = SqliteStore(path)
    store.close()
    assert schema(path) == fresh_schema
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version, dirty FROM schema_migrations").fetchall() == [
            (LATEST_VERSION, 0)
        ]
        assert conn.execute("SELECT count(*) FROM event_types").fetchone() == (12,)
        assert conn.execute("SELECT count(*) FROM entity_types").fetchone() == (4,)
    finally:
        conn.close()


@pytest.mark.parametrize(
    "version",
    [m.version for m in MIGRATIONS[1:]],
    ids=[m.name for m in MIGRATIONS[1:]],
)
def test_rows_written_at_each_version_survive_the_migration(tmp_path: Path, version: int) -> None:
    """Licenses, their holder, timestamps and audit rows of an old file read back correctly."""
    path = tmp_path / "old.sqlite"
    keygen_database(path, version)
    seed(path)
    store = SqliteStore(path)
    try:
        with store.transaction() as tx:
            held = tx.get_license("guid-1")
            free = tx.get_license("guid-2")
            lease = tx.get_node_lease("fp-1")
            assert lease is not None
            node = lease[0]
            assert held is not None
            assert free is not None
            assert node is not None
            assert (held.node_id, held.claims, held.created_at, held.pool_id) == (
                node.id,
                1,
                ADDED,
                None,
            )
            assert (node.last_heartbeat_at, node.created_at) == (BEAT, ADDED)
            assert [lic.guid for lic in tx.list_licenses(ANY_POOL)] == ["guid-1", "guid-2"]
            audit = tx.read_audit(AuditQuery())
            if version >= 1733782196:
                assert [(a.event, a.entity_type, a.entity_label) for a in audit] == [
                    (EventType.LICENSE_LEASED, EntityType.LICENSE, "guid-1")
                ]
            other = tx.activate_node("fp-2", ADDED)
            got = tx.lease_free_license(None, other.id, Strategy.RAND, ADDED, random.Random(0))
            assert got is not None
            assert got.guid == "guid-2"
    finally:
        store.close()


def test_a_newer_schema_version_is_refused(db_path: Path) -> None:
    """A database migrated by a newer Keygen Relay is refused with the versions named."""
    SqliteStore(db_path).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("UPDATE schema_migrations SET version = 1800000000")
    conn.close()
    with pytest.raises(SchemaVersionError) as caught:
        SqliteStore(db_path)
    message = str(caught.value)
    assert str(db_path) in message
    assert "1800000000" in message
    assert "newer" in message
    assert "\n" not in message


def test_an_unknown_older_version_is_refused(db_path: Path) -> None:
    """A version that is no migration of Keygen Relay's is refused, not guessed at."""
    SqliteStore(db_path).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("UPDATE schema_migrations SET version = 1740000000")
    conn.close()
    with pytest.raises(SchemaVersionError, match="unknown schema version 1740000000"):
        SqliteStore(db_path)


def test_a_newer_extension_version_is_refused(db_path: Path) -> None:
    """Our own additions are versioned too; a newer Relay's file is refused."""
    SqliteStore(db_path).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("UPDATE relay_schema SET version = 99")
    conn.close()
    with pytest.raises(SchemaVersionError, match="extension version 99"):
        SqliteStore(db_path)


def test_a_dirty_database_is_refused(tmp_path: Path) -> None:
    """A half-applied Keygen Relay migration is reported, not built upon."""
    path = tmp_path / "dirty.sqlite"
    keygen_database(path, 1734321890)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE schema_migrations SET dirty = 1")
    conn.close()
    with pytest.raises(StorageError, match="dirty at version 1734321890") as caught:
        SqliteStore(path)
    assert not isinstance(caught.value, SchemaVersionError)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version, dirty FROM schema_migrations").fetchall() == [
        (1734321890, 1)
    ]
    conn.close()


def test_keygen_relay_inserts_still_work(store: SqliteStore, db_path: Path) -> None:
    """Keygen Relay's own insert (no file_expires_at) works and such a license is leasable."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("INSERT INTO licenses (guid, file, key) VALUES ('g', x'00', 'k')")
    finally:
        conn.close()
    with store.transaction() as tx:
        node = tx.activate_node("fp", ADDED)
        got = tx.lease_free_license(None, node.id, Strategy.FIFO, ADDED, random.Random(0))
        assert got is not None
        assert (got.guid, got.file_expires_at) == ("g", None)

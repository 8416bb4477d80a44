"""A fresh database is Keygen Relay's final schema (spec Part B §5.4 and §5.5) plus our additions."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from relay_sqlite import LATEST_VERSION, SqliteStore

FINAL_SCHEMA = """
CREATE TABLE "nodes" (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  fingerprint TEXT UNIQUE NOT NULL,
  last_heartbeat_at INTEGER,
  created_at INTEGER NOT NULL DEFAULT (unixepoch())
, deactivated_at INTEGER);
CREATE INDEX idx_nodes_activated ON nodes (deactivated_at) WHERE deactivated_at IS NULL;
CREATE INDEX idx_nodes_last_heartbeat ON nodes (last_heartbeat_at);

CREATE TABLE pools (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT UNIQUE NOT NULL,
  created_at INTEGER NOT NULL DEFAULT (unixepoch())
);

CREATE TABLE "licenses" (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  guid TEXT UNIQUE NOT NULL,
  file BLOB UNIQUE NOT NULL,
  key TEXT UNIQUE NOT NULL,
  claims INTEGER DEFAULT 0 NOT NULL,
  last_claimed_at INTEGER,
  last_released_at INTEGER,
  node_id INTEGER UNIQUE,
  pool_id INTEGER,
  created_at INTEGER NOT NULL DEFAULT (unixepoch()),
  FOREIGN KEY (node_id) REFERENCES nodes(id) ON DELETE SET NULL,
  FOREIGN KEY (pool_id) REFERENCES pools(id) ON DELETE SET NULL
);
CREATE INDEX idx_licenses_pool_node ON "licenses"(pool_id, node_id);

CREATE TABLE event_types (id TINYINT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE entity_types (id TINYINT PRIMARY KEY, name TEXT NOT NULL);

CREATE TABLE "audit_logs" (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_type_id TINYINT NOT NULL REFERENCES event_types (id),
  entity_type_id TINYINT NOT NULL REFERENCES entity_types (id),
  entity_id INTEGER NOT NULL,
  created_at INTEGER NOT NULL DEFAULT (unixepoch())
, pool_id INTEGER);

CREATE TABLE schema_migrations (version uint64,dirty bool);
CREATE UNIQUE INDEX version_unique ON schema_migrations (version);
"""

EVENT_TYPES = [
    (0, "unknown"),
    (1, "license.added"),
    (2, "license.removed"),
    (3, "license.leased"),
    (4, "license.lease_extended"),
    (5, "license.released"),
    (6, "license.lease_expired"),
    (7, "node.activated"),
    (8, "node.heartbeat_ping"),
    (9, "node.deactivated"),
    (10, "node.culled"),
    (11, "pool.added"),
]
ENTITY_TYPES = [(0, "unknown"), (1, "license"), (2, "node"), (3, "pool")]

# Our one extra column on `licenses`: nullable, so Keygen Relay's inserts keep working.
ADDED_LICENSE_COLUMN = ", file_expires_at INTEGER"


def normalise(sql: str) -> str:
    sql = re.sub(r"\s+", " ", sql.strip().rstrip(";"))
    return re.sub(r"\s*([(),])\s*", r"\1", sql)


def master(conn: sqlite3.Connection) -> dict[str, tuple[str, str]]:
    return {
        name: (kind, sql)
        for kind, name, sql in conn.execute("SELECT type, name, sql FROM sqlite_master")
        if sql is not None
    }


def test_fresh_schema_is_keygen_relays_plus_allowed_additions(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    """Every §5.4 statement is in sqlite_master verbatim (whitespace aside); extras are ours only."""
    objects = master(raw)
    assert objects.pop("sqlite_sequence")[1] == "CREATE TABLE sqlite_sequence(name,seq)"
    ours = {
        normalise(sql).replace(normalise(ADDED_LICENSE_COLUMN), "") for _, sql in objects.values()
    }
    expected = {normalise(s) for s in FINAL_SCHEMA.split(";") if s.strip()}
    assert expected - ours == set()
    extras = {
        name: kind
        for name, (kind, sql) in objects.items()
        if normalise(sql).replace(normalise(ADDED_LICENSE_COLUMN), "") not in expected
    }
    assert all(name.startswith("relay_") for name in extras), extras
    assert set(extras.values()) <= {"table", "index"}


def test_extra_license_column_is_nullable_and_last_of_the_columns(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    """`file_expires_at` is the only added column on licenses and it accepts NULL."""
    columns = [(r[1], r[2], r[3]) for r in raw.execute("PRAGMA table_info(licenses)")]
    assert columns[-1] == ("file_expires_at", "INTEGER", 0)
    assert [c[0] for c in columns[:-1]] == [
        "id",
        "guid",
        "file",
        "key",
        "claims",
        "last_claimed_at",
        "last_released_at",
        "node_id",
        "pool_id",
        "created_at",
    ]


def test_lookup_rows_and_schema_migrations_row(store: SqliteStore, raw: sqlite3.Connection) -> None:
    """event_types, entity_types and schema_migrations hold exactly Keygen Relay's rows."""
    assert raw.execute("SELECT id, name FROM event_types ORDER BY id").fetchall() == EVENT_TYPES
    assert raw.execute("SELECT id, name FROM entity_types ORDER BY id").fetchall() == ENTITY_TYPES
    assert raw.execute("SELECT version, dirty FROM schema_migrations").fetchall() == [
        (1755607637, 0)
    ]
    assert LATEST_VERSION == 1755607637


def test_default_pragmas_persist_in_the_file(store: SqliteStore, raw: sqlite3.Connection) -> None:
    """WAL, an 8 KiB page and incremental auto-vacuum are written into a new file."""
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert raw.execute("PRAGMA page_size").fetchone() == (8192,)
    assert raw.execute("PRAGMA auto_vacuum").fetchone() == (2,)


def test_pragmas_can_be_overridden(tmp_path: Path) -> None:
    """Overrides replace the defaults before the file is initialised."""
    path = tmp_path / "custom.sqlite"
    SqliteStore(path, pragmas={"journal_mode": "DELETE", "PAGE_SIZE": "4096"}).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert conn.execute("PRAGMA page_size").fetchone() == (4096,)
    finally:
        conn.close()


def test_opening_a_database_beside_a_writer_does_not_wait_for_it(
    db_path: Path, store: SqliteStore
) -> None:
    """The page size and auto-vacuum pragmas only shape a new file; setting them again on an
    existing one would wait for the write lock. With `busy_timeout` 0 that wait fails at once,
    so a second store opens while the first holds a write transaction only if they are
    skipped, and the file keeps its layout."""
    with store.transaction() as tx:
        tx.create_pool("held", 1)
        other = SqliteStore(db_path, pragmas={"busy_timeout": "0"})
        other.close()
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)
        assert conn.execute("PRAGMA page_size").fetchone() == (8192,)
    finally:
        conn.close()


def test_reopening_changes_nothing(db_path: Path, store: SqliteStore) -> None:
    """Opening an up-to-date database again leaves its schema and version as they were."""
    store.close()
    conn = sqlite3.connect(db_path)
    before = master(conn)
    SqliteStore(db_path).close()
    assert master(conn) == before
    assert conn.execute("SELECT * FROM schema_migrations").fetchall() == [(1755607637, 0)]
    conn.close()

"""Keygen Relay's 18 schema migrations, reconstructed, and our own additions on top.

Keygen Relay (golang-migrate) keeps one row in `schema_migrations`: the version of the last
migration applied. Opening a database at any of those versions replays the remaining ones, so a
file written by any Keygen Relay release is carried forward to the final schema (1755607637).

The SQL is reconstructed from what each migration's name says it did and from the final
`sqlite_master` text it must leave behind (the spec, Part B §5.4): table rebuilds leave a quoted
name (`CREATE TABLE "nodes"`), `ADD COLUMN` leaves `, column)` at the end. A fresh database runs
the same list, so a new file and a migrated one are the same schema by construction.

Our additions (`EXTENSIONS`) come after and only add things Keygen Relay ignores: a nullable
column, three indexes and a table of our own (`relay_denials`). They are versioned in their own table, `relay_schema`, so
`schema_migrations` stays exactly Keygen Relay's.
"""

from __future__ import annotations

import attrs

__all__ = [
    "EXTENSIONS",
    "EXTENSION_VERSION",
    "LATEST_VERSION",
    "LIFECYCLE_EVENT_IDS",
    "MIGRATIONS",
    "Migration",
]


@attrs.frozen
class Migration:
    """One migration: its version, name and the statements it runs, in one transaction."""

    version: int
    name: str
    statements: tuple[str, ...]


_EVENT_TYPES = (
    "INSERT INTO event_types (id, name) VALUES "
    "(0, 'unknown'), (1, 'license.added'), (2, 'license.removed'), (3, 'license.leased'), "
    "(4, 'license.lease_extended'), (5, 'license.released'), (6, 'license.lease_expired'), "
    "(7, 'node.activated'), (8, 'node.heartbeat_ping'), (9, 'node.deactivated'), "
    "(10, 'node.culled')"
)


def _ts(column: str) -> str:
    """A Keygen Relay 0.x DATETIME text (or an integer) as Unix seconds."""
    return f"CAST(strftime('%s', {column}) AS INTEGER)"


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1733782192,
        "add_nodes",
        (
            """CREATE TABLE nodes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  fingerprint TEXT UNIQUE NOT NULL,
  claimed_at DATETIME,
  last_heartbeat_at DATETIME,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP
)""",
        ),
    ),
    Migration(
        1733782194,
        "add_licenses",
        (
            """CREATE TABLE licenses (
  id TEXT PRIMARY KEY,
  file BLOB UNIQUE NOT NULL,
  key TEXT UNIQUE NOT NULL,
  claims INTEGER DEFAULT 0 NOT NULL,
  last_claimed_at DATETIME,
  last_released_at DATETIME,
  node_id INTEGER UNIQUE,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  FOREIGN KEY (node_id) REFERENCES nodes(id) ON DELETE SET NULL
)""",
        ),
    ),
    Migration(
        1733782196,
        "add_audit_logs",
        (
            """CREATE TABLE audit_logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_type_id TINYINT NOT NULL,
  entity_type_id TINYINT NOT NULL,
  entity_id TEXT NOT NULL,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP
)""",
        ),
    ),
    Migration(
        1733866970,
        "add_event_types",
        (
            "CREATE TABLE event_types (id TINYINT PRIMARY KEY, name TEXT NOT NULL)",
            _EVENT_TYPES,
        ),
    ),
    Migration(
        1734124087,
        "add_entity_types",
        (
            "CREATE TABLE entity_types (id TINYINT PRIMARY KEY, name TEXT NOT NULL)",
            "INSERT INTO entity_types (id, name) VALUES (0, 'unknown'), (1, 'license'), (2, 'node')",
        ),
    ),
    Migration(
        1734125421,
        "update_ts_for_audit_logs",
        (
            """CREATE TABLE audit_logs_new (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_type_id TINYINT NOT NULL REFERENCES event_types (id),
  entity_type_id TINYINT NOT NULL REFERENCES entity_types (id),
  entity_id TEXT NOT NULL,
  created_at INTEGER NOT NULL DEFAULT (unixepoch())
)""",
            "INSERT INTO audit_logs_new (id, event_type_id, entity_type_id, entity_id, created_at) "
            f"SELECT id, event_type_id, entity_type_id, entity_id, "
            f"COALESCE({_ts('created_at')}, unixepoch()) FROM audit_logs",
            "DROP TABLE audit_logs",
            "ALTER TABLE audit_logs_new RENAME TO audit_logs",
        ),
    ),
    Migration(
        1734125954,
        "update_ts_for_licenses",
        (
            """CREATE TABLE licenses_new (
  id TEXT PRIMARY KEY,
  file BLOB UNIQUE NOT NULL,
  key TEXT UNIQUE NOT NULL,
  claims INTEGER DEFAULT 0 NOT NULL,
  last_claimed_at INTEGER,
  last_released_at INTEGER,
  node_id INTEGER UNIQUE,
  created_at INTEGER NOT NULL DEFAULT (unixepoch()),
  FOREIGN KEY (node_id) REFERENCES nodes(id) ON DELETE SET NULL
)""",
            "INSERT INTO licenses_new "
            "(id, file, key, claims, last_claimed_at, last_released_at, node_id, created_at) "
            f"SELECT id, file, key, claims, {_ts('last_claimed_at')}, {_ts('last_released_at')}, "
            f"node_id, COALESCE({_ts('created_at')}, unixepoch()) FROM licenses ORDER BY rowid",
            "DROP TABLE licenses",
            "ALTER TABLE licenses_new RENAME TO licenses",
        ),
    ),
    Migration(
        1734125972,
        "update_ts_for_nodes",
        (
            """CREATE TABLE nodes_new (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  fingerprint TEXT UNIQUE NOT NULL,
  claimed_at INTEGER,
  last_heartbeat_at INTEGER,
  created_at INTEGER NOT NULL DEFAULT (unixepoch())
)""",
            "INSERT INTO nodes_new (id, fingerprint, claimed_at, last_heartbeat_at, created_at) "
            f"SELECT id, fingerprint, {_ts('claimed_at')}, {_ts('last_heartbeat_at')}, "
            f"COALESCE({_ts('created_at')}, unixepoch()) FROM nodes",
            "DROP TABLE nodes",
            "ALTER TABLE nodes_new RENAME TO nodes",
        ),
    ),
    Migration(
        1734216452,
        "drop_claimed_at_from_nodes",
        ("ALTER TABLE nodes DROP COLUMN claimed_at",),
    ),
    Migration(
        1734321890,
        "add_deactivated_at_to_nodes",
        (
            "ALTER TABLE nodes ADD COLUMN deactivated_at INTEGER",
            "CREATE INDEX idx_nodes_activated ON nodes (deactivated_at) "
            "WHERE deactivated_at IS NULL",
        ),
    ),
    Migration(
        1734706267,
        "update_id_for_licenses",
        (
            # The license GUID was the primary key; it becomes `guid` behind an integer id.
            """CREATE TABLE licenses_new (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  guid TEXT UNIQUE NOT NULL,
  file BLOB UNIQUE NOT NULL,
  key TEXT UNIQUE NOT NULL,
  claims INTEGER DEFAULT 0 NOT NULL,
  last_claimed_at INTEGER,
  last_released_at INTEGER,
  node_id INTEGER UNIQUE,
  created_at INTEGER NOT NULL DEFAULT (unixepoch()),
  FOREIGN KEY (node_id) REFERENCES nodes(id) ON DELETE SET NULL
)""",
            "INSERT INTO licenses_new "
            "(guid, file, key, claims, last_claimed_at, last_released_at, node_id, created_at) "
            "SELECT id, file, key, claims, last_claimed_at, last_released_at, node_id, created_at "
            "FROM licenses ORDER BY created_at, rowid",
            "DROP TABLE licenses",
            "ALTER TABLE licenses_new RENAME TO licenses",
        ),
    ),
    Migration(
        1734708157,
        "update_entity_id_for_audit_logs",
        (
            # License events named the GUID; they now name the license row id (0 if it is gone).
            """CREATE TABLE audit_logs_new (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_type_id TINYINT NOT NULL REFERENCES event_types (id),
  entity_type_id TINYINT NOT NULL REFERENCES entity_types (id),
  entity_id INTEGER NOT NULL,
  created_at INTEGER NOT NULL DEFAULT (unixepoch())
)""",
            "INSERT INTO audit_logs_new (id, event_type_id, entity_type_id, entity_id, created_at) "
            "SELECT a.id, a.event_type_id, a.entity_type_id, "
            "CASE a.entity_type_id "
            "WHEN 1 THEN COALESCE((SELECT l.id FROM licenses l WHERE l.guid = a.entity_id), 0) "
            "ELSE CAST(a.entity_id AS INTEGER) END, "
            "a.created_at FROM audit_logs a",
            "DROP TABLE audit_logs",
            "ALTER TABLE audit_logs_new RENAME TO audit_logs",
        ),
    ),
    Migration(
        1736443510,
        "add_last_heartbeat_index_to_nodes",
        ("CREATE INDEX idx_nodes_last_heartbeat ON nodes (last_heartbeat_at)",),
    ),
    Migration(
        1755292881,
        "add_pools",
        (
            """CREATE TABLE pools (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT UNIQUE NOT NULL,
  created_at INTEGER NOT NULL DEFAULT (unixepoch())
)""",
        ),
    ),
    Migration(
        1755293107,
        "add_pool_id_to_licenses",
        (
            """CREATE TABLE licenses_new (
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
)""",
            "CREATE INDEX idx_licenses_pool_node ON licenses_new(pool_id, node_id)",
            "INSERT INTO licenses_new (id, guid, file, key, claims, last_claimed_at, "
            "last_released_at, node_id, created_at) "
            "SELECT id, guid, file, key, claims, last_claimed_at, last_released_at, node_id, "
            "created_at FROM licenses",
            "DROP TABLE licenses",
            "ALTER TABLE licenses_new RENAME TO licenses",
        ),
    ),
    Migration(
        1755551924,
        "add_pool_event_types",
        ("INSERT INTO event_types (id, name) VALUES (11, 'pool.added')",),
    ),
    Migration(
        1755551965,
        "add_pool_entity_type",
        ("INSERT INTO entity_types (id, name) VALUES (3, 'pool')",),
    ),
    Migration(
        1755607637,
        "add_pool_id_to_audit_logs",
        ("ALTER TABLE audit_logs ADD COLUMN pool_id INTEGER",),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

# --- our additions --------------------------------------------------------------------------

LIFECYCLE_EVENT_IDS = "(1, 2, 3, 5, 6, 7, 9, 10)"
"""The audit events that start or end a license, a lease or a node (all but heartbeats and
pool.added); a query must repeat this exact list for SQLite to use the partial index."""

EXTENSIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "file_expiry_and_pick_indexes",
        (
            # When the license file itself expires (`meta.expiry`); NULL = never, or unknown
            # for rows Keygen Relay inserts.
            "ALTER TABLE licenses ADD COLUMN file_expires_at INTEGER",
            # fifo/lifo walk this index in (created_at, id) order within (pool, free); carrying
            # file_expires_at lets them skip expired files without reading the 3.7 KB rows.
            "CREATE INDEX relay_licenses_pick "
            "ON licenses (pool_id, node_id, created_at, id, file_expires_at)",
            # The cull seeks active nodes by heartbeat; deactivated history is not in it.
            "CREATE INDEX relay_nodes_alive ON nodes (last_heartbeat_at) "
            "WHERE deactivated_at IS NULL",
        ),
    ),
    Migration(
        2,
        "report_index_and_denials",
        (
            # Reports replay lease and node lifecycles in time order, reading only this index
            # (it covers every column they need). Heartbeat rows (events 4 and 8, nearly all
            # of a busy log) are left out, so the heartbeat path pays nothing for it.
            "CREATE INDEX relay_audit_lifecycle "
            "ON audit_logs (created_at, id, event_type_id, entity_id, pool_id) "
            f"WHERE event_type_id IN {LIFECYCLE_EVENT_IDS}",
            # Claims answered 410, per pool (0 = the global pool) and minute: one row per minute
            # however often a node retries, and a table Keygen Relay never reads.
            """CREATE TABLE relay_denials (
  pool_id INTEGER NOT NULL,
  minute INTEGER NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (pool_id, minute)
) WITHOUT ROWID""",
        ),
    ),
)

EXTENSION_VERSION = EXTENSIONS[-1].version

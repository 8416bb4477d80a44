"""Opening a database file: connect, apply the pragmas, bring the schema up to date."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from relay_core.errors import SchemaVersionError, StorageAccessError, StorageError

from .errors import translate
from .migrations import EXTENSION_VERSION, EXTENSIONS, LATEST_VERSION, MIGRATIONS, Migration

__all__ = ["DEFAULT_PRAGMAS", "connect", "data_version", "migrate", "schema_version"]

DEFAULT_PRAGMAS: Mapping[str, str] = {
    "page_size": "8192",
    "auto_vacuum": "INCREMENTAL",
    "journal_mode": "WAL",
    "synchronous": "NORMAL",
    "busy_timeout": "5000",
    "cache_size": "-20000",
    "foreign_keys": "ON",
    "temp_store": "MEMORY",
    "mmap_size": "2147483648",
}
"""Keygen Relay's pragmas (spec Part B §5.2); `page_size` and `auto_vacuum` come first because
they only take effect before the file is initialised, and `journal_mode` fixes the page size."""

_LAYOUT = frozenset({"page_size", "auto_vacuum"})
"""Pragmas that only shape a file not yet written, skipped once it has pages: setting
`auto_vacuum` on an existing file waits for the write lock, so a connection opened while
another writes (the store's checkpointer, ``relay ls`` beside ``relay serve``) would sleep in
SQLite's busy handler, up to `busy_timeout`, for a setting that changes nothing."""

_PRAGMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_SCHEMA_MIGRATIONS = (
    "CREATE TABLE schema_migrations (version uint64,dirty bool)",
    "CREATE UNIQUE INDEX version_unique ON schema_migrations (version)",
)


def _check_location(path: str) -> None:
    """Fail early, with a clear line, where SQLite would only say "unable to open"."""
    if path == ":memory:" or path.startswith("file:"):
        return
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        raise StorageAccessError(f"cannot open database {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise StorageAccessError(f"cannot open database {path}: {parent} is not a directory")
    if target.is_dir():
        raise StorageAccessError(f"cannot open database {path}: it is a directory")
    if not target.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise StorageAccessError(
            f"cannot create database {path}: directory {parent} is not writable"
        )
    if target.exists() and not os.access(target, os.R_OK | os.W_OK):
        raise StorageAccessError(f"database {path} is not writable (permission denied)")
    wal = Path(f"{path}-wal")
    if target.exists() and not wal.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise StorageAccessError(
            f"database {path} is not writable: directory {parent} is not writable, and SQLite "
            f"keeps {wal.name} and {target.name}-shm beside the database"
        )


def merged_pragmas(overrides: Mapping[str, str]) -> dict[str, str]:
    """The defaults with `overrides` applied (names are case-insensitive), in applying order."""
    merged = dict(DEFAULT_PRAGMAS)
    for key, value in overrides.items():
        merged[key.strip().lower()] = str(value).strip()
    return merged


def connect(path: str, pragmas: Mapping[str, str]) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN IMMEDIATE), with every pragma applied."""
    _check_location(path)
    busy = _busy_ms(pragmas)
    creating = path != ":memory:" and not path.startswith("file:") and not Path(path).exists()
    try:
        conn = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            timeout=busy / 1000,
            uri=path.startswith("file:"),
        )
        try:
            initialised = conn.execute("PRAGMA page_count").fetchone()[0] > 0
            for key, value in pragmas.items():
                if initialised and key in _LAYOUT:
                    continue
                _apply_pragma(conn, path, key, value, busy)
        except BaseException:
            conn.close()
            raise
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if creating and isinstance(code, int) and code & 0xFF in (_CANTOPEN, _READONLY):
            parent = Path(path).parent
            raise StorageAccessError(
                f"cannot create database {path}: directory {parent} is not writable ({exc})"
            ) from exc
        raise translate(exc, path, busy_timeout_ms=busy) from exc
    return conn


_READONLY, _CANTOPEN = 8, 14


def _busy_ms(pragmas: Mapping[str, str]) -> int:
    try:
        return max(0, int(pragmas.get("busy_timeout", "5000")))
    except ValueError:
        return 5000


def _apply_pragma(conn: sqlite3.Connection, path: str, key: str, value: str, busy: int) -> None:
    if not _PRAGMA_NAME.match(key):
        raise StorageError(f"failed to set pragma {key}={value}: invalid pragma name")
    try:
        conn.execute(f"PRAGMA {key} = {value}").fetchall()
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if (
            isinstance(code, int) and code & 0xFF != 1
        ):  # not a plain SQL error: the file is at fault
            raise translate(exc, path, busy_timeout_ms=busy) from exc
        raise StorageError(f"failed to set pragma {key}={value}: {exc}") from exc


def schema_version(conn: sqlite3.Connection) -> tuple[int | None, bool]:
    """Keygen Relay's (version, dirty), or (None, False) for a database it never migrated."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if not exists:
        return None, False
    row = conn.execute("SELECT version, dirty FROM schema_migrations LIMIT 1").fetchone()
    if row is None:
        return None, False
    return int(row[0]), str(row[1]).lower() in ("1", "true", "t")


def _extension_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'relay_schema'"
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT max(version) FROM relay_schema").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _run(conn: sqlite3.Connection, migration: Migration) -> None:
    for statement in migration.statements:
        conn.execute(statement)


def migrate(conn: sqlite3.Connection, path: str, *, upto: int = LATEST_VERSION) -> None:
    """Replay the missing Keygen Relay migrations (up to `upto`), then our extensions.

    Each migration is its own `BEGIN IMMEDIATE` transaction that re-reads the version first, so
    two processes opening the same new file at once migrate it exactly once. Foreign keys are
    off meanwhile, as table rebuilds drop and rename parents.
    """
    version, dirty = schema_version(conn)
    _check_version(path, version, dirty)
    if version == upto == LATEST_VERSION and _extension_version(conn) == EXTENSION_VERSION:
        return
    fk_on = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        for migration in MIGRATIONS:
            if migration.version > upto:
                break
            _step(conn, path, migration)
        if upto == LATEST_VERSION:
            for extension in EXTENSIONS:
                _extend(conn, path, extension)
    finally:
        conn.execute(f"PRAGMA foreign_keys = {1 if fk_on else 0}")


def _check_version(path: str, version: int | None, dirty: bool) -> None:
    if dirty:
        raise StorageError(
            f"failed to apply migrations: database {path} is dirty at version {version} "
            "(a migration failed half-way; repair it and set schema_migrations.dirty = 0)"
        )
    if version is not None and version > LATEST_VERSION:
        raise SchemaVersionError(
            f"database {path} has schema version {version}, newer than this Relay supports "
            f"({LATEST_VERSION}); upgrade Relay to open it"
        )
    if version is not None and version not in {m.version for m in MIGRATIONS}:
        raise SchemaVersionError(
            f"database {path} has unknown schema version {version}; it was not written by "
            "Keygen Relay or by this Relay"
        )


def _step(conn: sqlite3.Connection, path: str, migration: Migration) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        version, dirty = schema_version(conn)
        _check_version(path, version, dirty)
        if version is not None and version >= migration.version:
            conn.execute("ROLLBACK")
            return
        if version is None:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'"
            ).fetchone()
            if not exists:
                for statement in _SCHEMA_MIGRATIONS:
                    conn.execute(statement)
        _run(conn, migration)
        conn.execute("DELETE FROM schema_migrations")
        conn.execute(
            "INSERT INTO schema_migrations (version, dirty) VALUES (?, 0)", (migration.version,)
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _extend(conn: sqlite3.Connection, path: str, extension: Migration) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = _extension_version(conn)
        if current > EXTENSION_VERSION:
            raise SchemaVersionError(
                f"database {path} has Relay extension version {current}, newer than this Relay "
                f"supports ({EXTENSION_VERSION}); upgrade Relay to open it"
            )
        if current >= extension.version:
            conn.execute("ROLLBACK")
            return
        conn.execute("CREATE TABLE IF NOT EXISTS relay_schema (version INTEGER NOT NULL)")
        _run(conn, extension)
        conn.execute("DELETE FROM relay_schema")
        conn.execute("INSERT INTO relay_schema (version) VALUES (?)", (extension.version,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def data_version(conn: sqlite3.Connection) -> int:
    """`PRAGMA data_version`: it changes when another connection commits."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])

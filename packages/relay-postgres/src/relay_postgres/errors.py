"""Translation of psycopg's exceptions into Relay's error tree: one line, naming the server."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import PoolTimeout
from relay_core.errors import (
    SchemaVersionError,
    StorageAccessError,
    StorageBusyError,
    StorageCorruptError,
    StorageError,
    StorageUnavailableError,
)

__all__ = ["describe", "is_retryable", "is_transient", "translate"]

_BUSY = (pg.DeadlockDetected, pg.SerializationFailure, pg.LockNotAvailable, pg.QueryCanceled)
_ACCESS = (pg.InsufficientPrivilege, pg.InvalidPassword, pg.InvalidAuthorizationSpecification)
_UNAVAILABLE = (
    pg.AdminShutdown,
    pg.CrashShutdown,
    pg.CannotConnectNow,
    pg.ConnectionException,
    pg.TooManyConnections,
    pg.ReadOnlySqlTransaction,
)


def describe(conninfo: str) -> str:
    """``postgresql://user@host:port/dbname`` without a password, for messages."""
    try:
        parts = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "postgresql://<invalid>"
    user = parts.get("user")
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    name = parts.get("dbname") or user or ""
    return f"postgresql://{f'{user}@' if user else ''}{host}:{port}/{name}"


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.removesuffix(".")


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` says the server or the connection went away (not a bad query)."""
    if isinstance(exc, PoolTimeout | StorageUnavailableError):
        return True
    if isinstance(exc, _UNAVAILABLE):
        return True
    return isinstance(exc, psycopg.OperationalError) and not isinstance(exc, _BUSY + _ACCESS)


def is_retryable(exc: BaseException | None) -> bool:
    """Whether work that failed with `exc` before its commit may simply run again: a deadlock,
    a serialization failure, or a pooled connection the server had dropped (not a pool that
    found no connection in time: the server is down, and waiting again would double the wait)."""
    if isinstance(exc, pg.DeadlockDetected | pg.SerializationFailure):
        return True
    if isinstance(exc, PoolTimeout) or exc is None:
        return False
    return isinstance(exc, psycopg.OperationalError) and is_transient(exc)


def translate(exc: BaseException, where: str) -> StorageError:
    """The `StorageError` a user should see for `exc`, raised while using the database `where`."""
    if isinstance(exc, StorageError):
        return exc
    reason = _reason(exc)
    if isinstance(exc, PoolTimeout):
        return StorageUnavailableError(f"database {where} is unreachable: {reason}")
    if isinstance(exc, _BUSY):
        return StorageBusyError(f"database {where} is busy: {reason}")
    if isinstance(exc, _ACCESS):
        return StorageAccessError(f"database {where} refused access: {reason}")
    if isinstance(exc, pg.DataCorrupted | pg.IndexCorrupted):
        return StorageCorruptError(f"database {where} is corrupt: {reason}")
    if is_transient(exc):
        return StorageUnavailableError(f"database {where} is unreachable: {reason}")
    return StorageError(f"database {where}: {reason}")


def newer_schema(where: str, found: int, known: int) -> SchemaVersionError:
    return SchemaVersionError(
        f"database {where} has schema version {found}, newer than this relay's {known}; "
        "upgrade relay"
    )

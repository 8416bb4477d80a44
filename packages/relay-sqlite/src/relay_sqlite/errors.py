"""Translation of `sqlite3` exceptions into Relay's error tree, each one line naming the file."""

from __future__ import annotations

import sqlite3

from relay_core.errors import (
    StorageAccessError,
    StorageBusyError,
    StorageCorruptError,
    StorageError,
)

__all__ = ["translate"]

# Primary result codes (the low byte of an extended code), from sqlite3.h.
_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT = 3, 5, 6, 8, 10, 11
_FULL, _CANTOPEN, _NOTADB = 13, 14, 26


def translate(exc: sqlite3.Error, path: str, *, busy_timeout_ms: int) -> StorageError:
    """The `StorageError` a user should see for `exc` raised while using the database at `path`."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    reason = str(exc) or type(exc).__name__
    if primary in (_BUSY, _LOCKED):
        return StorageBusyError(
            f"database {path} is locked: another connection held it for more than "
            f"{busy_timeout_ms} ms (busy_timeout)"
        )
    if primary == _NOTADB:
        return StorageCorruptError(f"database {path} is not a SQLite database ({reason})")
    if primary == _CORRUPT:
        return StorageCorruptError(f"database {path} is corrupt ({reason})")
    if primary in (_READONLY, _PERM):
        return StorageAccessError(f"database {path} is not writable ({reason})")
    if primary == _CANTOPEN:
        return StorageAccessError(f"cannot open database {path} ({reason})")
    if primary == _FULL:
        return StorageAccessError(f"cannot write database {path} ({reason})")
    if primary == _IOERR:
        return StorageAccessError(f"cannot read or write database {path} ({reason})")
    return StorageError(f"database {path}: {reason}")

"""relay-sqlite: Relay's default store, a SQLite file with Keygen Relay's schema.

`SqliteStore(path, pragmas=...)` implements `relay_core.ports.Store`; `open_store` is its
`relay.storage` entry point (`sqlite`).
"""

from __future__ import annotations

from .connection import DEFAULT_PRAGMAS
from .migrations import EXTENSION_VERSION, LATEST_VERSION
from .store import SqliteStore, open_store
from .transaction import SqliteTransaction

__all__ = [
    "DEFAULT_PRAGMAS",
    "EXTENSION_VERSION",
    "LATEST_VERSION",
    "SqliteStore",
    "SqliteTransaction",
    "open_store",
]

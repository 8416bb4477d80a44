"""relay-postgres: Relay's store on PostgreSQL, so several `relay serve` replicas share one database.

`PostgresStore(conninfo)` implements `relay_core.ports.Store` (and `CombiningStore.run`);
`open_store` is its `relay.storage` entry point (`postgresql` and `postgres`).
"""

from __future__ import annotations

from .migrations import LATEST_VERSION, MIGRATIONS
from .store import DEFAULT_OPTIONS, PostgresStore, migrate, open_store
from .transaction import PostgresTransaction

__all__ = [
    "DEFAULT_OPTIONS",
    "LATEST_VERSION",
    "MIGRATIONS",
    "PostgresStore",
    "PostgresTransaction",
    "migrate",
    "open_store",
]

"""The ports: what the domain needs from the outside world, as structural protocols.

A storage backend implements `Store`; its `transaction()` is the unit of work. Every use case of
`relay_core.Relay` runs in exactly one transaction (culling: one per batch), and the audit rows
of a change are written inside it, so a change and its audit rows commit or vanish together. A
store that also implements `CombiningStore.run` may run concurrent use cases in one shared
transaction, each still committed or undone as a whole.

The transaction exposes small primitives. The one that matters for speed is
`lease_free_license`: the store picks the free license itself, in the order core defines
(`Strategy`), so an indexed backend never loads every license to choose one:

- fifo: the earliest added free license (`created_at`, ties broken by insertion order);
- lifo: the latest added free license (`created_at`, ties broken by latest insertion);
- rand: uniformly at random among the free ones, drawn from the `rng` passed in.

"Free" means not leased, in the requested pool (None = the global pool), and with a license file
that has not expired at `now` (`file_expires_at` is None or `now <= file_expires_at`).

`StorageContract` in `relay_core.testing` checks every one of these rules.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

import attrs

from .model import (
    AuditEntry,
    AuditRecord,
    AuditRow,
    DenialCount,
    EventType,
    License,
    LicenseFile,
    NewLicense,
    Node,
    Pool,
    Strategy,
)

__all__ = [
    "ANY_POOL",
    "AnyPool",
    "AuditQuery",
    "Clock",
    "CombiningStore",
    "Culled",
    "LicenseVerifier",
    "PoolCounts",
    "PoolFilter",
    "Store",
    "Transaction",
    "VerifierFactory",
]


class AnyPool(enum.Enum):
    """The type of `ANY_POOL`."""

    ANY = "any"


ANY_POOL = AnyPool.ANY
"""A pool filter that matches every pool and the global pool."""

PoolFilter = int | None | AnyPool
"""A pool id, None for the global pool, or ANY_POOL."""


@attrs.frozen
class Culled:
    """One node deactivated by a cull, with the license it held (if any) and that license's pool."""

    node_id: int
    license_id: int | None
    pool_id: int | None


@attrs.frozen
class PoolCounts:
    """One pool's licenses by state at `now`, as `Transaction.count_by_pool` returns them.

    `licenses`: all of the pool's licenses; `leased`: those with a holder (`node_id` set);
    `free`: not leased and with a valid file (what `lease_free_license` could pick);
    `expired`: file expired at `now` (leased or not); `nodes_active`: active nodes holding one.
    """

    pool_id: int | None
    licenses: int
    leased: int
    free: int
    expired: int
    nodes_active: int


@attrs.frozen
class AuditQuery:
    """Which audit rows to read: newest first, at most `limit`."""

    limit: int = 100
    pool_id: PoolFilter = ANY_POOL
    events: tuple[EventType, ...] = ()
    since: int | None = None


class Transaction(Protocol):
    """The primitives a store offers inside one unit of work.

    Raising out of the `with` block rolls everything back. Methods raise only `RelayError`
    subclasses (`DuplicateLicenseError`, `StorageError` and its children).
    """

    # pools
    def get_pool(self, name: str) -> Pool | None: ...
    def create_pool(self, name: str, now: int) -> Pool: ...
    def list_pools(self) -> list[Pool]: ...

    # licenses
    def insert_license(self, new: NewLicense, pool_id: int | None, now: int) -> License:
        """Store a license; raise `DuplicateLicenseError` if its guid, key or file is taken."""
        ...

    def get_license(self, guid: str) -> License | None: ...

    def list_licenses(self, pool_id: PoolFilter) -> list[License]:
        """Licenses in insertion order (ascending id)."""
        ...

    def delete_license(self, license_id: int) -> None: ...
    def has_free_license(self, pool_id: int | None, now: int) -> bool: ...

    def lease_free_license(
        self, pool_id: int | None, node_id: int, strategy: Strategy, now: int, rng: random.Random
    ) -> License | None:
        """Pick a free license in strategy order and lease it to the node.

        Sets `node_id`, `last_claimed_at = now` and `claims + 1`; returns the updated license,
        or None when the pool has no free license.
        """
        ...

    def release_license(self, license_id: int, now: int) -> None:
        """Free the license: `node_id = None`, `last_released_at = now`."""
        ...

    # nodes
    def get_node_lease(self, fingerprint: str) -> tuple[Node, License | None] | None:
        """The active node with this fingerprint and the license it holds (None if it holds none).

        None when no active node has the fingerprint. Claims and releases need both, so a store
        can answer in one round trip.
        """
        ...

    def activate_node(self, fingerprint: str, now: int) -> Node:
        """Insert the node, or reactivate its deactivated row (keeping its id and created_at)."""
        ...

    def heartbeat_node(self, node_id: int, now: int) -> None: ...
    def deactivate_node(self, node_id: int, now: int) -> None: ...
    def get_node(self, node_id: int) -> Node | None: ...

    def cull_batch(self, cutoff: int, now: int, limit: int) -> list[Culled]:
        """Deactivate up to `limit` active nodes with `last_heartbeat_at <= cutoff`.

        Their licenses are released (`last_released_at = now`) and the nodes deactivated
        (`deactivated_at = now`); returns what was culled, at most `limit` entries.
        """
        ...

    # the operator's view
    def list_leases(self, pool_id: PoolFilter) -> list[tuple[Node, License]]:
        """Every license held by an active node, with that node, in ascending license id."""
        ...

    def count_by_pool(self, now: int) -> list[PoolCounts]:
        """`PoolCounts` for each pool id (None = global) that has at least one license, in
        ascending pool id with the global pool first; one grouped query, no per-license work."""
        ...

    # audit
    def append_audit(self, entries: Sequence[AuditEntry]) -> None: ...
    def read_audit(self, query: AuditQuery) -> list[AuditRecord]: ...

    def scan_audit(
        self, events: Sequence[EventType], after: int | None, limit: int
    ) -> list[AuditRow]:
        """Audit rows of these event types stamped after `after` (None: from the start),
        oldest first by (created_at, id), a page of whole seconds.

        A page holds the rows of the first seconds after `after` until it has at least
        `limit` rows (fewer only when the log ends there), and never splits a second: the
        next page starts after the last row's `created_at`. So a long history is read in
        short transactions without handing over row ids. Reports replay lease and node
        lifecycles from it; a store should index it without the heartbeat rows.
        """
        ...

    def license_holders(self) -> list[tuple[int, int | None, int | None]]:
        """``(license id, pool id, holding node id or None)`` for every license, by license id.

        What a report needs of the licenses (how many per pool, and which are held now) without
        reading their files.
        """
        ...

    # denials (claims answered 410), counted per pool and minute
    def add_denials(self, counts: Sequence[DenialCount]) -> None:
        """Add each count to its (pool, minute) counter, creating the counter if needed."""
        ...

    def read_denials(self, since: int | None, until: int | None) -> list[DenialCount]:
        """Counters with `since <= minute < until` (None: unbounded).

        Ordered by minute, then pool id with the global pool (None) first.
        """
        ...


class Store(Protocol):
    """A storage backend: opens units of work and can be closed."""

    def transaction(self) -> AbstractContextManager[Transaction]:
        """Begin a write transaction; commit on normal exit, roll back on an exception."""
        ...

    def close(self) -> None: ...


T = TypeVar("T")


class CombiningStore(Store, Protocol):
    """A store that runs units of work handed to it, and may run concurrent ones under one commit.

    Optional: `Relay` uses `run` for the use cases nodes call concurrently (claim, release, cull)
    when the store has it, and `transaction()` otherwise. One thread running the queued work
    back to back in one transaction, instead of each thread opening its own, saves a server
    the lock hand-offs, the BEGIN and COMMIT statements and the repeated page writes of each.
    """

    def run(self, work: Callable[[Transaction], T]) -> T:
        """`work(tx)` in a transaction; return its result once committed, re-raise what it raised.

        Each call's changes are committed before it returns, or not at all; if `work` raises,
        only its own changes are rolled back. If the commit fails, every call it covered raises
        the `StorageError`.

        `work` may be called more than once (a store may run it again in a new transaction
        after rolling back the first), so it must have no effect outside `tx`.

        One exception, for speed: work that only reads a node's lease and then records a
        heartbeat and audit rows may be answered before it is committed, if the store commits
        those rows shortly after (within a delay it documents), before any later work changes
        that lease, culls or reads the audit log, and on `close()`. Until then only that node's
        `last_heartbeat_at` and those audit rows lag. `SqliteStore` does so
        (`relay_sqlite.leases`).
        """
        ...


class Clock(Protocol):
    """The time source; `now()` returns Unix seconds."""

    def now(self) -> float: ...


class LicenseVerifier(Protocol):
    """Verifies and decrypts a license file with the key a vendor handed out."""

    def verify(self, raw: bytes, key: str, *, now: float) -> LicenseFile:
        """Return the decrypted file, or raise `VerificationError` / `DecryptionError`."""
        ...


class VerifierFactory(Protocol):
    """Builds a verifier for a public key (Ed25519 hex or RSA PEM)."""

    def __call__(self, public_key: str) -> LicenseVerifier: ...

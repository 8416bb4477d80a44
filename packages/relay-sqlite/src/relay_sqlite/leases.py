"""`LeaseCache`: heartbeats answered from memory and written a moment later.

Under load almost every request is a heartbeat, and through HTTP its cost is not SQLite's work
but the GIL: CPython's `sqlite3` lets go of it around every statement, and the thread holding
the store lock then waits to take it back while every other request waits on that thread
(docs/performance.md). So a heartbeat for a lease the store has seen is answered without SQL:
`SqliteStore.run` first tries the work on a `CachedTransaction`, whose reads come from here and
whose heartbeat and audit rows go to a pending list (an `Ack`). The next transaction writes
them; a flusher thread runs one `FLUSH_INTERVAL` after the first unwritten ack. Any other
primitive raises `CacheMiss`, and the work runs again in a real transaction.

What keeps the answers right:

- Entries are added only from a committed transaction's own reads, and only for rows that
  transaction did not change; every write evicts the rows it touches before it runs, and an
  `Ack` is taken only if the entries it read are still here (both under `_mutex`). A heartbeat
  that beat an eviction therefore happened before that write, and its rows are written first.
- Another process's commits (`relay del` while serving) show in `PRAGMA data_version`, which
  every transaction reads first: the cache is emptied, and the acks taken since are written
  only for leases that still hold. Answers are given only within `STALE_AFTER` of the commit
  of a transaction that made this check, so a store that cannot write stops answering.
- A cull spares a node whose heartbeat arrived between its reading the expired nodes and its
  evicting them, and reads the expired nodes again.

Until written, only the node's `last_heartbeat_at` and those audit rows lag: work that changes
the lease, culls or reads the audit log writes them first (a plain read of the node does not).
The price: a process killed hard loses the heartbeats of about the last `FLUSH_INTERVAL` plus
one transaction (times and audit rows together; the nodes heartbeat again), more while writes
fail. A clean close writes them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from relay_core.errors import StorageError
from relay_core.model import AuditEntry, License, Node, Pool

from .transaction import SqliteTransaction

__all__ = ["FLUSH_INTERVAL", "STALE_AFTER", "Ack", "CacheMiss", "CachedTransaction", "LeaseCache"]

T = TypeVar("T")

FLUSH_INTERVAL = 0.05
"""Seconds the flusher waits after the first unwritten heartbeat before it writes them all."""

STALE_AFTER = 0.25
"""Seconds after the last committed transaction (each checks `data_version`) during which the
cache may answer."""

MAX_FILE_BYTES = 16 * 2**20
"""The cache keeps the license files it returns; past this many bytes of them it adds no more."""


class CacheMiss(Exception):
    """The cache cannot answer this work; run it in a transaction."""


class Ack:
    """The rows of one heartbeat answered from the cache, and the leases it relied on."""

    __slots__ = ("audit", "beats", "leases")

    def __init__(
        self,
        leases: list[tuple[int, int]],
        beats: list[tuple[int, int]],
        audit: list[AuditEntry],
    ) -> None:
        self.leases = leases  # (node id, license id) pairs that were read
        self.beats = beats  # (node id, time)
        self.audit = audit


class LeaseCache:
    """Active leases by fingerprint, pools by name, and the acks not yet written."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._mutex = threading.Lock()
        self._leases: dict[str, tuple[Node, License]] = {}
        self._by_node: dict[int, str] = {}
        self._by_license: dict[int, str] = {}
        self._pools: dict[str, Pool] = {}
        self._bytes = 0
        self._acks: list[Ack] = []
        self._version: int | None = None
        self._fresh_until = 0.0
        self._closed = False
        self._unverified = False  # acks given back by a transaction that had to verify them

    # -- answering --------------------------------------------------------------------------

    def fresh(self) -> bool:
        return self._clock() < self._fresh_until

    @property
    def pending(self) -> bool:
        return bool(self._acks)

    def attempt(self, work: Callable[[Any], T]) -> tuple[bool, T | None]:
        """(True, result) if the cache answered `work`, (False, None) if it must run in SQL.

        The cache answers only work that read a lease from it (a heartbeat); what such work
        raises is re-raised, as it decided from cached rows and wrote nothing.
        """
        tx = CachedTransaction(self)
        try:
            value = work(tx)
        except CacheMiss:
            return False, None
        except Exception:
            if tx.read:
                raise
            return False, None
        if not tx.read:
            return False, None
        if not tx.beats and not tx.audit:
            return True, value
        with self._mutex:
            if not self.fresh():
                return False, None
            for fingerprint, entry in tx.read:
                if self._leases.get(fingerprint) is not entry:
                    return False, None  # evicted since: a write got there first
            leases = [(node.id, lic.id) for _, (node, lic) in tx.read]
            self._acks.append(Ack(leases, tx.beats, tx.audit))
        return True, value

    # -- what transactions tell the cache ----------------------------------------------------

    def checked(self, version: int) -> bool:
        """Record a `PRAGMA data_version` read at the start of a transaction.

        Returns True if another connection committed since the last check: the cache is
        emptied, and the acks taken before must be verified before they are written.
        """
        with self._mutex:
            changed = self._version is not None and version != self._version
            self._version = version
            if changed:
                self._clear()
            verify = (changed or self._unverified) and bool(self._acks)
            self._unverified = False
            return verify

    def committed(self) -> None:
        """A transaction that began with `checked` has committed: the cache may answer for
        `STALE_AFTER` more seconds. (Only then: while writes fail, as on a full disk, the
        cache stops answering, so requests get the errors and acks do not pile up.)"""
        with self._mutex:
            if not self._closed:
                self._fresh_until = self._clock() + STALE_AFTER

    def take(self) -> list[Ack]:
        """Every pending ack, now the caller's to write (or to `give_back`)."""
        with self._mutex:
            acks, self._acks = self._acks, []
        return acks

    def give_back(self, acks: Sequence[Ack], *, unverified: bool = False) -> None:
        """Acks whose writing was rolled back: they are written by a later transaction, which
        verifies them first if `unverified` (they were taken under a stale cache)."""
        if acks:
            with self._mutex:
                self._acks[:0] = acks
                self._unverified = self._unverified or unverified

    def remember(self, leases: Iterable[tuple[str, Node, License]], pools: Iterable[Pool]) -> None:
        """Add what a transaction read and did not change, once it has committed."""
        with self._mutex:
            if self._closed:
                return
            for pool in pools:
                self._pools[pool.name] = pool
            for fingerprint, node, lic in leases:
                if fingerprint in self._leases:
                    continue
                if self._bytes + len(lic.file) > MAX_FILE_BYTES:
                    break
                self._leases[fingerprint] = (node, lic)
                self._by_node[node.id] = fingerprint
                self._by_license[lic.id] = fingerprint
                self._bytes += len(lic.file)

    def evict_fingerprint(self, fingerprint: str) -> None:
        with self._mutex:
            self._evict(fingerprint)

    def evict_node(self, node_id: int) -> None:
        with self._mutex:
            self._evict(self._by_node.get(node_id))

    def evict_license(self, license_id: int) -> None:
        with self._mutex:
            self._evict(self._by_license.get(license_id))

    def evict_for_cull(self, node_ids: Sequence[int]) -> set[int]:
        """Evict these nodes; return those with a pending ack, which a cull must spare."""
        with self._mutex:
            for node_id in node_ids:
                self._evict(self._by_node.get(node_id))
            wanted = set(node_ids)
            return {node for ack in self._acks for node, _ in ack.beats if node in wanted}

    def clear(self) -> None:
        """Forget every lease and pool (a transaction that may change anything is starting)."""
        with self._mutex:
            self._clear()

    def close(self) -> None:
        """Answer nothing more (the store is closing)."""
        with self._mutex:
            self._clear()
            self._fresh_until = 0.0
            self._closed = True

    def _clear(self) -> None:
        self._leases.clear()
        self._by_node.clear()
        self._by_license.clear()
        self._pools.clear()
        self._bytes = 0

    def _evict(self, fingerprint: str | None) -> None:
        if fingerprint is None:
            return
        entry = self._leases.pop(fingerprint, None)
        if entry is not None:
            node, lic = entry
            del self._by_node[node.id], self._by_license[lic.id]
            self._bytes -= len(lic.file)

    # -- read by CachedTransaction -----------------------------------------------------------

    def lease(self, fingerprint: str) -> tuple[Node, License] | None:
        return self._leases.get(fingerprint)

    def pool(self, name: str) -> Pool | None:
        return self._pools.get(name)


class _NoConnection:
    """Where a `CachedTransaction` would run SQL: anything needing SQL is a miss."""

    def execute(self, *args: object) -> Any:
        raise CacheMiss()


class CachedTransaction(SqliteTransaction):
    """A transaction answered from a `LeaseCache`: it reads leases and pools, and records
    heartbeats and audit rows; every other primitive needs SQL, and raises `CacheMiss`."""

    __slots__ = ("_cache", "audit", "beats", "read")

    def __init__(self, cache: LeaseCache) -> None:
        super().__init__(_NoConnection(), lambda exc: StorageError(str(exc)))  # type: ignore[arg-type]
        self._cache = cache
        self.read: list[tuple[str, tuple[Node, License]]] = []
        self.beats: list[tuple[int, int]] = []
        self.audit: list[AuditEntry] = []

    def get_pool(self, name: str) -> Pool | None:
        found = self._cache.pool(name)
        if found is None:
            raise CacheMiss()
        return found

    def get_node_lease(self, fingerprint: str) -> tuple[Node, License | None] | None:
        entry = self._cache.lease(fingerprint)
        if entry is None:
            raise CacheMiss()
        self.read.append((fingerprint, entry))
        return entry

    def heartbeat_node(self, node_id: int, now: int) -> None:
        self.beats.append((node_id, now))

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        self.audit.extend(entries)

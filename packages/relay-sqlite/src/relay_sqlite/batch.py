"""`BatchTransaction`: the transaction `SqliteStore.run` shares among the work it combines.

Under load most work is a heartbeat: read the node's lease, move its `last_heartbeat_at`, append
two audit rows. Every SQLite call lets other threads take the GIL, and taking it back is what a
busy server pays for, so this transaction keeps the two writes in memory and writes everyone's
at once: one UPDATE per distinct time and one multi-row INSERT before the COMMIT, or earlier when
a read needs them (a cull selecting nodes by `last_heartbeat_at`, the audit log). Nothing else
reads those values, and reading a node overlays its pending heartbeat.

Each piece of work is undone alone: its deferred rows are dropped, and if it wrote rows a
savepoint taken just before its first write is rolled back to. A savepoint is needed only when
the transaction already holds rows: a piece that writes first, or only defers, needs none. With
`savepoints=False` none is taken at all (a statement per claim or release saved); a piece that
then fails after writing is not `undoable`, and `SqliteStore` runs the batch again with them.

It also writes the heartbeats `LeaseCache` answered (its acks), always before any audit row of
its own, keeps the cache's entries off every row it writes, and tells the cache, once committed,
which leases it read and left alone (`cacheable`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from relay_core.errors import StorageError
from relay_core.model import AuditEntry, AuditRecord, License, NewLicense, Node, Pool, Strategy

from .connection import data_version
from .leases import Ack, LeaseCache
from .transaction import _IDS, SqliteTransaction

if TYPE_CHECKING:
    import random

    from relay_core.ports import AuditQuery, Culled, PoolFilter

__all__ = ["BatchTransaction"]

_BEAT = f"UPDATE nodes SET last_heartbeat_at = ? WHERE id IN ({_IDS})"
_HELD = (
    "SELECT l.node_id, l.id FROM licenses l JOIN nodes n ON n.id = l.node_id "
    f"WHERE n.deactivated_at IS NULL AND l.node_id IN ({_IDS})"
)


class BatchTransaction(SqliteTransaction):
    """A `SqliteTransaction` that defers heartbeats and audit rows; see the module docstring."""

    __slots__ = (
        "_audit",
        "_beats",
        "_broken",
        "_dirty",
        "_drained",
        "_drained_mark",
        "_learned",
        "_leases",
        "_mark",
        "_savepoint",
        "_savepoints",
        "_unsafe",
        "_verify",
        "_wrote",
    )

    def __init__(
        self,
        conn: sqlite3.Connection,
        translate: Callable[[sqlite3.Error], StorageError],
        leases: LeaseCache,
        *,
        verify: bool = False,
        savepoints: bool = True,
    ) -> None:
        super().__init__(conn, translate)
        self._leases = leases
        self._verify = verify  # acks were answered from a cache another process made stale
        self._savepoints = savepoints  # False: no SAVEPOINT, the store retries instead
        self._unsafe = False  # the current work wrote without a savepoint after others wrote
        self._beats: list[tuple[int, int]] = []
        self._audit: list[AuditEntry] = []
        self._mark = (0, 0)  # where the current work's deferred rows start
        self._dirty = False  # the open transaction holds written rows
        self._savepoint = False  # the current work took a savepoint
        self._wrote = False  # the current work has written rows
        self._drained: list[Ack] = []  # acks written in this transaction
        self._drained_mark = 0  # where those written since the current work's savepoint start
        self._learned = _Learned()
        self._broken = False  # a write of deferred rows failed: the transaction is unusable

    # -- the life of one piece of work -------------------------------------------------------

    def begin_work(self) -> None:
        self._mark = (len(self._beats), len(self._audit))
        self._drained_mark = len(self._drained)
        self._learned.begin_work()
        self._savepoint = self._wrote = self._unsafe = False

    def undo_work(self) -> None:
        """Forget the current work's deferred rows and roll back what it wrote."""
        del self._beats[self._mark[0] :]
        del self._audit[self._mark[1] :]
        self._leases.give_back(self._drained[self._drained_mark :], unverified=self._verify)
        del self._drained[self._drained_mark :]
        self._learned.undo_work()
        if self._savepoint:
            self._conn.execute("ROLLBACK TO work")
        elif self._wrote:  # it wrote first: nothing else is in the transaction yet
            self._conn.execute("ROLLBACK")
            self._dirty = False
            self._conn.execute("BEGIN IMMEDIATE")
            # Another process may have committed in between: check again, and forget what
            # earlier work read before it.
            self._verify = self._leases.checked(data_version(self._conn)) or self._verify
            self._learned = _Learned()

    @property
    def undoable(self) -> bool:
        """Whether the current work can be undone alone: False only when savepoints are off
        and it wrote after earlier work had (the store then rolls back and runs the batch
        again with savepoints)."""
        return not self._unsafe

    @property
    def broken(self) -> bool:
        """Whether writing deferred rows failed, leaving some written and some not: nothing
        in this transaction can be committed (SQLite may even have rolled it all back)."""
        return self._broken

    def flush(self) -> None:
        """Write every deferred row: before COMMIT, outside any work, or for `_sync`."""
        self._write(self._beats, self._audit)
        self._beats, self._audit = [], []
        self._mark = (0, 0)

    def give_back(self) -> None:
        """The transaction was rolled back: the acks it wrote go back to the cache."""
        self._leases.give_back(self._drained, unverified=self._verify)
        self._drained = []

    def cacheable(self) -> tuple[list[tuple[str, Node, License]], list[Pool]]:
        """What `LeaseCache.remember` may keep once this transaction has committed."""
        return self._learned.leases(), self._learned.pools

    def _before_write(self) -> None:
        """Before the current work's first write: write the cache's pending acks, then take a
        savepoint if the transaction holds rows already.

        Earlier work's deferred rows stay deferred (they are written once, with everyone's,
        before the COMMIT): only the acks must go first, so that a heartbeat answered before
        this write to its lease is recorded before it, and is still held if it is verified.
        """
        if self._wrote:
            return
        if self._leases.pending:
            self._write((), ())
            self._drained_mark = len(self._drained)
        if self._dirty:
            if self._savepoints:
                self._all("SAVEPOINT work")
                self._savepoint = True
            else:
                self._unsafe = True
        self._wrote = self._dirty = True

    def _sync(self) -> None:
        """Write every deferred row now, for a read that must see them: earlier work's rows
        before the current work's savepoint (its undo must not take them), then its own."""
        if not self._wrote:
            beats, audit = self._mark
            self._write(self._beats[:beats], self._audit[:audit])
            del self._beats[:beats]
            del self._audit[:audit]
            self._mark = (0, 0)
            self._drained_mark = len(self._drained)
            self._before_write()
        self.flush()

    def _write(self, beats: Sequence[tuple[int, int]], audit: Sequence[AuditEntry]) -> None:
        """Write the cache's pending acks, then these rows; acks always precede our audit rows,
        so a heartbeat answered before a write to its lease is recorded before that write."""
        acks = self._leases.take()
        if acks:
            self._drained += acks
            if self._verify:
                acks = self._still_held(acks)
            beats = [beat for ack in acks for beat in ack.beats] + list(beats)
            audit = [entry for ack in acks for entry in ack.audit] + list(audit)
        try:
            if beats:
                latest = dict(beats)  # a node beaten twice keeps its last time
                by_time: dict[int, list[int]] = {}
                for node_id, now in latest.items():
                    by_time.setdefault(now, []).append(node_id)
                for now, node_ids in by_time.items():
                    self._all(_BEAT, (now, json.dumps(node_ids)))
                self._dirty = True
            if audit:
                super().append_audit(audit)
                self._dirty = True
        except Exception:
            self._broken = True
            raise

    def _still_held(self, acks: list[Ack]) -> list[Ack]:
        """The acks whose leases all still hold (another process may have ended some)."""
        nodes = sorted({node for ack in acks for node, _ in ack.leases})
        held = {(node, lic) for node, lic in self._all(_HELD, (json.dumps(nodes),))}
        return [ack for ack in acks if all(lease in held for lease in ack.leases)]

    def _overlay(self, node: Node) -> Node:
        for node_id, now in reversed(self._beats):
            if node_id == node.id:
                return Node(node.id, node.fingerprint, now, node.created_at, node.deactivated_at)
        return node

    # -- deferred ---------------------------------------------------------------------------

    def heartbeat_node(self, node_id: int, now: int) -> None:
        self._beats.append((node_id, now))

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        self._audit.extend(entries)

    # -- reads that see deferred rows --------------------------------------------------------

    def get_pool(self, name: str) -> Pool | None:
        found = super().get_pool(name)
        if found is not None:
            self._learned.pools.append(found)
        return found

    def get_node_lease(self, fingerprint: str) -> tuple[Node, License | None] | None:
        # A lease in the cache is the row as committed: this transaction checked
        # `data_version` when it began, and evicts what it writes before writing it. Only
        # `last_heartbeat_at` may lag, by the acks written since (as when the cache answers).
        cached = self._leases.lease(fingerprint)
        found = cached if cached is not None else super().get_node_lease(fingerprint)
        if found is None:
            return None
        node, held = found
        self._learned.read(fingerprint, node, held)
        if not self._beats:
            return found
        return self._overlay(node), held

    def get_node(self, node_id: int) -> Node | None:
        node = super().get_node(node_id)
        return self._overlay(node) if node is not None and self._beats else node

    def read_audit(self, query: AuditQuery) -> list[AuditRecord]:
        self._sync()
        return super().read_audit(query)

    def list_leases(self, pool_id: PoolFilter) -> list[tuple[Node, License]]:
        """Reads `last_heartbeat_at`: the deferred heartbeats are written first."""
        self._sync()
        return super().list_leases(pool_id)

    def cull_batch(self, cutoff: int, now: int, limit: int) -> list[Culled]:
        """Cull as `SqliteTransaction` does, except nodes whose heartbeat the cache answered
        after the pending rows were written: that heartbeat came first, so they are spared."""
        self._sync()
        while True:
            node_ids = self._cull_candidates(cutoff, limit)
            if not self._leases.evict_for_cull(node_ids):
                break
            self.flush()  # the spared nodes' heartbeats: read again, they are no longer stale
        for node_id in node_ids:
            self._learned.touch_node(node_id)
        culled = self._cull(node_ids, now)
        for c in culled:
            if c.license_id is not None:
                self._learned.touch_license(c.license_id)
        return culled

    # -- writes -----------------------------------------------------------------------------

    def create_pool(self, name: str, now: int) -> Pool:
        self._before_write()
        return super().create_pool(name, now)

    def insert_license(self, new: NewLicense, pool_id: int | None, now: int) -> License:
        self._before_write()
        return super().insert_license(new, pool_id, now)

    def delete_license(self, license_id: int) -> None:
        self._before_write()
        self._touch_license(license_id)
        super().delete_license(license_id)

    def lease_free_license(
        self, pool_id: int | None, node_id: int, strategy: Strategy, now: int, rng: random.Random
    ) -> License | None:
        self._before_write()
        self._touch_node(node_id)
        leased = super().lease_free_license(pool_id, node_id, strategy, now, rng)
        if leased is not None:
            self._learned.granted(node_id, leased)
        return leased

    def release_license(self, license_id: int, now: int) -> None:
        self._before_write()
        self._touch_license(license_id)
        super().release_license(license_id, now)

    def activate_node(self, fingerprint: str, now: int) -> Node:
        self._before_write()
        self._touch_fingerprint(fingerprint)
        node = super().activate_node(fingerprint, now)
        self._learned.read(fingerprint, node, None)
        return node

    def deactivate_node(self, node_id: int, now: int) -> None:
        self._before_write()
        self._touch_node(node_id)
        super().deactivate_node(node_id, now)

    # Evicted before the write, so no heartbeat is answered from the row while it changes.
    def _touch_fingerprint(self, fingerprint: str) -> None:
        self._learned.touch_fingerprint(fingerprint)
        self._leases.evict_fingerprint(fingerprint)

    def _touch_node(self, node_id: int) -> None:
        self._learned.touch_node(node_id)
        self._leases.evict_node(node_id)

    def _touch_license(self, license_id: int) -> None:
        self._learned.touch_license(license_id)
        self._leases.evict_license(license_id)


class _Learned:
    """Leases a transaction knows to hold once it commits: those it read and did not write
    afterwards, and those it granted and did not write afterwards; and the pools it saw."""

    __slots__ = (
        "_granted",
        "_in_work",
        "_nodes",
        "_read",
        "_touched_fingerprints",
        "_touched_licenses",
        "_touched_nodes",
        "pools",
    )

    def __init__(self) -> None:
        self._read: dict[str, tuple[Node, License]] = {}
        self._nodes: dict[int, tuple[str, Node]] = {}  # active nodes read or activated
        self._granted: dict[int, License] = {}  # by node id
        self._in_work: list[int] = []  # nodes granted a license by the current work
        self._touched_fingerprints: set[str] = set()
        self._touched_nodes: set[int] = set()
        self._touched_licenses: set[int] = set()
        self.pools: list[Pool] = []

    def begin_work(self) -> None:
        self._in_work = []

    def undo_work(self) -> None:
        for node_id in self._in_work:
            self._granted.pop(node_id, None)
        self._in_work = []

    def read(self, fingerprint: str, node: Node, held: License | None) -> None:
        self._nodes[node.id] = (fingerprint, node)
        if held is not None:
            self._read[fingerprint] = (node, held)

    def granted(self, node_id: int, lic: License) -> None:
        self._granted[node_id] = lic
        self._in_work.append(node_id)

    def touch_fingerprint(self, fingerprint: str) -> None:
        self._touched_fingerprints.add(fingerprint)

    def touch_node(self, node_id: int) -> None:
        self._touched_nodes.add(node_id)
        self._granted.pop(node_id, None)

    def touch_license(self, license_id: int) -> None:
        self._touched_licenses.add(license_id)
        for node_id, lic in list(self._granted.items()):
            if lic.id == license_id:
                del self._granted[node_id]

    def leases(self) -> list[tuple[str, Node, License]]:
        found = [
            (fingerprint, node, lic)
            for fingerprint, (node, lic) in self._read.items()
            if fingerprint not in self._touched_fingerprints
            and node.id not in self._touched_nodes
            and lic.id not in self._touched_licenses
        ]
        for node_id, lic in self._granted.items():
            if node_id in self._nodes:
                fingerprint, node = self._nodes[node_id]
                found.append((fingerprint, node, lic))
        return found

"""`BatchTransaction`: the transaction `SqliteStore.run` shares among the work it combines.

Under load most work is a heartbeat: read the node's lease, move its `last_heartbeat_at`, append
two audit rows. Every SQLite call lets other threads take the GIL, and taking it back is what a
busy server pays for, so this transaction keeps the two writes in memory and writes everyone's
at once: one UPDATE per distinct time and one multi-row INSERT before the COMMIT, or earlier when
a read needs them (a cull selecting nodes by `last_heartbeat_at`, the audit log). Nothing else
reads those values, and reading a node overlays its pending heartbeat.

Each piece of work is undone alone: its deferred rows are dropped, and if it wrote rows a
savepoint taken just before its first write is rolled back to. A savepoint is needed only when
the transaction already holds rows: a piece that writes first, or only defers, needs none.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from relay_core.errors import StorageError
from relay_core.model import AuditEntry, AuditRecord, License, NewLicense, Node, Pool, Strategy

from .transaction import _IDS, SqliteTransaction

if TYPE_CHECKING:
    import random

    from relay_core.ports import AuditQuery, Culled

__all__ = ["BatchTransaction"]

_BEAT = f"UPDATE nodes SET last_heartbeat_at = ? WHERE id IN ({_IDS})"


class BatchTransaction(SqliteTransaction):
    """A `SqliteTransaction` that defers heartbeats and audit rows; see the module docstring."""

    __slots__ = ("_audit", "_beats", "_dirty", "_mark", "_savepoint", "_wrote")

    def __init__(
        self, conn: sqlite3.Connection, translate: Callable[[sqlite3.Error], StorageError]
    ) -> None:
        super().__init__(conn, translate)
        self._beats: list[tuple[int, int]] = []
        self._audit: list[AuditEntry] = []
        self._mark = (0, 0)  # where the current work's deferred rows start
        self._dirty = False  # the open transaction holds written rows
        self._savepoint = False  # the current work took a savepoint
        self._wrote = False  # the current work has written rows

    # -- the life of one piece of work -------------------------------------------------------

    def begin_work(self) -> None:
        self._mark = (len(self._beats), len(self._audit))
        self._savepoint = self._wrote = False

    def undo_work(self) -> None:
        """Forget the current work's deferred rows and roll back what it wrote."""
        del self._beats[self._mark[0] :]
        del self._audit[self._mark[1] :]
        if self._savepoint:
            self._conn.execute("ROLLBACK TO work")
        elif self._wrote:  # it wrote first: nothing else is in the transaction yet
            self._conn.execute("ROLLBACK")
            self._dirty = False
            self._conn.execute("BEGIN IMMEDIATE")

    def flush(self) -> None:
        """Write every deferred row: before COMMIT, outside any work, or for `_sync`."""
        self._write(self._beats, self._audit)
        self._beats, self._audit = [], []

    def _before_write(self) -> None:
        """Write earlier work's deferred rows, then take a savepoint if anything precedes us."""
        if self._wrote:
            return
        beats, audit = self._mark
        if beats or audit:
            self._write(self._beats[:beats], self._audit[:audit])
            del self._beats[:beats]
            del self._audit[:audit]
            self._mark = (0, 0)
        if self._dirty:
            self._all("SAVEPOINT work")
            self._savepoint = True
        self._wrote = self._dirty = True

    def _sync(self) -> None:
        """Write every deferred row now, for a read that must see them."""
        self._before_write()
        self.flush()

    def _write(self, beats: Sequence[tuple[int, int]], audit: Sequence[AuditEntry]) -> None:
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

    def get_node_lease(self, fingerprint: str) -> tuple[Node, License | None] | None:
        found = super().get_node_lease(fingerprint)
        if found is None or not self._beats:
            return found
        return self._overlay(found[0]), found[1]

    def get_node(self, node_id: int) -> Node | None:
        node = super().get_node(node_id)
        return self._overlay(node) if node is not None and self._beats else node

    def read_audit(self, query: AuditQuery) -> list[AuditRecord]:
        self._sync()
        return super().read_audit(query)

    def cull_batch(self, cutoff: int, now: int, limit: int) -> list[Culled]:
        self._sync()
        return super().cull_batch(cutoff, now, limit)

    # -- writes -----------------------------------------------------------------------------

    def create_pool(self, name: str, now: int) -> Pool:
        self._before_write()
        return super().create_pool(name, now)

    def insert_license(self, new: NewLicense, pool_id: int | None, now: int) -> License:
        self._before_write()
        return super().insert_license(new, pool_id, now)

    def delete_license(self, license_id: int) -> None:
        self._before_write()
        super().delete_license(license_id)

    def lease_free_license(
        self, pool_id: int | None, node_id: int, strategy: Strategy, now: int, rng: random.Random
    ) -> License | None:
        self._before_write()
        return super().lease_free_license(pool_id, node_id, strategy, now, rng)

    def release_license(self, license_id: int, now: int) -> None:
        self._before_write()
        super().release_license(license_id, now)

    def activate_node(self, fingerprint: str, now: int) -> Node:
        self._before_write()
        return super().activate_node(fingerprint, now)

    def deactivate_node(self, node_id: int, now: int) -> None:
        self._before_write()
        super().deactivate_node(node_id, now)

"""`MemoryStore`: the reference storage adapter, kept in dictionaries.

It is the executable definition of the store port: small enough to read in one sitting, used as
the test double for the service, and held to the same `StorageContract` as real backends.
Transactions are serialised by one lock and rolled back by restoring a snapshot (the records are
frozen, so a shallow copy of each table is a full snapshot).
"""

from __future__ import annotations

import pickle
import random
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import DuplicateLicenseError
from ..model import (
    AuditEntry,
    AuditRecord,
    AuditRow,
    DenialCount,
    EntityType,
    EventType,
    License,
    NewLicense,
    Node,
    Pool,
    Strategy,
)
from ..ports import ANY_POOL, AuditQuery, Culled, PoolCounts, PoolFilter

__all__ = ["MemoryStore", "MemoryTransaction"]


@attrs.define
class _Tables:
    pools: dict[int, Pool] = attrs.Factory(dict)
    licenses: dict[int, License] = attrs.Factory(dict)
    nodes: dict[int, Node] = attrs.Factory(dict)
    audit: list[tuple[int, AuditEntry]] = attrs.Factory(list)
    denials: dict[tuple[int | None, int], int] = attrs.Factory(dict)
    next_id: dict[str, int] = attrs.Factory(
        lambda: {"pools": 0, "licenses": 0, "nodes": 0, "audit": 0}
    )

    def copy(self) -> _Tables:
        return _Tables(
            dict(self.pools),
            dict(self.licenses),
            dict(self.nodes),
            list(self.audit),
            dict(self.denials),
            dict(self.next_id),
        )

    def new_id(self, table: str) -> int:
        self.next_id[table] += 1
        return self.next_id[table]


class MemoryTransaction:
    """The unit of work of `MemoryStore`; see `relay_core.ports.Transaction`."""

    def __init__(self, tables: _Tables) -> None:
        self._t = tables

    # pools
    def get_pool(self, name: str) -> Pool | None:
        return next((p for p in self._t.pools.values() if p.name == name), None)

    def create_pool(self, name: str, now: int) -> Pool:
        pool = Pool(self._t.new_id("pools"), name, now)
        self._t.pools[pool.id] = pool
        return pool

    def list_pools(self) -> list[Pool]:
        return sorted(self._t.pools.values(), key=lambda p: p.id)

    # licenses
    def insert_license(self, new: NewLicense, pool_id: int | None, now: int) -> License:
        for lic in self._t.licenses.values():
            if new.guid == lic.guid or new.key == lic.key or new.file == lic.file:
                raise DuplicateLicenseError(new.guid)
        lic = License(
            id=self._t.new_id("licenses"),
            guid=new.guid,
            file=new.file,
            key=new.key,
            claims=0,
            last_claimed_at=None,
            last_released_at=None,
            node_id=None,
            pool_id=pool_id,
            created_at=now,
            file_expires_at=new.file_expires_at,
        )
        self._t.licenses[lic.id] = lic
        return lic

    def get_license(self, guid: str) -> License | None:
        return next((lic for lic in self._t.licenses.values() if lic.guid == guid), None)

    def list_licenses(self, pool_id: PoolFilter) -> list[License]:
        return [
            lic
            for _, lic in sorted(self._t.licenses.items())
            if pool_id is ANY_POOL or lic.pool_id == pool_id
        ]

    def delete_license(self, license_id: int) -> None:
        self._t.licenses.pop(license_id, None)

    def _held_by(self, node_id: int) -> License | None:
        return next((lic for lic in self._t.licenses.values() if lic.node_id == node_id), None)

    def _free(self, pool_id: int | None, now: int) -> list[License]:
        return [
            lic
            for _, lic in sorted(self._t.licenses.items())
            if lic.pool_id == pool_id and lic.node_id is None and not lic.file_expired(now)
        ]

    def has_free_license(self, pool_id: int | None, now: int) -> bool:
        return bool(self._free(pool_id, now))

    def lease_free_license(
        self, pool_id: int | None, node_id: int, strategy: Strategy, now: int, rng: random.Random
    ) -> License | None:
        free = self._free(pool_id, now)
        if not free:
            return None
        if strategy is Strategy.RAND:
            chosen = free[rng.randrange(len(free))]
        elif strategy is Strategy.LIFO:
            chosen = max(free, key=lambda lic: (lic.created_at, lic.id))
        else:
            chosen = min(free, key=lambda lic: (lic.created_at, lic.id))
        leased = attrs.evolve(
            chosen, node_id=node_id, last_claimed_at=now, claims=chosen.claims + 1
        )
        self._t.licenses[leased.id] = leased
        return leased

    def release_license(self, license_id: int, now: int) -> None:
        lic = self._t.licenses[license_id]
        self._t.licenses[license_id] = attrs.evolve(lic, node_id=None, last_released_at=now)

    # nodes
    def _active_node(self, fingerprint: str) -> Node | None:
        return next(
            (n for n in self._t.nodes.values() if n.fingerprint == fingerprint and n.active), None
        )

    def get_node_lease(self, fingerprint: str) -> tuple[Node, License | None] | None:
        node = self._active_node(fingerprint)
        return None if node is None else (node, self._held_by(node.id))

    def activate_node(self, fingerprint: str, now: int) -> Node:
        for existing in self._t.nodes.values():
            if existing.fingerprint == fingerprint:
                reactivated = attrs.evolve(existing, deactivated_at=None)
                self._t.nodes[existing.id] = reactivated
                return reactivated
        node = Node(self._t.new_id("nodes"), fingerprint, None, now, None)
        self._t.nodes[node.id] = node
        return node

    def heartbeat_node(self, node_id: int, now: int) -> None:
        node = self._t.nodes[node_id]
        self._t.nodes[node_id] = attrs.evolve(node, last_heartbeat_at=now)

    def deactivate_node(self, node_id: int, now: int) -> None:
        node = self._t.nodes[node_id]
        if node.active:
            self._t.nodes[node_id] = attrs.evolve(node, deactivated_at=now)

    def get_node(self, node_id: int) -> Node | None:
        return self._t.nodes.get(node_id)

    def cull_batch(self, cutoff: int, now: int, limit: int) -> list[Culled]:
        dead = [
            n
            for _, n in sorted(self._t.nodes.items())
            if n.active and n.last_heartbeat_at is not None and n.last_heartbeat_at <= cutoff
        ][:limit]
        culled = []
        for node in dead:
            held = self._held_by(node.id)
            if held is not None:
                self.release_license(held.id, now)
            self.deactivate_node(node.id, now)
            culled.append(
                Culled(node.id, held.id if held else None, held.pool_id if held else None)
            )
        return culled

    # the operator's view
    def list_leases(self, pool_id: PoolFilter) -> list[tuple[Node, License]]:
        held = []
        for lic in self.list_licenses(pool_id):
            node = self._t.nodes.get(lic.node_id) if lic.node_id is not None else None
            if node is not None and node.active:
                held.append((node, lic))
        return held

    def count_by_pool(self, now: int) -> list[PoolCounts]:
        counts: dict[int | None, list[int]] = {}
        for lic in self._t.licenses.values():
            row = counts.setdefault(lic.pool_id, [0, 0, 0, 0, 0])
            node = self._t.nodes.get(lic.node_id) if lic.node_id is not None else None
            row[0] += 1
            row[1] += lic.node_id is not None
            row[2] += lic.node_id is None and not lic.file_expired(now)
            row[3] += lic.file_expired(now)
            row[4] += node is not None and node.active
        order = sorted(counts, key=lambda pool_id: -1 if pool_id is None else pool_id)
        return [PoolCounts(pool_id, *counts[pool_id]) for pool_id in order]

    # audit
    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        for entry in entries:
            self._t.audit.append((self._t.new_id("audit"), entry))

    def _label(self, entry: AuditEntry) -> str | None:
        if entry.entity_type is EntityType.LICENSE:
            lic = self._t.licenses.get(entry.entity_id)
            return lic.guid if lic else None
        if entry.entity_type is EntityType.NODE:
            node = self._t.nodes.get(entry.entity_id)
            return node.fingerprint if node else None
        if entry.entity_type is EntityType.POOL:
            pool = self._t.pools.get(entry.entity_id)
            return pool.name if pool else None
        return None

    def _record(self, row_id: int, e: AuditEntry) -> AuditRecord:
        pool = self._t.pools.get(e.pool_id) if e.pool_id is not None else None
        return AuditRecord(
            id=row_id,
            event=e.event,
            entity_type=e.entity_type,
            entity_id=e.entity_id,
            entity_label=self._label(e),
            pool_id=e.pool_id,
            pool_name=pool.name if pool else None,
            created_at=e.created_at,
        )

    def read_audit(self, query: AuditQuery) -> list[AuditRecord]:
        records: list[AuditRecord] = []
        for row_id, e in reversed(self._t.audit):
            if len(records) >= query.limit:
                break
            if query.pool_id is not ANY_POOL and e.pool_id != query.pool_id:
                continue
            if query.events and e.event not in query.events:
                continue
            if query.since is not None and e.created_at < query.since:
                continue
            records.append(self._record(row_id, e))
        return records

    def scan_audit(
        self, events: Sequence[EventType], after: int | None, limit: int
    ) -> list[AuditRow]:
        wanted = set(events)
        rows = sorted(
            (e.created_at, row_id, e)
            for row_id, e in self._t.audit
            if e.event in wanted and (after is None or e.created_at > after)
        )
        if len(rows) > limit:
            last = rows[limit - 1][0]
            rows = [r for r in rows if r[0] <= last]
        return [(int(e.event), e.entity_id, e.pool_id, created_at) for created_at, _, e in rows]

    def license_holders(self) -> list[tuple[int, int | None, int | None]]:
        return [
            (lic.id, lic.pool_id, lic.node_id)
            for lic in sorted(self._t.licenses.values(), key=lambda lic: lic.id)
        ]

    # denials
    def add_denials(self, counts: Sequence[DenialCount]) -> None:
        for c in counts:
            key = (c.pool_id, c.minute)
            self._t.denials[key] = self._t.denials.get(key, 0) + c.count

    def read_denials(self, since: int | None, until: int | None) -> list[DenialCount]:
        found = [
            DenialCount(pool_id, minute, count)
            for (pool_id, minute), count in self._t.denials.items()
            if (since is None or minute >= since) and (until is None or minute < until)
        ]
        return sorted(found, key=lambda c: (c.minute, c.pool_id is not None, c.pool_id or 0))

    # copying (relay_core.copying.CopyTransaction)
    def list_nodes(self) -> list[Node]:
        return [self._t.nodes[k] for k in sorted(self._t.nodes)]

    def audit_page(self, after_id: int, limit: int) -> list[AuditRecord]:
        records: list[AuditRecord] = []
        for row_id, e in self._t.audit:
            if row_id <= after_id:
                continue
            if len(records) >= limit:
                break
            records.append(self._record(row_id, e))
        return records

    def is_empty(self) -> bool:
        t = self._t
        return not (t.pools or t.licenses or t.nodes or t.audit or t.denials)

    def import_rows(
        self,
        *,
        pools: Sequence[Pool] = (),
        nodes: Sequence[Node] = (),
        licenses: Sequence[License] = (),
        audit: Sequence[AuditRecord] = (),
    ) -> None:
        t = self._t
        for table, rows in (("pools", pools), ("nodes", nodes), ("licenses", licenses)):
            target: dict[int, Any] = getattr(t, table)
            for row in rows:
                target[row.id] = row
                t.next_id[table] = max(t.next_id[table], row.id)
        for r in audit:
            entry = AuditEntry(r.event, r.entity_type, r.entity_id, r.pool_id, r.created_at)
            t.audit.append((r.id, entry))
            t.next_id["audit"] = max(t.next_id["audit"], r.id)
        t.audit.sort(key=lambda item: item[0])


class MemoryStore:
    """An in-process store; transactions are serialised and rolled back on exceptions."""

    transaction_type: type[MemoryTransaction] = MemoryTransaction

    def __init__(self) -> None:
        self._tables = _Tables()
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[MemoryTransaction]:
        with self._lock:
            work = self._tables.copy()
            yield self.transaction_type(work)
            self._tables = work

    def snapshot(self) -> bytes:
        """The committed state as bytes, e.g. to persist it or to fork a store in a test."""
        with self._lock:
            return pickle.dumps(self._tables)

    def restore(self, snapshot: bytes) -> None:
        """Replace the state with one taken by `snapshot()` (trusted input only: it is pickle)."""
        tables = pickle.loads(snapshot)
        if not isinstance(tables, _Tables):
            raise TypeError("not a MemoryStore snapshot")
        with self._lock:
            self._tables = tables

    def close(self) -> None:
        """Nothing to release; present for the port."""


if TYPE_CHECKING:
    from ..ports import Store, Transaction

    _store: type[Store] = MemoryStore
    _tx: type[Transaction] = MemoryTransaction

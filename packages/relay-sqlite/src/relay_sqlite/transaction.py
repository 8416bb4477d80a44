"""`SqliteTransaction`: the store port's primitives as SQL, inside one BEGIN IMMEDIATE."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from relay_core.errors import ClaimConflictError, DuplicateLicenseError, StorageError
from relay_core.model import (
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
from relay_core.ports import ANY_POOL, AuditQuery, Culled, PoolCounts, PoolFilter

__all__ = ["SqliteTransaction"]

_LICENSE = (
    "id, guid, file, key, claims, last_claimed_at, last_released_at, node_id, pool_id, "
    "created_at, file_expires_at"
)
_NODE = "id, fingerprint, last_heartbeat_at, created_at, deactivated_at"
_NODE_FIELDS = 5
# One statement for the node and its lease: the heartbeat and release paths need both, and every
# statement costs a trip out of and back into the GIL while the store lock is held.
_NODE_LEASE = (
    "SELECT "
    + ", ".join(f"n.{c.strip()}" for c in _NODE.split(","))
    + ", "
    + ", ".join(f"l.{c.strip()}" for c in _LICENSE.split(","))
    + " FROM nodes n LEFT JOIN licenses l ON l.node_id = n.id"
    " WHERE n.fingerprint = ? AND n.deactivated_at IS NULL"
)

_VALID = "(file_expires_at IS NULL OR file_expires_at >= :now)"
_LEASE = (
    "UPDATE licenses SET node_id = :node, last_claimed_at = :now, claims = claims + 1 "
    "WHERE id = ({pick}) AND node_id IS NULL AND " + _VALID + " RETURNING " + _LICENSE
)
# INDEXED BY pins the plan: `node_id IS NULL` tempts the planner toward the UNIQUE autoindex
# (the trap in the performance notes), and stale statistics can tempt it into a scan.
_FREE = (
    "SELECT id FROM licenses INDEXED BY relay_licenses_pick "
    "WHERE {pool} AND node_id IS NULL AND " + _VALID
)


def _by_pool(template: str) -> dict[bool, str]:
    """`template` for the global pool (True: `pool_id IS NULL`) and a named one (False)."""
    return {
        True: template.format(pool="pool_id IS NULL"),
        False: template.format(pool="pool_id = :pool"),
    }


_ORDERED = {
    Strategy.FIFO: _by_pool(_FREE + " ORDER BY created_at, id LIMIT 1"),
    Strategy.LIFO: _by_pool(_FREE + " ORDER BY created_at DESC, id DESC LIMIT 1"),
}
_LEASE_ORDERED = {
    strategy: {k: _LEASE.format(pick=sql) for k, sql in by_pool.items()}
    for strategy, by_pool in _ORDERED.items()
}
# rand, by rejection: draw an id uniformly from the span of the pool's free ids and lease it if
# it is a free, valid license of the pool. Every accepted draw is uniform over the valid free
# licenses, so the pick is exactly uniform. The span's ends come from Keygen Relay's
# (pool_id, node_id) index, whose entries end in the rowid: two O(log n) seeks.
_FREE_SPAN = _by_pool(
    "SELECT (SELECT id FROM licenses INDEXED BY idx_licenses_pool_node "
    "WHERE {pool} AND node_id IS NULL ORDER BY id LIMIT 1), "
    "(SELECT id FROM licenses INDEXED BY idx_licenses_pool_node "
    "WHERE {pool} AND node_id IS NULL ORDER BY id DESC LIMIT 1)"
)
_LEASE_ID = _by_pool(
    "UPDATE licenses SET node_id = :node, last_claimed_at = :now, claims = claims + 1 "
    "WHERE id = :id AND {pool} AND node_id IS NULL AND " + _VALID + " RETURNING " + _LICENSE
)
_LEASE_NTH = _by_pool(_LEASE.format(pick=_FREE + " ORDER BY created_at, id LIMIT 1 OFFSET :offset"))
_COUNT_FREE = _by_pool("SELECT count(*) FROM (" + _FREE + ")")
_HAS_FREE = _by_pool("SELECT EXISTS (" + _FREE + ")")
_LIST = {
    "any": f"SELECT {_LICENSE} FROM licenses ORDER BY id",
    True: f"SELECT {_LICENSE} FROM licenses WHERE pool_id IS NULL ORDER BY id",
    False: f"SELECT {_LICENSE} FROM licenses WHERE pool_id = ? ORDER BY id",
}
_IDS = "SELECT value FROM json_each(?)"
_CULL_NODES = (
    "SELECT id FROM nodes INDEXED BY relay_nodes_alive "
    "WHERE deactivated_at IS NULL AND last_heartbeat_at <= ? LIMIT ?"
)
_CULL_LICENSES = f"SELECT node_id, id, pool_id FROM licenses WHERE node_id IN ({_IDS})"
_AUDIT = """SELECT a.id, a.event_type_id, a.entity_type_id, a.entity_id,
  CASE a.entity_type_id WHEN 1 THEN l.guid WHEN 2 THEN n.fingerprint WHEN 3 THEN ep.name END,
  a.pool_id, p.name, a.created_at
FROM audit_logs a
LEFT JOIN licenses l ON a.entity_type_id = 1 AND l.id = a.entity_id
LEFT JOIN nodes n ON a.entity_type_id = 2 AND n.id = a.entity_id
LEFT JOIN pools ep ON a.entity_type_id = 3 AND ep.id = a.entity_id
LEFT JOIN pools p ON p.id = a.pool_id"""

_LEASES = (
    "SELECT "
    + ", ".join(f"n.{c.strip()}" for c in _NODE.split(","))
    + ", "
    + ", ".join(f"l.{c.strip()}" for c in _LICENSE.split(","))
    + " FROM licenses l JOIN nodes n ON n.id = l.node_id WHERE n.deactivated_at IS NULL"
)
_LEASES_BY_POOL = {
    "any": _LEASES + " ORDER BY l.id",
    True: _LEASES + " AND l.pool_id IS NULL ORDER BY l.id",
    False: _LEASES + " AND l.pool_id = ? ORDER BY l.id",
}
# One pass over the licenses, grouped by pool; the holder is joined by primary key.
_COUNT_BY_POOL = (
    "SELECT l.pool_id, count(*), count(l.node_id), "
    "coalesce(sum(l.node_id IS NULL AND (l.file_expires_at IS NULL OR l.file_expires_at >= :now)), 0), "
    "coalesce(sum(l.file_expires_at IS NOT NULL AND l.file_expires_at < :now), 0), "
    "count(n.id) "
    "FROM licenses l LEFT JOIN nodes n ON n.id = l.node_id AND n.deactivated_at IS NULL "
    "GROUP BY l.pool_id ORDER BY l.pool_id IS NOT NULL, l.pool_id"
)

_AUDIT_INSERT = (
    "INSERT INTO audit_logs (event_type_id, entity_type_id, entity_id, pool_id, created_at) VALUES "
)
_AUDIT_CHUNK = 100
"""Audit rows per INSERT statement (500 parameters; SQLite allows 32,766)."""


def _audit_sql(rows: int) -> str:
    """One INSERT of `rows` rows: a request's 2-3 audit rows cost one statement, not one each."""
    return _AUDIT_INSERT + ", ".join(["(?, ?, ?, ?, ?)"] * rows)


_AUDIT_SQL = {rows: _audit_sql(rows) for rows in range(1, 9)}
_AUDIT_SQL[_AUDIT_CHUNK] = _audit_sql(_AUDIT_CHUNK)


def scan_sql(events: Sequence[EventType]) -> str:
    """`scan_audit`'s statement, with parameters (after, after, limit). The page ends at the
    second of its `limit`-th row, found by the subquery's walk of the same index, so no second
    is split. The event ids are inlined (they are ints), so the lifecycle list reads exactly as
    the partial index's WHERE clause, which SQLite needs to use it."""
    where = (
        "WHERE event_type_id IN ("
        + ", ".join(str(int(e)) for e in sorted(set(events)))
        + ") AND created_at > ?"
    )
    return (
        "SELECT event_type_id, CAST(entity_id AS INTEGER), pool_id, created_at "
        f"FROM audit_logs {where} AND created_at <= COALESCE("
        f"(SELECT created_at FROM audit_logs {where} ORDER BY created_at LIMIT 1 OFFSET ?), "
        f"{2**63 - 1}) ORDER BY created_at, id"
    )


_RAND_TRIES = 32
"""Draws before falling back to counting the valid free licenses and taking the k-th. The
fallback is as uniform as a draw, so the mixture stays exact; it costs O(free), and is reached
only when free licenses are sparse in their id span, so its expected cost stays below about
span / (e * tries) index entries."""


def _record(r: Sequence[Any]) -> AuditRecord:
    """An `_AUDIT` row as an `AuditRecord`."""
    return AuditRecord(
        id=r[0],
        event=_event(r[1]),
        entity_type=_entity(r[2]),
        entity_id=r[3],
        entity_label=r[4],
        pool_id=r[5],
        pool_name=r[6],
        created_at=r[7],
    )


def _license(row: Any) -> License:
    return License(*row)


def _node(row: Any) -> Node:
    return Node(*row)


def _event(value: int) -> EventType:
    try:
        return EventType(value)
    except ValueError:
        return EventType.UNKNOWN


def _entity(value: int) -> EntityType:
    try:
        return EntityType(value)
    except ValueError:
        return EntityType.UNKNOWN


class SqliteTransaction:
    """One unit of work on a connection the store holds for us; see `relay_core.ports`."""

    __slots__ = ("_conn", "_translate")

    def __init__(
        self, conn: sqlite3.Connection, translate: Callable[[sqlite3.Error], StorageError]
    ) -> None:
        self._conn = conn
        self._translate = translate

    def _all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        try:
            return self._conn.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    # pools
    def get_pool(self, name: str) -> Pool | None:
        row = self._one("SELECT id, name, created_at FROM pools WHERE name = ?", (name,))
        return Pool(*row) if row else None

    def create_pool(self, name: str, now: int) -> Pool:
        row = self._one(
            "INSERT INTO pools (name, created_at) VALUES (?, ?) RETURNING id, name, created_at",
            (name, now),
        )
        return Pool(*row)

    def list_pools(self) -> list[Pool]:
        return [Pool(*r) for r in self._all("SELECT id, name, created_at FROM pools ORDER BY id")]

    # licenses
    def insert_license(self, new: NewLicense, pool_id: int | None, now: int) -> License:
        try:
            row = self._conn.execute(
                "INSERT INTO licenses (guid, file, key, pool_id, created_at, file_expires_at) "
                f"VALUES (?, ?, ?, ?, ?, ?) RETURNING {_LICENSE}",
                (new.guid, new.file, new.key, pool_id, now, new.file_expires_at),
            ).fetchone()
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise DuplicateLicenseError(new.guid) from exc
            raise self._translate(exc) from exc
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        return _license(row)

    def get_license(self, guid: str) -> License | None:
        row = self._one(f"SELECT {_LICENSE} FROM licenses WHERE guid = ?", (guid,))
        return _license(row) if row else None

    def list_licenses(self, pool_id: PoolFilter) -> list[License]:
        if pool_id is ANY_POOL:
            rows = self._all(_LIST["any"])
        elif pool_id is None:
            rows = self._all(_LIST[True])
        else:
            rows = self._all(_LIST[False], (pool_id,))
        return [_license(r) for r in rows]

    def delete_license(self, license_id: int) -> None:
        self._all("DELETE FROM licenses WHERE id = ?", (license_id,))

    def has_free_license(self, pool_id: int | None, now: int) -> bool:
        row = self._one(_HAS_FREE[pool_id is None], {"pool": pool_id, "now": now})
        return bool(row[0])

    def lease_free_license(
        self, pool_id: int | None, node_id: int, strategy: Strategy, now: int, rng: random.Random
    ) -> License | None:
        params: dict[str, Any] = {"pool": pool_id, "node": node_id, "now": now}
        try:
            if strategy is Strategy.RAND:
                row = self._lease_random(params, rng)
            else:
                row = self._conn.execute(
                    _LEASE_ORDERED[strategy][pool_id is None], params
                ).fetchone()
        except sqlite3.IntegrityError as exc:
            # licenses.node_id is UNIQUE: the node already holds a license (the core checks
            # first, so only a caller skipping that check gets here).
            raise ClaimConflictError() from exc
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        return _license(row) if row else None

    def _lease_random(self, params: dict[str, Any], rng: random.Random) -> Any:
        """Exactly uniform over the valid free licenses of the pool; see `_FREE_SPAN`."""
        by_pool = params["pool"] is None
        low, high = self._conn.execute(_FREE_SPAN[by_pool], params).fetchone()
        if low is None:
            return None
        lease = _LEASE_ID[by_pool]
        for _ in range(_RAND_TRIES):
            params["id"] = rng.randint(low, high)
            row = self._conn.execute(lease, params).fetchone()
            if row is not None:
                return row
        valid = self._conn.execute(_COUNT_FREE[by_pool], params).fetchone()[0]
        if not valid:
            return None
        params["offset"] = rng.randrange(valid)
        return self._conn.execute(_LEASE_NTH[by_pool], params).fetchone()

    def release_license(self, license_id: int, now: int) -> None:
        self._all(
            "UPDATE licenses SET node_id = NULL, last_released_at = ? WHERE id = ?",
            (now, license_id),
        )

    # nodes
    def get_node_lease(self, fingerprint: str) -> tuple[Node, License | None] | None:
        row = self._one(_NODE_LEASE, (fingerprint,))
        if row is None:
            return None
        held = _license(row[_NODE_FIELDS:]) if row[_NODE_FIELDS] is not None else None
        return _node(row[:_NODE_FIELDS]), held

    def activate_node(self, fingerprint: str, now: int) -> Node:
        row = self._one(
            "INSERT INTO nodes (fingerprint, created_at) VALUES (?, ?) "
            "ON CONFLICT (fingerprint) DO UPDATE SET deactivated_at = NULL "
            f"RETURNING {_NODE}",
            (fingerprint, now),
        )
        return _node(row)

    def heartbeat_node(self, node_id: int, now: int) -> None:
        self._all("UPDATE nodes SET last_heartbeat_at = ? WHERE id = ?", (now, node_id))

    def deactivate_node(self, node_id: int, now: int) -> None:
        self._all(
            "UPDATE nodes SET deactivated_at = ? WHERE id = ? AND deactivated_at IS NULL",
            (now, node_id),
        )

    def get_node(self, node_id: int) -> Node | None:
        row = self._one(f"SELECT {_NODE} FROM nodes WHERE id = ?", (node_id,))
        return _node(row) if row else None

    def cull_batch(self, cutoff: int, now: int, limit: int) -> list[Culled]:
        return self._cull(self._cull_candidates(cutoff, limit), now)

    def _cull_candidates(self, cutoff: int, limit: int) -> list[int]:
        return [r[0] for r in self._all(_CULL_NODES, (cutoff, limit))]

    def _cull(self, node_ids: list[int], now: int) -> list[Culled]:
        if not node_ids:
            return []
        nodes = json.dumps(node_ids)
        held = {r[0]: (r[1], r[2]) for r in self._all(_CULL_LICENSES, (nodes,))}
        if held:
            self._all(
                f"UPDATE licenses SET node_id = NULL, last_released_at = ? WHERE id IN ({_IDS})",
                (now, json.dumps([lic for lic, _ in held.values()])),
            )
        self._all(f"UPDATE nodes SET deactivated_at = ? WHERE id IN ({_IDS})", (now, nodes))
        return [Culled(node, *held.get(node, (None, None))) for node in sorted(node_ids)]

    # the operator's view
    def list_leases(self, pool_id: PoolFilter) -> list[tuple[Node, License]]:
        if pool_id is ANY_POOL:
            rows = self._all(_LEASES_BY_POOL["any"])
        elif pool_id is None:
            rows = self._all(_LEASES_BY_POOL[True])
        else:
            rows = self._all(_LEASES_BY_POOL[False], (pool_id,))
        return [(_node(r[:_NODE_FIELDS]), _license(r[_NODE_FIELDS:])) for r in rows]

    def count_by_pool(self, now: int) -> list[PoolCounts]:
        return [PoolCounts(*row) for row in self._all(_COUNT_BY_POOL, {"now": now})]

    # audit
    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        try:
            for start in range(0, len(entries), _AUDIT_CHUNK):
                chunk = entries[start : start + _AUDIT_CHUNK]
                params: list[int | None] = []
                for e in chunk:
                    params += (
                        int(e.event),
                        int(e.entity_type),
                        e.entity_id,
                        e.pool_id,
                        e.created_at,
                    )
                sql = _AUDIT_SQL.get(len(chunk)) or _audit_sql(len(chunk))
                self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def read_audit(self, query: AuditQuery) -> list[AuditRecord]:
        where: list[str] = []
        params: list[Any] = []
        if query.pool_id is None:
            where.append("a.pool_id IS NULL")
        elif query.pool_id is not ANY_POOL:
            where.append("a.pool_id = ?")
            params.append(query.pool_id)
        if query.events:
            where.append(f"a.event_type_id IN ({', '.join('?' * len(query.events))})")
            params += [int(e) for e in query.events]
        if query.since is not None:
            where.append("a.created_at >= ?")
            params.append(query.since)
        sql = _AUDIT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY a.id DESC LIMIT ?"
        params.append(query.limit)
        return [_record(r) for r in self._all(sql, params)]

    def scan_audit(
        self, events: Sequence[EventType], after: int | None, limit: int
    ) -> list[AuditRow]:
        if not events:
            return []
        start = after if after is not None else -(2**63)
        rows: list[AuditRow] = self._all(scan_sql(events), (start, start, limit - 1))
        return rows

    def license_holders(self) -> list[tuple[int, int | None, int | None]]:
        rows: list[tuple[int, int | None, int | None]] = self._all(
            "SELECT id, pool_id, node_id FROM licenses ORDER BY id"
        )
        return rows

    # denials; the global pool is stored as pool_id 0 (ids start at 1) so it has a primary key
    def add_denials(self, counts: Sequence[DenialCount]) -> None:
        try:
            self._conn.executemany(
                "INSERT INTO relay_denials (pool_id, minute, count) VALUES (?, ?, ?) "
                "ON CONFLICT (pool_id, minute) DO UPDATE SET count = count + excluded.count",
                [(c.pool_id or 0, c.minute, c.count) for c in counts],
            )
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def read_denials(self, since: int | None, until: int | None) -> list[DenialCount]:
        rows = self._all(
            "SELECT pool_id, minute, count FROM relay_denials "
            "WHERE minute >= ? AND minute < ? ORDER BY minute, pool_id",
            (since if since is not None else -(2**63), until if until is not None else 2**63 - 1),
        )
        return [DenialCount(r[0] or None, r[1], r[2]) for r in rows]

    # copying (relay_core.copying.CopyTransaction)
    def list_nodes(self) -> list[Node]:
        return [_node(r) for r in self._all(f"SELECT {_NODE} FROM nodes ORDER BY id")]

    def audit_page(self, after_id: int, limit: int) -> list[AuditRecord]:
        rows = self._all(_AUDIT + " WHERE a.id > ? ORDER BY a.id LIMIT ?", (after_id, limit))
        return [_record(r) for r in rows]

    def is_empty(self) -> bool:
        row = self._one(
            "SELECT EXISTS (SELECT 1 FROM pools) OR EXISTS (SELECT 1 FROM licenses) "
            "OR EXISTS (SELECT 1 FROM nodes) OR EXISTS (SELECT 1 FROM audit_logs) "
            "OR EXISTS (SELECT 1 FROM relay_denials)"
        )
        return not row[0]

    def import_rows(
        self,
        *,
        pools: Sequence[Pool] = (),
        nodes: Sequence[Node] = (),
        licenses: Sequence[License] = (),
        audit: Sequence[AuditRecord] = (),
    ) -> None:
        # Explicit ids: AUTOINCREMENT's sqlite_sequence follows the largest one inserted.
        try:
            self._conn.executemany(
                "INSERT INTO pools (id, name, created_at) VALUES (?, ?, ?)",
                [(p.id, p.name, p.created_at) for p in pools],
            )
            self._conn.executemany(
                f"INSERT INTO nodes ({_NODE}) VALUES (?, ?, ?, ?, ?)",
                [
                    (n.id, n.fingerprint, n.last_heartbeat_at, n.created_at, n.deactivated_at)
                    for n in nodes
                ],
            )
            self._conn.executemany(
                f"INSERT INTO licenses ({_LICENSE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        lic.id,
                        lic.guid,
                        lic.file,
                        lic.key,
                        lic.claims,
                        lic.last_claimed_at,
                        lic.last_released_at,
                        lic.node_id,
                        lic.pool_id,
                        lic.created_at,
                        lic.file_expires_at,
                    )
                    for lic in licenses
                ],
            )
            self._conn.executemany(
                "INSERT INTO audit_logs "
                "(id, event_type_id, entity_type_id, entity_id, pool_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (r.id, int(r.event), int(r.entity_type), r.entity_id, r.pool_id, r.created_at)
                    for r in audit
                ],
            )
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc


if TYPE_CHECKING:
    from relay_core.ports import Transaction

    _: type[Transaction] = SqliteTransaction

"""`PostgresTransaction`: the store port's primitives as SQL on one connection's transaction.

Rows that other replicas may change at the same instant are taken with row locks, so the
database, not the timing, decides: a node's row is locked when its lease is read (a concurrent
cull skips it, a concurrent claim of the same fingerprint waits), free licenses are picked with
`FOR UPDATE SKIP LOCKED` (two claims never wait on, or take, the same license), and the cull
locks the nodes it deactivates with `SKIP LOCKED` (two replicas never cull one node).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg
from relay_core.errors import (
    ClaimConflictError,
    DuplicateLicenseError,
    StorageBusyError,
    StorageError,
)
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

__all__ = ["PostgresTransaction"]

_LICENSE_COLUMNS = (
    "id",
    "guid",
    "file",
    "key",
    "claims",
    "last_claimed_at",
    "last_released_at",
    "node_id",
    "pool_id",
    "created_at",
    "file_expires_at",
)
_LICENSE = ", ".join(_LICENSE_COLUMNS)
_NODE_COLUMNS = ("id", "fingerprint", "last_heartbeat_at", "created_at", "deactivated_at")
_NODE = ", ".join(_NODE_COLUMNS)
_NODE_FIELDS = len(_NODE_COLUMNS)

_NODE_ID = _LICENSE_COLUMNS.index("node_id")
_LOCK_NODE = "SELECT 1 FROM nodes WHERE id = %s FOR UPDATE"
_LOCK_LICENSE = f"SELECT {_LICENSE} FROM licenses WHERE guid = %s FOR UPDATE"
_HOLDER_ATTEMPTS = 50

# The node's row is locked: a cull skips it, and a second claim of it waits for this one.
_NODE_LEASE = (
    "SELECT "
    + ", ".join(f"n.{c}" for c in _NODE_COLUMNS)
    + ", "
    + ", ".join(f"l.{c}" for c in _LICENSE_COLUMNS)
    + " FROM nodes n LEFT JOIN licenses l ON l.node_id = n.id"
    " WHERE n.fingerprint = %(fp)s AND n.deactivated_at IS NULL FOR UPDATE OF n"
)

_VALID = "(file_expires_at IS NULL OR file_expires_at >= %(now)s)"


def _by_pool(template: str) -> dict[bool, str]:
    """`template` for the global pool (True: `pool_id IS NULL`) and a named one (False)."""
    return {
        True: template.replace("{pool}", "pool_id IS NULL"),
        False: template.replace("{pool}", "pool_id = %(pool)s"),
    }


_FREE = "SELECT id FROM licenses WHERE {pool} AND node_id IS NULL AND " + _VALID
_SET_LEASE = (
    "UPDATE licenses SET node_id = %(node)s, last_claimed_at = %(now)s, claims = claims + 1 "
    "FROM pick WHERE licenses.id = pick.id AND licenses.node_id IS NULL "
    "RETURNING " + ", ".join(f"licenses.{c}" for c in _LICENSE_COLUMNS)
)
# pool_id leads the ORDER BY although it is fixed: the planner treats `pool_id IS NULL` as a
# filter, not a constant, and would otherwise sort every free license instead of walking
# relay_licenses_free (pool_id, created_at, id) in order and stopping at the first.
_ORDER = {
    Strategy.FIFO: " ORDER BY pool_id, created_at, id",
    Strategy.LIFO: " ORDER BY pool_id DESC, created_at DESC, id DESC",
}
# fifo/lifo: one statement walks the free-license index in order, skipping rows another
# transaction is leasing right now, and leases the first.
_LEASE_ORDERED = {
    strategy: _by_pool(
        "WITH pick AS (" + _FREE + order + " LIMIT 1 FOR UPDATE SKIP LOCKED) " + _SET_LEASE
    )
    for strategy, order in _ORDER.items()
}
# rand, by rejection in one statement: draws (fractions from the caller's rng) become ids in
# the span of the pool's free ids (two index seeks); the first drawn id that is a free, valid,
# unlocked license of the pool is leased. Each accepted draw is uniform over the free licenses.
_LEASE_DRAWN = _by_pool(
    "WITH span AS (SELECT "
    "(SELECT id FROM licenses WHERE {pool} AND node_id IS NULL ORDER BY pool_id, id LIMIT 1) "
    "AS lo, (SELECT id FROM licenses WHERE {pool} AND node_id IS NULL "
    "ORDER BY pool_id DESC, id DESC LIMIT 1) AS hi), "
    "drawn AS (SELECT span.lo + floor(d.x * (span.hi - span.lo + 1))::BIGINT AS id, d.n "
    "FROM span, unnest(%(draws)s::float8[]) WITH ORDINALITY AS d(x, n) "
    "WHERE span.lo IS NOT NULL), "
    "pick AS (SELECT l.id FROM drawn JOIN licenses l ON l.id = drawn.id "
    "WHERE l.{pool} AND l.node_id IS NULL AND "
    "(l.file_expires_at IS NULL OR l.file_expires_at >= %(now)s) "
    "ORDER BY drawn.n LIMIT 1 FOR UPDATE OF l SKIP LOCKED) " + _SET_LEASE
)
_COUNT_FREE = _by_pool("SELECT count(*) FROM (" + _FREE + ") AS f")
_LEASE_NTH = _by_pool(
    "WITH pick AS ("
    + _FREE
    + " ORDER BY pool_id, created_at, id OFFSET %(offset)s LIMIT 1 FOR UPDATE SKIP LOCKED) "
    + _SET_LEASE
)
_HAS_FREE = _by_pool("SELECT EXISTS (" + _FREE + ")")
_DRAWS = 32
"""Draws per rand pick before falling back to counting the free licenses and taking the k-th;
the fallback is as uniform as a draw and is reached only when free ids are sparse in their span."""

_LIST = {
    "any": f"SELECT {_LICENSE} FROM licenses ORDER BY id",
    True: f"SELECT {_LICENSE} FROM licenses WHERE pool_id IS NULL ORDER BY id",
    False: f"SELECT {_LICENSE} FROM licenses WHERE pool_id = %s ORDER BY id",
}
# One statement per batch: lock up to `limit` expired active nodes (skipping any another replica
# is culling, or a request is using), free their licenses and deactivate them.
_CULL = """WITH dead AS (
  SELECT id FROM nodes
  WHERE deactivated_at IS NULL AND last_heartbeat_at <= %(cutoff)s
  ORDER BY last_heartbeat_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), freed AS (
  UPDATE licenses l SET node_id = NULL, last_released_at = %(now)s
  FROM dead WHERE l.node_id = dead.id
  RETURNING dead.id AS node_id, l.id AS license_id, l.pool_id
), gone AS (
  UPDATE nodes n SET deactivated_at = %(now)s FROM dead WHERE n.id = dead.id RETURNING n.id
)
SELECT gone.id, freed.license_id, freed.pool_id
FROM gone LEFT JOIN freed ON freed.node_id = gone.id ORDER BY gone.id"""

_LEASES = (
    "SELECT "
    + ", ".join(f"n.{c}" for c in _NODE_COLUMNS)
    + ", "
    + ", ".join(f"l.{c}" for c in _LICENSE_COLUMNS)
    + " FROM licenses l JOIN nodes n ON n.id = l.node_id WHERE n.deactivated_at IS NULL"
)
_LEASES_BY_POOL = {
    "any": _LEASES + " ORDER BY l.id",
    True: _LEASES + " AND l.pool_id IS NULL ORDER BY l.id",
    False: _LEASES + " AND l.pool_id = %s ORDER BY l.id",
}
# One pass over the licenses, grouped by pool; the holder is joined by primary key. PostgreSQL
# sorts NULL last by default, so the global pool is put first explicitly.
_COUNT_BY_POOL = (
    "SELECT l.pool_id, count(*), count(l.node_id), "
    "count(*) FILTER (WHERE l.node_id IS NULL AND "
    "(l.file_expires_at IS NULL OR l.file_expires_at >= %(now)s)), "
    "count(*) FILTER (WHERE l.file_expires_at < %(now)s), "
    "count(n.id) "
    "FROM licenses l LEFT JOIN nodes n ON n.id = l.node_id AND n.deactivated_at IS NULL "
    "GROUP BY l.pool_id ORDER BY l.pool_id NULLS FIRST"
)


def scan_sql(events: Sequence[EventType]) -> str:
    """`scan_audit`'s statement, with parameters `after` and `offset` (limit - 1). The page
    ends at the second of its `limit`-th row, found by the subquery's walk of the same index,
    so no second is split. The event ids are inlined (they are ints) so the planner can prove
    the list implies `relay_audit_lifecycle`'s WHERE clause and walk that index."""
    where = (
        "WHERE event_type_id IN ("
        + ", ".join(str(int(e)) for e in sorted(set(events)))
        + ") AND created_at > %(after)s"
    )
    return (
        "SELECT event_type_id, entity_id, pool_id, created_at "
        f"FROM audit_logs {where} AND created_at <= COALESCE("
        f"(SELECT created_at FROM audit_logs {where} "
        "ORDER BY created_at LIMIT 1 OFFSET %(offset)s), "
        f"{2**63 - 1}) ORDER BY created_at, id"
    )


_AUDIT = """SELECT a.id, a.event_type_id, a.entity_type_id, a.entity_id,
  CASE a.entity_type_id WHEN 1 THEN l.guid WHEN 2 THEN n.fingerprint WHEN 3 THEN ep.name END,
  a.pool_id, p.name, a.created_at
FROM audit_logs a
LEFT JOIN licenses l ON a.entity_type_id = 1 AND l.id = a.entity_id
LEFT JOIN nodes n ON a.entity_type_id = 2 AND n.id = a.entity_id
LEFT JOIN pools ep ON a.entity_type_id = 3 AND ep.id = a.entity_id
LEFT JOIN pools p ON p.id = a.pool_id"""
_AUDIT_INSERT = (
    "INSERT INTO audit_logs (event_type_id, entity_type_id, entity_id, pool_id, created_at) "
    "SELECT * FROM unnest(%s::smallint[], %s::smallint[], %s::bigint[], %s::bigint[], "
    "%s::bigint[])"
)


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


def _license(row: Sequence[Any]) -> License:
    return License(*row)


def _node(row: Sequence[Any]) -> Node:
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


class PostgresTransaction:
    """One unit of work on a connection the store lent us; see `relay_core.ports`."""

    __slots__ = ("_conn", "_translate")

    def __init__(
        self, conn: psycopg.Connection[Any], translate: Callable[[BaseException], StorageError]
    ) -> None:
        self._conn = conn
        self._translate = translate

    def _all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def _write(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
        """A statement whose result nobody reads."""
        try:
            self._conn.execute(sql, params)
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        try:
            return self._conn.execute(sql, params).fetchone()
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    # pools
    def get_pool(self, name: str) -> Pool | None:
        row = self._one("SELECT id, name, created_at FROM pools WHERE name = %s", (name,))
        return Pool(*row) if row else None

    def create_pool(self, name: str, now: int) -> Pool:
        row = self._one(
            "INSERT INTO pools (name, created_at) VALUES (%s, %s) RETURNING id, name, created_at",
            (name, now),
        )
        return Pool(*row)

    def list_pools(self) -> list[Pool]:
        return [Pool(*r) for r in self._all("SELECT id, name, created_at FROM pools ORDER BY id")]

    # licenses
    def insert_license(self, new: NewLicense, pool_id: int | None, now: int) -> License:
        try:
            # A savepoint, so a duplicate leaves the transaction usable: `Relay.add_licenses`
            # goes on inserting to report every duplicate of one call.
            with self._conn.transaction():
                row = self._conn.execute(
                    "INSERT INTO licenses (guid, file, key, pool_id, created_at, file_expires_at) "
                    f"VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_LICENSE}",
                    (new.guid, new.file, new.key, pool_id, now, new.file_expires_at),
                ).fetchone()
        except pg.UniqueViolation as exc:
            raise DuplicateLicenseError(new.guid) from exc
        except psycopg.Error as exc:
            raise self._translate(exc) from exc
        assert row is not None
        return _license(row)

    def get_license(self, guid: str) -> License | None:
        """The license with its row locked, and first its holder's node row: the order in which
        claims, releases and culls take them. So `relay del` of a license that a node is
        releasing through another replica waits for that release instead of deadlocking with
        it, and then reads the holder as it is now, not as it was a moment before (whose
        release the deletion would otherwise record a second time)."""
        row = self._one(f"SELECT {_LICENSE} FROM licenses WHERE guid = %s", (guid,))
        for _ in range(_HOLDER_ATTEMPTS):
            if row is None:
                return None
            holder = row[_NODE_ID]
            try:
                with self._conn.transaction():  # a savepoint: its locks go if the holder moved
                    if holder is not None:
                        self._conn.execute(_LOCK_NODE, (holder,))
                    row = self._conn.execute(_LOCK_LICENSE, (guid,)).fetchone()
                    if row is not None and row[_NODE_ID] != holder:
                        raise psycopg.Rollback()  # again, with the holder just read
            except psycopg.Error as exc:
                raise self._translate(exc) from exc
            if row is not None and row[_NODE_ID] == holder:
                return _license(row)
        raise StorageBusyError(f"license {guid} changed hands {_HOLDER_ATTEMPTS} times while read")

    def list_licenses(self, pool_id: PoolFilter) -> list[License]:
        if pool_id is ANY_POOL:
            rows = self._all(_LIST["any"])
        elif pool_id is None:
            rows = self._all(_LIST[True])
        else:
            rows = self._all(_LIST[False], (pool_id,))
        return [_license(r) for r in rows]

    def delete_license(self, license_id: int) -> None:
        self._write("DELETE FROM licenses WHERE id = %s", (license_id,))

    def has_free_license(self, pool_id: int | None, now: int) -> bool:
        row = self._one(_HAS_FREE[pool_id is None], {"pool": pool_id, "now": now})
        return bool(row[0])

    def lease_free_license(
        self, pool_id: int | None, node_id: int, strategy: Strategy, now: int, rng: random.Random
    ) -> License | None:
        params: dict[str, Any] = {"pool": pool_id, "node": node_id, "now": now}
        global_pool = pool_id is None
        try:
            if strategy is Strategy.RAND:
                params["draws"] = [rng.random() for _ in range(_DRAWS)]
                row = self._conn.execute(_LEASE_DRAWN[global_pool], params).fetchone()
                if row is None:
                    row = self._lease_nth(params, rng)
            else:
                row = self._conn.execute(_LEASE_ORDERED[strategy][global_pool], params).fetchone()
        except pg.UniqueViolation as exc:
            # licenses_node_key: the node already holds a license; another replica leased one
            # to the same fingerprint an instant ago.
            raise ClaimConflictError() from exc
        except psycopg.Error as exc:
            raise self._translate(exc) from exc
        return _license(row) if row else None

    def _lease_nth(self, params: dict[str, Any], rng: random.Random) -> Any:
        global_pool = params["pool"] is None
        free = self._conn.execute(_COUNT_FREE[global_pool], params).fetchone()
        if not free or not free[0]:
            return None
        params["offset"] = rng.randrange(free[0])
        return self._conn.execute(_LEASE_NTH[global_pool], params).fetchone()

    def release_license(self, license_id: int, now: int) -> None:
        self._write(
            "UPDATE licenses SET node_id = NULL, last_released_at = %s WHERE id = %s",
            (now, license_id),
        )

    # nodes
    def get_node_lease(self, fingerprint: str) -> tuple[Node, License | None] | None:
        row = self._one(_NODE_LEASE, {"fp": fingerprint})
        if row is None:
            return None
        held = _license(row[_NODE_FIELDS:]) if row[_NODE_FIELDS] is not None else None
        return _node(row[:_NODE_FIELDS]), held

    def activate_node(self, fingerprint: str, now: int) -> Node:
        row = self._one(
            "INSERT INTO nodes (fingerprint, created_at) VALUES (%s, %s) "
            "ON CONFLICT (fingerprint) DO UPDATE SET deactivated_at = NULL "
            f"RETURNING {_NODE}",
            (fingerprint, now),
        )
        return _node(row)

    def heartbeat_node(self, node_id: int, now: int) -> None:
        self._write("UPDATE nodes SET last_heartbeat_at = %s WHERE id = %s", (now, node_id))

    def deactivate_node(self, node_id: int, now: int) -> None:
        self._write(
            "UPDATE nodes SET deactivated_at = %s WHERE id = %s AND deactivated_at IS NULL",
            (now, node_id),
        )

    def get_node(self, node_id: int) -> Node | None:
        row = self._one(f"SELECT {_NODE} FROM nodes WHERE id = %s", (node_id,))
        return _node(row) if row else None

    def cull_batch(self, cutoff: int, now: int, limit: int) -> list[Culled]:
        rows = self._all(_CULL, {"cutoff": cutoff, "now": now, "limit": limit})
        return [Culled(node, lic, pool) for node, lic, pool in rows]

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
        if not entries:
            return
        self._write(
            _AUDIT_INSERT,
            (
                [int(e.event) for e in entries],
                [int(e.entity_type) for e in entries],
                [e.entity_id for e in entries],
                [e.pool_id for e in entries],
                [e.created_at for e in entries],
            ),
        )

    def read_audit(self, query: AuditQuery) -> list[AuditRecord]:
        where: list[str] = []
        params: list[Any] = []
        if query.pool_id is None:
            where.append("a.pool_id IS NULL")
        elif query.pool_id is not ANY_POOL:
            where.append("a.pool_id = %s")
            params.append(query.pool_id)
        if query.events:
            where.append("a.event_type_id = ANY(%s::smallint[])")
            params.append([int(e) for e in query.events])
        if query.since is not None:
            where.append("a.created_at >= %s")
            params.append(query.since)
        sql = _AUDIT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY a.id DESC LIMIT %s"
        params.append(query.limit)
        return [_record(r) for r in self._all(sql, params)]

    def scan_audit(
        self, events: Sequence[EventType], after: int | None, limit: int
    ) -> list[AuditRow]:
        if not events:
            return []
        params = {"after": after if after is not None else -(2**63), "offset": limit - 1}
        # Plain tuples of ints as they come (entity_id is BIGINT here, never text).
        rows: list[AuditRow] = self._all(scan_sql(events), params)
        return rows

    def license_holders(self) -> list[tuple[int, int | None, int | None]]:
        rows: list[tuple[int, int | None, int | None]] = self._all(
            "SELECT id, pool_id, node_id FROM licenses ORDER BY id"
        )
        return rows

    # denials; the global pool is stored as pool_id 0 (ids start at 1) so it has a primary key
    def add_denials(self, counts: Sequence[DenialCount]) -> None:
        if not counts:
            return
        self._write(
            # Summed first: one INSERT ... ON CONFLICT may not update a row twice, and a
            # batch may name one (pool, minute) more than once.
            "INSERT INTO relay_denials AS d (pool_id, minute, count) "
            "SELECT p, m, sum(c)::bigint FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) "
            "AS u(p, m, c) GROUP BY p, m "
            "ON CONFLICT (pool_id, minute) DO UPDATE SET count = d.count + excluded.count",
            (
                [c.pool_id or 0 for c in counts],
                [c.minute for c in counts],
                [c.count for c in counts],
            ),
        )

    def read_denials(self, since: int | None, until: int | None) -> list[DenialCount]:
        where: list[str] = []
        params: list[int] = []
        if since is not None:
            where.append("minute >= %s")
            params.append(since)
        if until is not None:
            where.append("minute < %s")
            params.append(until)
        sql = "SELECT pool_id, minute, count FROM relay_denials"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._all(sql + " ORDER BY minute, pool_id", params)
        return [DenialCount(r[0] or None, r[1], r[2]) for r in rows]

    # copying (relay_core.copying.CopyTransaction)
    def list_nodes(self) -> list[Node]:
        return [_node(r) for r in self._all(f"SELECT {_NODE} FROM nodes ORDER BY id")]

    def audit_page(self, after_id: int, limit: int) -> list[AuditRecord]:
        rows = self._all(_AUDIT + " WHERE a.id > %s ORDER BY a.id LIMIT %s", (after_id, limit))
        return [_record(r) for r in rows]

    def is_empty(self) -> bool:
        row = self._one(
            "SELECT NOT (EXISTS (SELECT 1 FROM pools) OR EXISTS (SELECT 1 FROM licenses) "
            "OR EXISTS (SELECT 1 FROM nodes) OR EXISTS (SELECT 1 FROM audit_logs) "
            "OR EXISTS (SELECT 1 FROM relay_denials))"
        )
        return bool(row[0])

    def import_rows(
        self,
        *,
        pools: Sequence[Pool] = (),
        nodes: Sequence[Node] = (),
        licenses: Sequence[License] = (),
        audit: Sequence[AuditRecord] = (),
    ) -> None:
        try:
            with self._conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO pools (id, name, created_at) VALUES (%s, %s, %s)",
                    [(p.id, p.name, p.created_at) for p in pools],
                )
                cur.executemany(
                    f"INSERT INTO nodes ({_NODE}) VALUES (%s, %s, %s, %s, %s)",
                    [
                        (n.id, n.fingerprint, n.last_heartbeat_at, n.created_at, n.deactivated_at)
                        for n in nodes
                    ],
                )
                cur.executemany(
                    f"INSERT INTO licenses ({_LICENSE}) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
                cur.executemany(
                    "INSERT INTO audit_logs "
                    "(id, event_type_id, entity_type_id, entity_id, pool_id, created_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    [
                        (
                            r.id,
                            int(r.event),
                            int(r.entity_type),
                            r.entity_id,
                            r.pool_id,
                            r.created_at,
                        )
                        for r in audit
                    ],
                )
                # Identity columns do not follow explicit ids: move each past the largest.
                for table in ("pools", "nodes", "licenses", "audit_logs"):
                    cur.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                    )
        except psycopg.Error as exc:
            raise self._translate(exc) from exc


if TYPE_CHECKING:
    from relay_core.copying import CopyTransaction
    from relay_core.ports import Transaction

    _: type[Transaction] = PostgresTransaction
    _copy: type[CopyTransaction] = PostgresTransaction

"""Heartbeats answered after one read, and written a moment later in batches.

Under load almost every request is a heartbeat: read the node's lease, set its
`last_heartbeat_at`, write two audit rows. In a transaction that is five round trips to the
server (BEGIN, the read, two writes, COMMIT) and as many waits for the GIL. `PostgresStore.run`
first tries the work on a `ProbeTransaction` instead: its reads run for real, one statement
each outside any transaction, and a heartbeat's writes are queued (`Pending`) rather than
sent. If the work turns out to be anything else (it activates, leases, releases, culls ...), the
probe raises `NotAHeartbeat` before any write, and the work runs again in a real transaction.

`relay_core.ports.CombiningStore` allows this: the answer comes before the commit, and the
queued rows are written within `FLUSH_INTERVAL` by a flusher thread, before any other work
of this store (any transaction first commits them in one of their own), and on `close()`.

The queued rows are written only for nodes that are still active and still hold the license
the heartbeat read (`_FLUSH`): if another replica released or culled the node meanwhile, its
late heartbeat is dropped rather than written after the release. That happens only to a
heartbeat answered in the last `FLUSH_INTERVAL` before its node was released elsewhere, or
before its lease expired (a node heartbeating that late loses its seat either way).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from relay_core.errors import StorageError
from relay_core.model import AuditEntry, EventType, License, Node, Pool

from .transaction import _HAS_FREE, _LICENSE_COLUMNS, _NODE_COLUMNS, _NODE_FIELDS

__all__ = ["FLUSH_INTERVAL", "MAX_PENDING", "NotAHeartbeat", "Pending", "ProbeTransaction"]

FLUSH_INTERVAL = 0.05
"""Seconds the flusher waits after the first queued heartbeat before it writes them all."""

MAX_PENDING = 10_000
"""Queued heartbeats past which the probe stops answering (the writes are failing)."""

_HEARTBEAT_EVENTS = frozenset({EventType.LICENSE_LEASE_EXTENDED, EventType.NODE_HEARTBEAT_PING})

# The read a heartbeat needs, without a row lock (a lock would need a transaction, and two more
# round trips): the flush checks again that the lease still holds.
_READ_LEASE = (
    "SELECT "
    + ", ".join(f"n.{c}" for c in _NODE_COLUMNS)
    + ", "
    + ", ".join(f"l.{c}" for c in _LICENSE_COLUMNS)
    + " FROM nodes n LEFT JOIN licenses l ON l.node_id = n.id"
    " WHERE n.fingerprint = %(fp)s AND n.deactivated_at IS NULL"
)

# The nodes' rows are locked in id order before the UPDATE touches them, so two replicas
# flushing heartbeats of the same nodes at once wait for each other instead of deadlocking.
_FLUSH = """WITH beat AS (
  SELECT * FROM unnest(%(nodes)s::bigint[], %(licenses)s::bigint[], %(at)s::bigint[])
    AS b(node_id, license_id, at)
), locked AS MATERIALIZED (
  SELECT id FROM nodes WHERE id = ANY(%(nodes)s::bigint[]) ORDER BY id FOR UPDATE
), live AS (
  UPDATE nodes n SET last_heartbeat_at = GREATEST(coalesce(n.last_heartbeat_at, b.at), b.at)
  FROM beat b JOIN licenses l ON l.id = b.license_id AND l.node_id = b.node_id
  WHERE n.id = b.node_id AND n.deactivated_at IS NULL AND n.id IN (SELECT id FROM locked)
  RETURNING n.id
)
INSERT INTO audit_logs (event_type_id, entity_type_id, entity_id, pool_id, created_at)
SELECT a.event, a.entity_type, a.entity_id, a.pool_id, a.at
FROM unnest(%(a_node)s::bigint[], %(a_event)s::smallint[], %(a_type)s::smallint[],
            %(a_entity)s::bigint[], %(a_pool)s::bigint[], %(a_at)s::bigint[])
  WITH ORDINALITY AS a(node_id, event, entity_type, entity_id, pool_id, at, n)
WHERE a.node_id IN (SELECT id FROM live)
ORDER BY a.n"""


class NotAHeartbeat(Exception):
    """The work needs more than a heartbeat: run it in a transaction."""


class ProbeTransaction:
    """Reads for real (outside a transaction); takes a heartbeat's writes; refuses the rest."""

    def __init__(
        self, conn: psycopg.Connection[Any], translate: Callable[[BaseException], StorageError]
    ) -> None:
        self._conn = conn
        self._translate = translate
        self.read: tuple[int, int] | None = None  # (node id, license id) of the lease read
        self.beat: tuple[int, int, int] | None = None  # (node id, license id, time)
        self.audit: list[AuditEntry] = []

    def _one(self, sql: str, params: dict[str, Any]) -> Any:
        try:
            # Binary results: a license file comes back as its bytes, not as hex text.
            return self._conn.execute(sql, params, binary=True).fetchone()
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def get_pool(self, name: str) -> Pool | None:
        row = self._one("SELECT id, name, created_at FROM pools WHERE name = %(n)s", {"n": name})
        return Pool(*row) if row else None

    def has_free_license(self, pool_id: int | None, now: int) -> bool:
        row = self._one(_HAS_FREE[pool_id is None], {"pool": pool_id, "now": now})
        return bool(row[0])

    def get_node_lease(self, fingerprint: str) -> tuple[Node, License | None] | None:
        if self.read is not None:
            raise NotAHeartbeat
        row = self._one(_READ_LEASE, {"fp": fingerprint})
        if row is None or row[_NODE_FIELDS] is None:
            raise NotAHeartbeat  # a new node, or one holding nothing: not a heartbeat
        node, held = Node(*row[:_NODE_FIELDS]), License(*row[_NODE_FIELDS:])
        self.read = (node.id, held.id)
        return node, held

    def heartbeat_node(self, node_id: int, now: int) -> None:
        if self.read is None or self.read[0] != node_id or self.beat is not None:
            raise NotAHeartbeat
        self.beat = (node_id, self.read[1], now)

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        if self.beat is None or any(e.event not in _HEARTBEAT_EVENTS for e in entries):
            raise NotAHeartbeat
        self.audit.extend(entries)

    def __getattr__(self, name: str) -> Any:
        # Every other primitive (activate, lease, release, cull, list ...) is not a heartbeat.
        raise NotAHeartbeat


class Pending:
    """Heartbeats answered and not yet written; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._beats: list[tuple[tuple[int, int, int], list[AuditEntry]]] = []

    def __len__(self) -> int:
        return len(self._beats)

    def add(self, beat: tuple[int, int, int], audit: list[AuditEntry]) -> bool:
        """Queue one heartbeat; True if it is the first one queued (start the flusher)."""
        with self._lock:
            self._beats.append((beat, audit))
            return len(self._beats) == 1

    def take(self) -> list[tuple[tuple[int, int, int], list[AuditEntry]]]:
        with self._lock:
            taken, self._beats = self._beats, []
            return taken

    def give_back(self, taken: list[tuple[tuple[int, int, int], list[AuditEntry]]]) -> None:
        """Requeue heartbeats whose write failed, ahead of the newer ones."""
        with self._lock:
            self._beats = taken + self._beats

    @staticmethod
    def write(
        conn: psycopg.Connection[Any], taken: list[tuple[tuple[int, int, int], list[AuditEntry]]]
    ) -> None:
        """Write `taken` in the connection's current transaction (one statement)."""
        if not taken:
            return
        latest: dict[int, tuple[int, int]] = {}
        for (node, lic, at), _ in taken:
            previous = latest.get(node)
            if previous is None or previous[1] <= at:
                latest[node] = (lic, at)
        rows = [(node, entry) for (node, _, _), audit in taken for entry in audit]
        conn.execute(
            _FLUSH,
            {
                "nodes": list(latest),
                "licenses": [lic for lic, _ in latest.values()],
                "at": [at for _, at in latest.values()],
                "a_node": [node for node, _ in rows],
                "a_event": [int(e.event) for _, e in rows],
                "a_type": [int(e.entity_type) for _, e in rows],
                "a_entity": [e.entity_id for _, e in rows],
                "a_pool": [e.pool_id for _, e in rows],
                "a_at": [e.created_at for _, e in rows],
            },
        )

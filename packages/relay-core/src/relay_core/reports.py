"""Usage reports: how many seats each pool used, per period, replayed from the audit log.

A lease counts from its `license.leased` row until the `license.released` or
`license.lease_expired` row of the same license; a node counts as present from
`node.activated` until `node.deactivated` or `node.culled`. The replay is one pass over those
lifecycle rows in time order (`UsageReplay.feed`), so a year of history is read in pages and
never held in memory. Heartbeat rows are not needed and never read.

License counts per period are replayed relative to the count now (`finish` is given it), so a
database whose early licenses were added before its audit log began still reports them.

A report that starts well after the log does (a dashboard's last 24 hours) need not replay the
years before it: `OpeningState` finds which leases were open and which nodes active at `since`
from the rows after it and the holders now, and `UsageReplay.seed` starts from there.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence

import attrs

from .model import AuditRow, DenialCount, EventType

__all__ = [
    "LIFECYCLE_EVENTS",
    "WEEK_ORIGIN",
    "DenialTally",
    "OpeningState",
    "PoolUsage",
    "UsageReplay",
    "period_bounds",
]

LIFECYCLE_EVENTS: tuple[EventType, ...] = (
    EventType.LICENSE_ADDED,
    EventType.LICENSE_REMOVED,
    EventType.LICENSE_LEASED,
    EventType.LICENSE_RELEASED,
    EventType.LICENSE_LEASE_EXPIRED,
    EventType.NODE_ACTIVATED,
    EventType.NODE_DEACTIVATED,
    EventType.NODE_CULLED,
)
"""The audit events a report replays: everything but heartbeats and `pool.added`."""

WEEK_ORIGIN = 4 * 86400
"""1970-01-05T00:00Z, a Monday: periods are aligned to multiples of `every` from here, so hours
start on the hour, days at midnight UTC and weeks on Mondays."""


def period_bounds(since: int, until: int, every: int | None) -> list[tuple[int, int]]:
    """The periods `[start, end)` covering `[since, until)`: one, or aligned steps of `every`.

    The first and last periods are cut at `since` and `until`.
    """
    if until <= since:
        return []
    if every is None:
        return [(since, until)]
    if every <= 0:
        raise ValueError("every must be positive")
    bounds: list[tuple[int, int]] = []
    start = since
    edge = since - (since - WEEK_ORIGIN) % every + every
    while start < until:
        end = min(edge, until)
        bounds.append((start, end))
        start, edge = end, edge + every
    return bounds


@attrs.frozen
class PoolUsage:
    """One pool's usage over one period `[start, end)`; `pool` None is the global pool."""

    pool: str | None
    start: int
    end: int
    licenses: int
    """Licenses in the pool at the end of the period."""
    peak_leases: int
    average_leases: float
    seat_hours: float
    utilisation: float
    """Seat-time used over seat-time available, in percent (0 when the pool had no license)."""
    leases_granted: int
    leases_expired: int
    """Leases ended by a cull: nodes that stopped heartbeating without releasing."""
    distinct_nodes: int
    denials: int
    """Claims answered 410 (no free license)."""


@attrs.define
class _Period:
    peak: int = 0
    seat_seconds: int = 0
    license_seconds: int = 0
    licenses_at_end: int = 0
    granted: int = 0
    expired: int = 0
    nodes: int = 0
    denials: int = 0


@attrs.define
class _Pool:
    """A pool's live state during the replay, and its periods."""

    periods: list[_Period]
    leased: int = 0
    licenses: int = 0
    """Relative to the start of the replay; `finish` shifts it to the true count."""
    active: set[int] = attrs.Factory(set)
    reset_for: int = -1
    """The period whose peak was last reset at its first instant."""


_NOT_YET = -1
_NEVER = 2**63
_ADDED = int(EventType.LICENSE_ADDED)
_REMOVED = int(EventType.LICENSE_REMOVED)
_LEASED = int(EventType.LICENSE_LEASED)
_RELEASED = int(EventType.LICENSE_RELEASED)
_EXPIRED = int(EventType.LICENSE_LEASE_EXPIRED)
_ACTIVATED = int(EventType.NODE_ACTIVATED)
_DEACTIVATED = int(EventType.NODE_DEACTIVATED)
_CULLED = int(EventType.NODE_CULLED)
_LEASE_ENDS = frozenset({_RELEASED, _EXPIRED})
_NODE_ENDS = frozenset({_DEACTIVATED, _CULLED})
_LICENSE_CHANGES = frozenset({_ADDED, _REMOVED})


class UsageReplay:
    """Feeds lifecycle rows (oldest first) through the periods; `finish` gives the report.

    Rows must come in (created_at, id) order; rows after the last period still move the
    license counts, which `finish` needs to line them up with the count now.
    """

    def __init__(self, bounds: Sequence[tuple[int, int]]) -> None:
        self._bounds = list(bounds)
        self._starts = [start for start, _ in self._bounds]
        self._pools: dict[int | None, _Pool] = {}
        self._k = _NOT_YET
        """The index of the period the replay is in; len(bounds) once past the last."""
        self._lease_pool: dict[int, int | None] = {}
        self._node_pool: dict[int, int | None] = {}
        self._activated_at: dict[int, int] = {}
        self._counted_in: dict[tuple[int, int | None], int] = {}
        """(node id, pool) -> the period it was last counted in, so it counts once per period."""

    def seed(
        self, leases: Mapping[int, int | None], nodes: Mapping[int, int | None], at: int
    ) -> None:
        """Start from the leases open (license id -> pool) and nodes active (node id -> pool)
        at `at`, before any row is fed; rows from `at` on follow."""
        for license_id, pool_id in leases.items():
            self._lease_pool[license_id] = pool_id
            self._pool(pool_id).leased += 1
        for node_id, pool_id in nodes.items():
            self._node_pool[node_id] = pool_id
            self._activated_at[node_id] = at - 1
            self._pool(pool_id).active.add(node_id)

    def _pool(self, pool_id: int | None) -> _Pool:
        found = self._pools.get(pool_id)
        if found is None:
            found = _Pool([_Period() for _ in self._bounds])
            self._pools[pool_id] = found
        return found

    def _advance(self, now: int) -> None:
        """Close every period that ends at or before `now`, opening the next one.

        A period's seat- and license-seconds start as if the counts at its opening held to
        its end; each change at `t` then adds or takes away the rest, `(end - t)` per seat.
        """
        bounds = self._bounds
        while self._k < len(bounds):
            edge = bounds[0][0] if self._k == _NOT_YET else bounds[self._k][1]
            if now < edge:
                return
            if self._k != _NOT_YET:
                for pool in self._pools.values():
                    pool.periods[self._k].licenses_at_end = pool.licenses
            self._k = 0 if self._k == _NOT_YET else self._k + 1
            if self._k < len(bounds):
                span = bounds[self._k][1] - edge
                for pool in self._pools.values():
                    period = pool.periods[self._k]
                    period.peak = pool.leased
                    period.nodes = len(pool.active)
                    period.seat_seconds = pool.leased * span
                    period.license_seconds = pool.licenses * span

    def feed(self, rows: Iterable[AuditRow]) -> None:
        # The hot loop of a report (a year can be millions of rows): locals, plain int event
        # ids (hashing an IntEnum member runs Python code), period edges checked inline, and
        # seat-time summed only where a count changes (see `_advance`).
        bounds = self._bounds
        n_bounds = len(bounds)
        pools = self._pools
        lease_pool = self._lease_pool
        node_pool = self._node_pool
        activated_at = self._activated_at
        counted_in = self._counted_in
        k = self._k
        edge = self._edge()
        in_period = 0 <= k < n_bounds
        start, end = bounds[k] if in_period else (0, 0)
        for event, entity, row_pool, now in rows:
            if now >= edge:
                self._advance(now)
                k = self._k
                edge = self._edge()
                in_period = k < n_bounds
                start, end = bounds[k] if in_period else (0, 0)
            if event == _LEASED:
                pool = pools.get(row_pool) or self._pool(row_pool)
                ended = lease_pool.get(entity, _NOT_YET)
                if ended != _NOT_YET:  # a lease never seen ending: end it here
                    other = pools[ended]
                    other.leased -= 1
                    if in_period:
                        other.periods[k].seat_seconds -= end - now
                lease_pool[entity] = row_pool
                leased = pool.leased = pool.leased + 1
                if in_period:
                    period = pool.periods[k]
                    if now == start and pool.reset_for != k:
                        # The state just before the period's first instant is not part of it.
                        period.peak = 0
                        pool.reset_for = k
                    period.seat_seconds += end - now
                    period.granted += 1
                    period.peak = max(period.peak, leased)
                continue
            if event in _LEASE_ENDS:
                if entity not in lease_pool:
                    continue  # leased before the audit log began: nothing to end
                pool = pools[lease_pool.pop(entity)]
                pool.leased -= 1
                if in_period:
                    period = pool.periods[k]
                    period.seat_seconds -= end - now
                    if event == _EXPIRED:
                        period.expired += 1
                    if now == start:
                        self._first_instant(pool, k)
                continue
            if event == _ACTIVATED:
                node_pool[entity] = row_pool
                activated_at[entity] = now
                pool = pools.get(row_pool) or self._pool(row_pool)
                pool.active.add(entity)
                if in_period:
                    key = (entity, row_pool)
                    if counted_in.get(key) != k:
                        pool.periods[k].nodes += 1
                        counted_in[key] = k
                    if now == start:
                        self._first_instant(pool, k)
                continue
            if event in _NODE_ENDS:
                pool_id = node_pool.pop(entity, row_pool)
                pool = pools.get(pool_id) or self._pool(pool_id)
                pool.active.discard(entity)
                since = activated_at.pop(entity, None)
                if in_period:
                    if since is not None and since < start:
                        if now == start:
                            pool.periods[k].nodes -= 1  # gone at the first instant: not in it
                        else:
                            # Counted among the nodes present when the period began: a
                            # reactivation later in this period is the same node.
                            counted_in[entity, pool_id] = k
                    if now == start:
                        self._first_instant(pool, k)
                continue
            pool = pools.get(row_pool) or self._pool(row_pool)
            if event in _LICENSE_CHANGES:
                step = 1 if event == _ADDED else -1
                pool.licenses += step
                if in_period:
                    pool.periods[k].license_seconds += step * (end - now)
            if in_period and now == start:
                self._first_instant(pool, k)

    @staticmethod
    def _first_instant(pool: _Pool, k: int) -> None:
        """A row of `pool` at period `k`'s first instant, after its change: the peak counts
        from the state after the first instant's rows, not the one just before."""
        period = pool.periods[k]
        if pool.reset_for != k:
            period.peak = 0
            pool.reset_for = k
        period.peak = max(period.peak, pool.leased)

    def _edge(self) -> int:
        """The time at which the replay next crosses a period edge."""
        if self._k == _NOT_YET:
            return self._bounds[0][0] if self._bounds else _NEVER
        if self._k < len(self._bounds):
            return self._bounds[self._k][1]
        return _NEVER

    def finish(
        self,
        licenses_now: Mapping[int | None, int],
        denials: Iterable[DenialCount],
        pool_names: Mapping[int | None, str | None],
    ) -> list[PoolUsage]:
        """The report, for the pools in `pool_names` (in that order)."""
        if self._bounds:
            self._advance(self._bounds[-1][1])
        for pool_id in pool_names:
            self._pool(pool_id)
        for denial in denials:
            index = bisect_right(self._starts, denial.minute) - 1
            pool = self._pools.get(denial.pool_id)
            if pool is not None and index >= 0 and denial.minute < self._bounds[index][1]:
                pool.periods[index].denials += denial.count
        report: list[PoolUsage] = []
        for pool_id, name in pool_names.items():
            pool = self._pools[pool_id]
            offset = licenses_now.get(pool_id, 0) - pool.licenses
            for (start, end), p in zip(self._bounds, pool.periods, strict=True):
                span = end - start
                capacity = p.license_seconds + offset * span
                report.append(
                    PoolUsage(
                        pool=name,
                        start=start,
                        end=end,
                        licenses=p.licenses_at_end + offset,
                        peak_leases=p.peak,
                        average_leases=p.seat_seconds / span,
                        seat_hours=p.seat_seconds / 3600,
                        utilisation=100 * p.seat_seconds / capacity if capacity > 0 else 0.0,
                        leases_granted=p.granted,
                        leases_expired=p.expired,
                        distinct_nodes=p.nodes,
                        denials=p.denials,
                    )
                )
        return report

    def seen(self) -> set[int | None]:
        """Every pool a fed row named."""
        return set(self._pools)


class OpeningState:
    """Which leases were open and which nodes active at a moment, from the rows after it.

    Feed it the lifecycle rows from that moment on (oldest first): an entity whose first row is
    an ending was open then; one whose first row is a beginning was not; one with no row since
    is open exactly if it is held now (`finish` is told which licenses are held, by whom).
    """

    def __init__(self) -> None:
        self._leases: dict[int, int | None] = {}
        self._nodes: dict[int, int | None] = {}
        self._seen_leases: set[int] = set()
        self._seen_nodes: set[int] = set()

    def feed(self, rows: Iterable[AuditRow]) -> None:
        seen_leases, seen_nodes = self._seen_leases, self._seen_nodes
        for event, entity, pool_id, _ in rows:
            if event == _LEASED or event in _LEASE_ENDS:
                if entity not in seen_leases:
                    seen_leases.add(entity)
                    if event != _LEASED:
                        self._leases[entity] = pool_id
            elif (event == _ACTIVATED or event in _NODE_ENDS) and entity not in seen_nodes:
                seen_nodes.add(entity)
                if event != _ACTIVATED:
                    self._nodes[entity] = pool_id

    def finish(
        self, holders: Iterable[tuple[int, int | None, int | None]]
    ) -> tuple[dict[int, int | None], dict[int, int | None]]:
        """(open leases, active nodes), each id -> pool, given ``(license, pool, node)`` now."""
        for license_id, pool_id, node_id in holders:
            if node_id is None:
                continue
            if license_id not in self._seen_leases:
                self._leases[license_id] = pool_id
            if node_id not in self._seen_nodes:
                self._nodes[node_id] = pool_id
        return self._leases, self._nodes


class DenialTally:
    """Claims answered 410, counted per (pool, minute) in memory until `drain`.

    A node looping on an empty pool then costs a dictionary update per request, and the
    database one counter row per pool and minute, written in the background.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str | None, int], int] = {}

    def record(self, pool: str | None, now: int) -> None:
        key = (pool or None, now - now % 60)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def drain(self) -> dict[tuple[str | None, int], int]:
        """Take every count so far, leaving the tally empty."""
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts

    def restore(self, counts: Mapping[tuple[str | None, int], int]) -> None:
        """Put back counts that could not be written, to be retried with the next drain."""
        with self._lock:
            for key, count in counts.items():
                self._counts[key] = self._counts.get(key, 0) + count

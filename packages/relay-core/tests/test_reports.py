"""Usage reports: the replay against hand-computed figures and against a brute-force model."""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relay_core import Relay
from relay_core.errors import NoLicensesAvailableError
from relay_core.model import DenialCount, EventType
from relay_core.ports import AuditQuery
from relay_core.reports import (
    LIFECYCLE_EVENTS,
    WEEK_ORIGIN,
    DenialTally,
    OpeningState,
    UsageReplay,
    period_bounds,
)
from relay_core.testing import FrozenClock, MemoryStore
from relay_core.testing.keygen_writer import LicenseWriter
from relay_core.testing.memory import MemoryTransaction

E = EventType


class AuditEvent(NamedTuple):
    """An audit row with names and its id, for readable tests; `_plain` makes `AuditRow`s."""

    id: int
    event: int
    entity_id: int
    pool_id: int | None
    created_at: int


def _plain(rows: list[AuditEvent]) -> list[tuple[int, int, int | None, int]]:
    """What `scan_audit` hands the replay: (event, entity_id, pool_id, created_at)."""
    return [(r.event, r.entity_id, r.pool_id, r.created_at) for r in rows]


H = 3600
DAY = 86400
T0 = 1_764_547_200  # 2025-12-01T00:00:00Z, a Monday


def test_periods_align_to_hours_days_and_monday_weeks() -> None:
    assert period_bounds(T0 + 90, T0 + 2 * H + 30, H) == [
        (T0 + 90, T0 + H),
        (T0 + H, T0 + 2 * H),
        (T0 + 2 * H, T0 + 2 * H + 30),
    ]
    assert period_bounds(T0 + 5, T0 + 5 + 3 * DAY, DAY)[1] == (T0 + DAY, T0 + 2 * DAY)
    assert (T0 - WEEK_ORIGIN) % (7 * DAY) == 0  # T0 is a Monday
    assert period_bounds(T0 + DAY, T0 + 9 * DAY, 7 * DAY) == [
        (T0 + DAY, T0 + 7 * DAY),
        (T0 + 7 * DAY, T0 + 9 * DAY),
    ]
    assert period_bounds(T0, T0 + 10, None) == [(T0, T0 + 10)]
    assert period_bounds(T0, T0, H) == []


def _rows(*events: tuple[EventType, int, int | None, int]) -> list[AuditEvent]:
    return [AuditEvent(i + 1, e, entity, pool, t) for i, (e, entity, pool, t) in enumerate(events)]


def test_hand_computed_day_of_two_licenses() -> None:
    """Two licenses, three leases over two hours; one lease open at `since`, one culled."""
    rows = _rows(
        (E.LICENSE_ADDED, 1, None, T0 - DAY),
        (E.LICENSE_ADDED, 2, None, T0 - DAY),
        (E.NODE_ACTIVATED, 10, None, T0 - 600),
        (E.LICENSE_LEASED, 1, None, T0 - 600),  # open at since: counts from T0
        (E.NODE_ACTIVATED, 11, None, T0 + 1800),
        (E.LICENSE_LEASED, 2, None, T0 + 1800),
        (E.LICENSE_RELEASED, 1, None, T0 + 3600),
        (E.NODE_DEACTIVATED, 10, None, T0 + 3600),
        (E.NODE_ACTIVATED, 12, None, T0 + 4500),
        (E.LICENSE_LEASED, 1, None, T0 + 4500),
        (E.LICENSE_LEASE_EXPIRED, 2, None, T0 + 5400),
        (E.NODE_CULLED, 11, None, T0 + 5400),
    )
    replay = UsageReplay(period_bounds(T0, T0 + 2 * H, H))
    replay.feed(_plain(rows))
    denials = [DenialCount(None, T0 + 60, 3), DenialCount(None, T0 + 4000, 2)]
    hour1, hour2 = replay.finish({None: 2}, denials, {None: None})
    # Hour 1: license 1 all hour (3600 s), license 2 from :30 (1800 s).
    assert (hour1.start, hour1.end, hour1.licenses) == (T0, T0 + H, 2)
    assert hour1.seat_hours == 1.5
    assert hour1.average_leases == 1.5
    assert hour1.utilisation == 75.0
    assert (hour1.peak_leases, hour1.leases_granted, hour1.leases_expired) == (2, 1, 0)
    assert (hour1.distinct_nodes, hour1.denials) == (2, 3)
    # Hour 2: license 2 until 1:30 (1800 s), license 1 from 1:15 (2700 s).
    assert hour2.seat_hours == 1.25
    assert hour2.utilisation == 62.5
    assert (hour2.peak_leases, hour2.leases_granted, hour2.leases_expired) == (2, 1, 1)
    assert (hour2.distinct_nodes, hour2.denials) == (2, 2)


def test_licenses_added_before_the_log_are_counted_from_the_count_now() -> None:
    """A database whose licenses predate its audit log still reports their capacity."""
    replay = UsageReplay(period_bounds(T0, T0 + 2 * H, H))
    rows = _rows((E.LICENSE_ADDED, 5, 7, T0 + H), (E.LICENSE_REMOVED, 5, 7, T0 + 3 * H))
    replay.feed(_plain(rows))
    first, second = replay.finish({7: 3}, [], {7: "prod"})
    assert (first.pool, first.licenses, second.licenses) == ("prod", 3, 4)


# -- the brute-force model ----------------------------------------------------------------


@attrs.frozen
class _Interval:
    pool: int | None
    start: int
    end: int | None  # None: still open
    start_row: int
    end_row: int | None


def _intervals(
    rows: list[AuditEvent], opens: set[EventType], closes: set[EventType]
) -> list[_Interval]:
    found: list[_Interval] = []
    open_: dict[int, tuple[int | None, int, int]] = {}
    for r in rows:
        if r.event in opens:
            open_[r.entity_id] = (r.pool_id, r.created_at, r.id)
        elif r.event in closes and r.entity_id in open_:
            pool, start, start_row = open_.pop(r.entity_id)
            found.append(_Interval(pool, start, r.created_at, start_row, r.id))
    found += [_Interval(p, s, None, row, None) for p, s, row in open_.values()]
    return found


@st.composite
def _histories(draw: st.DrawFn) -> list[AuditEvent]:
    """A consistent history: licenses added/removed, claimed, released and culled."""
    pool_of: dict[int, int | None] = {}
    holder: dict[int, int] = {}  # license -> node
    active: dict[int, int] = {}  # node -> license
    t = T0 + draw(st.integers(0, 50))
    rows: list[AuditEvent] = []
    next_license = 1

    def emit(event: EventType, entity: int, pool: int | None) -> None:
        rows.append(AuditEvent(len(rows) + 1, event, entity, pool, t))

    for _ in range(draw(st.integers(0, 40))):
        t += draw(st.sampled_from([0, 0, 1, 7, 30, 45]))
        op = draw(st.sampled_from(["add", "remove", "claim", "release", "cull"]))
        if op == "add":
            pool_of[next_license] = draw(st.sampled_from([None, 1]))
            emit(E.LICENSE_ADDED, next_license, pool_of[next_license])
            next_license += 1
        elif op == "remove":
            free = sorted(lic for lic in pool_of if lic not in holder)
            if free:
                lic = draw(st.sampled_from(free))
                emit(E.LICENSE_REMOVED, lic, pool_of.pop(lic))
        elif op == "claim":
            free = sorted(lic for lic in pool_of if lic not in holder)
            idle = sorted(n for n in range(1, 6) if n not in active)
            if free and idle:
                lic, node = draw(st.sampled_from(free)), draw(st.sampled_from(idle))
                holder[lic], active[node] = node, lic
                emit(E.NODE_ACTIVATED, node, pool_of[lic])
                emit(E.LICENSE_LEASED, lic, pool_of[lic])
        elif active:
            node = draw(st.sampled_from(sorted(active)))
            lic = active.pop(node)
            del holder[lic]
            culled = op == "cull"
            emit(E.LICENSE_LEASE_EXPIRED if culled else E.LICENSE_RELEASED, lic, pool_of[lic])
            emit(E.NODE_CULLED if culled else E.NODE_DEACTIVATED, node, pool_of[lic])
    return rows


@settings(max_examples=300, deadline=None)
@given(
    rows=_histories(),
    since_offset=st.integers(0, 400),
    length=st.integers(1, 900),
    every=st.sampled_from([None, 7, 60, 100]),
)
def test_replay_matches_a_brute_force_count(
    rows: list[AuditEvent], since_offset: int, length: int, every: int | None
) -> None:
    since = T0 + since_offset
    until = since + length
    bounds = period_bounds(since, until, every)
    replay = UsageReplay(bounds)
    replay.feed(_plain(rows))
    licenses_now: dict[int | None, int] = {None: 0, 1: 0}
    for r in rows:
        if r.event is E.LICENSE_ADDED:
            licenses_now[r.pool_id] += 1
        elif r.event is E.LICENSE_REMOVED:
            licenses_now[r.pool_id] -= 1
    report = replay.finish(licenses_now, [], {None: None, 1: "one"})
    leases = _intervals(rows, {E.LICENSE_LEASED}, {E.LICENSE_RELEASED, E.LICENSE_LEASE_EXPIRED})
    nodes = _intervals(rows, {E.NODE_ACTIVATED}, {E.NODE_DEACTIVATED, E.NODE_CULLED})
    by_key = {(u.pool, u.start): u for u in report}
    assert len(report) == 2 * len(bounds)
    for pool, name in ((None, None), (1, "one")):
        mine = [lease for lease in leases if lease.pool == pool]
        for start, end in bounds:
            got = by_key[(name, start)]
            seat = sum(
                max(0, min(end, x.end if x.end is not None else end) - max(start, x.start))
                for x in mine
            )
            assert got.seat_hours * 3600 == pytest.approx(seat)
            assert got.leases_granted == sum(1 for x in mine if start <= x.start < end)
            assert got.leases_expired == sum(
                1
                for r in rows
                if r.event is E.LICENSE_LEASE_EXPIRED
                and r.pool_id == pool
                and start <= r.created_at < end
            )

            # Peak: the open count after each of the pool's rows in the period, and before
            # them when none falls on the period's first instant.
            def open_after(row_id: int, mine: list[_Interval] = mine) -> int:
                return sum(
                    1
                    for x in mine
                    if x.start_row <= row_id and (x.end_row is None or x.end_row > row_id)
                )

            in_period = [r for r in rows if r.pool_id == pool and start <= r.created_at < end]
            peaks = [open_after(r.id) for r in in_period]
            if not any(r.created_at == start for r in in_period):
                peaks.append(
                    sum(1 for x in mine if x.start < start and (x.end is None or x.end > start))
                )
            assert got.peak_leases == max(peaks)
            present = {
                i.start_row
                for i in nodes
                if i.pool == pool
                and i.start < end
                and (i.end is None or i.end > start or i.start >= start)
            }
            node_ids = {r.entity_id for r in rows if r.id in present}
            assert got.distinct_nodes == len(node_ids)
            later = [r for r in rows if r.pool_id == pool and r.created_at >= end]
            assert got.licenses == licenses_now[pool] - sum(
                1 for r in later if r.event is E.LICENSE_ADDED
            ) + sum(1 for r in later if r.event is E.LICENSE_REMOVED)


# -- through Relay ------------------------------------------------------------------------


def test_denials_are_counted_in_memory_and_flushed_per_minute() -> None:
    """100 refused claims add no audit row, and one counter row per pool and minute."""
    store = MemoryStore()
    clock = FrozenClock(T0 + 30)
    relay = Relay(store, clock=clock)
    writer = LicenseWriter.ed25519()
    raw = writer.license(key="K-prod", issued=T0 - 10)
    relay.add_licenses([(raw, "K-prod")], public_key=writer.public_key, pool="prod")
    relay.claim("holder", "prod")
    with store.transaction() as tx:
        audit_rows = len(tx.read_audit(_ALL))
    for n in range(100):
        if n == 50:
            clock.advance(60)
        with pytest.raises(NoLicensesAvailableError):
            relay.claim(f"fp-{n}", "prod")
    with store.transaction() as tx:
        assert len(tx.read_audit(_ALL)) == audit_rows
        assert tx.read_denials(None, None) == []
    assert relay.flush_denials() == 100
    assert relay.flush_denials() == 0
    with store.transaction() as tx:
        pool = tx.get_pool("prod")
        assert pool is not None
        assert tx.read_denials(None, None) == [
            DenialCount(pool.id, T0, 50),
            DenialCount(pool.id, T0 + 60, 50),
        ]
    (usage,) = relay.usage_report(since=T0, until=T0 + 300)
    assert (usage.pool, usage.denials, usage.licenses, usage.peak_leases) == ("prod", 100, 1, 1)


def test_a_failed_flush_keeps_its_counts() -> None:
    tally = DenialTally()
    tally.record(None, T0 + 5)
    tally.record("prod", T0 + 70)
    counts = tally.drain()
    assert tally.drain() == {}
    tally.restore(counts)
    tally.record(None, T0 + 59)
    assert tally.drain() == {(None, T0): 2, ("prod", T0 + 60): 1}


def test_report_names_every_pool_and_a_busy_global_pool() -> None:
    store = MemoryStore()
    clock = FrozenClock(T0)
    relay = Relay(store, clock=clock)
    writer = LicenseWriter.ed25519()
    for pool in (None, "prod", "test"):
        raw = writer.license(key=f"K-{pool}", issued=T0 - 10)
        relay.add_licenses([(raw, f"K-{pool}")], public_key=writer.public_key, pool=pool)
    relay.claim("a")
    clock.advance(1800)
    relay.release("a")
    clock.advance(1800)
    usage = relay.usage_report(since=T0, until=T0 + H)
    assert [(u.pool, u.seat_hours, u.leases_granted) for u in usage] == [
        (None, 0.5, 1),
        ("prod", 0.0, 0),
        ("test", 0.0, 0),
    ]
    (only,) = relay.usage_report(since=T0, until=T0 + H, pool="test")
    assert (only.pool, only.licenses) == ("test", 1)


_ALL = AuditQuery(limit=10_000)


@settings(max_examples=300, deadline=None)
@given(
    rows=_histories(),
    since_offset=st.integers(0, 400),
    length=st.integers(1, 900),
    every=st.sampled_from([None, 7, 60]),
)
def test_a_replay_seeded_at_since_matches_a_replay_from_the_start(
    rows: list[AuditEvent], since_offset: int, length: int, every: int | None
) -> None:
    """Skipping the rows before `since` (OpeningState + seed) changes no figure."""
    since = T0 + since_offset
    bounds = period_bounds(since, since + length, every)
    licenses_now: dict[int | None, int] = {None: 0, 1: 0}
    pool_of: dict[int, int | None] = {}
    holder: dict[int, int] = {}
    node_of: dict[int, int] = {}  # license -> the node that last leased it
    for r in rows:
        if r.event is E.LICENSE_ADDED:
            licenses_now[r.pool_id] += 1
            pool_of[r.entity_id] = r.pool_id
        elif r.event is E.LICENSE_REMOVED:
            licenses_now[r.pool_id] -= 1
            del pool_of[r.entity_id]
        elif r.event is E.NODE_ACTIVATED:
            last_node = r.entity_id
        elif r.event is E.LICENSE_LEASED:
            holder[r.entity_id] = node_of[r.entity_id] = last_node
        elif r.event in (E.LICENSE_RELEASED, E.LICENSE_LEASE_EXPIRED):
            del holder[r.entity_id]
    holders = [(lic, pool, holder.get(lic)) for lic, pool in sorted(pool_of.items())]
    names: dict[int | None, str | None] = {None: None, 1: "one"}

    full = UsageReplay(bounds)
    full.feed(_plain(rows))
    later = [r for r in rows if r.created_at >= since]
    opening = OpeningState()
    opening.feed(_plain(later))
    seeded = UsageReplay(bounds)
    seeded.seed(*opening.finish(holders), at=since)
    seeded.feed(_plain(later))
    assert seeded.finish(licenses_now, [], names) == full.finish(licenses_now, [], names)


class _CountingTransaction(MemoryTransaction):
    scanned: ClassVar[list[int]] = []

    def scan_audit(self, *args: Any) -> Any:
        rows = super().scan_audit(*args)
        self.scanned.append(len(rows))
        return rows


def test_relay_skips_the_rows_before_since_and_reports_the_same() -> None:
    """Through `Relay`: a report starting after the log began reads only the rows after it."""
    store = MemoryStore()
    clock = FrozenClock(T0 - 10 * DAY)
    relay = Relay(store, clock=clock)
    writer = LicenseWriter.ed25519()
    relay.add_licenses(
        [(writer.license(key=f"K{n}", issued=T0 - 20 * DAY), f"K{n}") for n in range(3)],
        public_key=writer.public_key,
    )
    for day in range(10):
        relay.claim(f"long-{day}")  # held across the nights, released the next evening
        clock.advance(DAY // 2)
        relay.claim(f"short-{day}")
        clock.advance(DAY // 4)
        relay.release(f"short-{day}")
        if day:
            relay.release(f"long-{day - 1}")
        clock.advance(DAY // 4)
    clock.advance(H)
    since, until = T0 - 3 * DAY + H // 2, T0 + H
    store.transaction_type = _CountingTransaction
    got = relay.usage_report(since=since, until=until, every=DAY)
    store.transaction_type = MemoryTransaction
    # 3 days of 3 leases (4 rows each) plus the held one's end, twice, and the one-row probe.
    assert sum(_CountingTransaction.scanned) <= 2 * (3 * 3 * 4 + 2) + 1
    replay = UsageReplay(period_bounds(since, until, DAY))
    with store.transaction() as tx:
        replay.feed(tx.scan_audit(LIFECYCLE_EVENTS, None, 10_000))
    expected = replay.finish({None: 3}, [], {None: None})
    assert got == expected
    assert [u.peak_leases for u in got] == [3, 3, 3, 1]  # two longs overlap a short
    assert got[0].seat_hours > 0


def test_a_report_reaching_into_the_future_ends_now() -> None:
    """A lease open now is not counted into hours that have not happened yet."""
    clock = FrozenClock(T0)
    relay = Relay(MemoryStore(), clock=clock)
    writer = LicenseWriter.ed25519()
    relay.add_license(writer.license(key="K", issued=T0 - 10), "K", public_key=writer.public_key)
    relay.claim("a")
    clock.advance(1799)
    usage = relay.usage_report(since=T0, until=T0 + 4 * H, every=H)
    assert [(u.start, u.end, u.seat_hours) for u in usage] == [(T0, T0 + 1800, 0.5)]
    assert relay.usage_report(since=T0 + H, until=T0 + 2 * H) == []

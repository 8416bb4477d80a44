"""The operator's use cases (leases, pool counts, force-release) and the domain events."""

from __future__ import annotations

import pytest
from relay_core import (
    ActiveLease,
    ClaimConflictError,
    ClaimNotFoundError,
    ClaimResult,
    EventType,
    LeaseNotFoundError,
    NoLicensesAvailableError,
    PoolNotFoundError,
    PoolStats,
    Relay,
    ReleaseResult,
)
from relay_core.testing import FrozenClock, LicenseWriter, MemoryStore
from relay_core.testing.clock import to_timestamp

NOW = to_timestamp("2026-11-28T12:00:00Z")


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, object, object]] = []

    def on_claim(self, pool: str | None, result: ClaimResult) -> None:
        self.seen.append(("claim", pool, result))

    def on_release(self, pool: str | None, result: ReleaseResult) -> None:
        self.seen.append(("release", pool, result))

    def on_cull(self, culled: int, released: int) -> None:
        self.seen.append(("cull", culled, released))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def relay(clock: FrozenClock, recorder: Recorder, writer: LicenseWriter) -> Relay:
    relay = Relay(MemoryStore(), clock=clock, ttl=60, events=recorder)
    files = [(writer.license(key=f"G{n}", issued=NOW - 60), f"G{n}") for n in range(2)]
    relay.add_licenses(files, public_key=writer.public_key)
    expiring = writer.license(key="P0", issued=NOW - 60, expiry=NOW + 30)
    relay.add_licenses(
        [(expiring, "P0"), (writer.license(key="P1", issued=NOW - 60), "P1")],
        public_key=writer.public_key,
        pool="p",
    )
    return relay


def test_list_leases_shows_who_holds_what(relay: Relay, clock: FrozenClock) -> None:
    first = relay.claim("a")
    clock.advance(5)
    pooled = relay.claim("b", "p")
    clock.advance(5)
    relay.claim("a")
    assert relay.list_leases() == [
        ActiveLease("a", first.node.id, first.license.guid, None, NOW, NOW + 10, NOW + 70),
        ActiveLease("b", pooled.node.id, pooled.license.guid, "p", NOW + 5, NOW + 5, NOW + 65),
    ]
    assert [a.fingerprint for a in relay.list_leases("p")] == ["b"]
    with pytest.raises(PoolNotFoundError):
        relay.list_leases("nope")


def test_without_heartbeats_leases_never_expire(writer: LicenseWriter) -> None:
    relay = Relay(MemoryStore(), clock=FrozenClock(NOW), heartbeats=False)
    relay.add_license(writer.license(key="K", issued=NOW - 60), "K", public_key=writer.public_key)
    relay.claim("a")
    assert [a.expires_at for a in relay.list_leases()] == [None]


def test_pool_stats_count_every_pool_global_first(relay: Relay, clock: FrozenClock) -> None:
    relay.claim("a")
    relay.claim("b", "p")  # FIFO: the expiring license
    clock.advance(31)
    assert relay.pool_stats() == [
        PoolStats(None, licenses=2, leased=1, free=1, expired=0, nodes_active=1),
        PoolStats("p", licenses=2, leased=1, free=1, expired=1, nodes_active=1),
    ]


def test_force_release_frees_the_seat_with_the_audit_rows_of_a_release(
    relay: Relay, recorder: Recorder
) -> None:
    held = relay.claim("b", "p")
    freed = relay.force_release("b")
    assert (freed.guid, freed.node_id, freed.last_released_at) == (held.license.guid, None, NOW)
    rows = relay.audit_log(limit=2)
    assert [(r.event, r.entity_label, r.pool_name) for r in rows] == [
        (EventType.NODE_DEACTIVATED, "b", "p"),
        (EventType.LICENSE_RELEASED, held.license.guid, "p"),
    ]
    assert relay.list_leases() == []
    assert relay.claim("c", "p").license.guid == held.license.guid
    assert recorder.seen[-2] == ("release", "p", ReleaseResult.FORCED)


def test_force_release_of_nothing_says_so(relay: Relay) -> None:
    relay.claim("a")
    with pytest.raises(LeaseNotFoundError, match="^no lease held by node b$"):
        relay.force_release("b")
    with pytest.raises(LeaseNotFoundError, match="^no lease held by node a in pool p$"):
        relay.force_release("a", "p")
    with pytest.raises(PoolNotFoundError):
        relay.force_release("a", "nope")
    assert isinstance(LeaseNotFoundError("x"), ClaimNotFoundError)
    assert [a.fingerprint for a in relay.list_leases()] == ["a"]


def test_events_follow_each_use_case(relay: Relay, recorder: Recorder, clock: FrozenClock) -> None:
    relay.claim("a")
    relay.claim("a")
    relay.claim("b")
    with pytest.raises(NoLicensesAvailableError):
        relay.claim("c")
    with pytest.raises(ClaimConflictError):
        relay.claim("a", "p")
    with pytest.raises(PoolNotFoundError):
        relay.claim("a", "nope")  # refused before anything: not an outcome worth counting
    relay.release("b")
    with pytest.raises(ClaimNotFoundError):
        relay.release("b")
    clock.advance(61)
    relay.cull()
    assert recorder.seen == [
        ("claim", None, ClaimResult.CREATED),
        ("claim", None, ClaimResult.EXTENDED),
        ("claim", None, ClaimResult.CREATED),
        ("claim", None, ClaimResult.EXHAUSTED),
        ("claim", "p", ClaimResult.CONFLICT),
        ("release", None, ReleaseResult.RELEASED),
        ("release", None, ReleaseResult.NOT_FOUND),
        ("cull", 1, 1),
    ]

"""The operator's reads and force-release on SQLite, with the lease cache in the way.

`relay leases` and `relay release` run in another process while `relay serve` answers
heartbeats from its cache: a second `SqliteStore` on the same file plays that process (its
commits change the first connection's `PRAGMA data_version` exactly as another process's do).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from relay_core import ClaimStatus, LeaseNotFoundError, Relay
from relay_core.testing import FrozenClock, LicenseWriter
from relay_sqlite import SqliteStore
from relay_sqlite.leases import STALE_AFTER, LeaseCache

from .test_lease_cache import Ticker, _counted, _events


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(int(time.time()))


@pytest.fixture
def ticker(store: SqliteStore) -> Ticker:
    ticker = Ticker()
    store._leases = LeaseCache(clock=ticker)
    return ticker


@pytest.fixture
def server(store: SqliteStore, ticker: Ticker, clock: FrozenClock, writer: LicenseWriter) -> Relay:
    relay = Relay(store, clock=clock, ttl=60)
    files = [(writer.license(key=f"KEY-{n}"), f"KEY-{n}") for n in range(3)]
    relay.add_licenses(files, public_key=writer.public_key)
    return relay


@pytest.fixture
def cli(db_path: Path, clock: FrozenClock, server: Relay) -> Iterator[Relay]:
    other = SqliteStore(db_path)
    try:
        yield Relay(other, clock=clock, ttl=60)
    finally:
        other.close()


def test_a_force_release_by_another_process_is_seen_by_the_server(
    server: Relay, cli: Relay, clock: FrozenClock, ticker: Ticker, raw: sqlite3.Connection
) -> None:
    claimed = server.claim("n1")
    clock.advance(3)
    assert server.claim("n1").status is ClaimStatus.EXTENDED  # answered from the cache
    assert [a.fingerprint for a in cli.list_leases()] == ["n1"]
    cli.force_release("n1")
    # The server's reads run in a transaction: it checks data_version and sees the release.
    assert server.list_leases() == []
    assert [(s.leased, s.free) for s in server.pool_stats()] == [(0, 3)]
    # The cache was emptied by that transaction: the node's next heartbeat gets a new lease.
    ticker.now += STALE_AFTER
    clock.advance(3)
    assert server.claim("n1").status is ClaimStatus.CREATED
    node, lic = claimed.node.id, claimed.license.id
    # The heartbeat the cache answered before the release is not written: the transaction
    # that saw another process's change verifies pending heartbeats against what now holds.
    assert _events(raw) == [
        ("node.activated", node),
        ("license.leased", lic),
        ("node.heartbeat_ping", node),
        ("license.released", lic),
        ("node.deactivated", node),
        ("node.activated", node),
        ("license.leased", lic),
        ("node.heartbeat_ping", node),
    ]


def test_heartbeats_answered_just_before_another_process_released_are_not_written(
    server: Relay, cli: Relay, clock: FrozenClock, raw: sqlite3.Connection
) -> None:
    """Within STALE_AFTER of its last commit the server may still answer from its cache; the
    rows of that answer are dropped, since the lease no longer holds."""
    claimed = server.claim("n1")
    server.claim("n2")
    cli.force_release("n1")
    clock.advance(2)
    server.claim("n1")  # answered from the now stale cache
    server.claim("n3")  # a transaction: sees the release, verifies the pending heartbeat
    extended = [entity for name, entity in _events(raw) if name == "license.lease_extended"]
    assert claimed.license.id not in extended
    assert server.claim("n1").status is ClaimStatus.CREATED


def test_a_force_release_in_the_server_ends_cached_answers_at_once(
    server: Relay, store: SqliteStore
) -> None:
    server.claim("n1")
    server.claim("n1")  # cached
    server.force_release("n1")
    assert server.claim("n1").status is ClaimStatus.CREATED
    with pytest.raises(LeaseNotFoundError):
        server.force_release("nobody")


def test_leases_show_heartbeats_the_cache_answered(server: Relay, clock: FrozenClock) -> None:
    claimed = server.claim("n1")
    clock.advance(5)
    server.claim("n1")  # answered from the cache, not yet written
    [lease] = server.list_leases()
    assert lease.last_heartbeat_at == claimed.node.last_heartbeat_at + 5
    assert lease.expires_at == claimed.node.last_heartbeat_at + 65


def test_counting_pools_leaves_the_lease_cache_warm(server: Relay, store: SqliteStore) -> None:
    """A Prometheus scrape every few seconds must not send every heartbeat back to SQL."""
    server.claim("n1")
    server.claim("n1")
    assert [s.leased for s in server.pool_stats()] == [1]
    with _counted(store) as counting:
        assert server.claim("n1").status is ClaimStatus.EXTENDED
    assert counting.statements == []

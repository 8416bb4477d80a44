"""Heartbeats answered after their read and written a moment later (relay_postgres.beats)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from relay_core import ClaimStatus, Relay
from relay_core.model import EventType
from relay_core.testing import FrozenClock, LicenseWriter
from relay_postgres import PostgresStore
from relay_postgres.beats import FLUSH_INTERVAL
from relay_postgres.testing import PostgresServer

T0 = 1_765_324_800


@pytest.fixture
def pair(schema_url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    first, second = PostgresStore(schema_url), PostgresStore(schema_url)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


@pytest.fixture
def manual_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """No timed flush: the test decides when queued heartbeats are written."""
    monkeypatch.setattr("relay_postgres.store.FLUSH_INTERVAL", 60.0)


def _events(server: PostgresServer, url: str) -> list[tuple[str, int]]:
    return [
        (EventType(e).label, entity)
        for e, entity in server.execute(
            url, "SELECT event_type_id, entity_id FROM audit_logs ORDER BY id"
        )
    ]


def _last_heartbeat(server: PostgresServer, url: str) -> list[tuple[int | None]]:
    """Node ``n``'s `last_heartbeat_at`, as another connection sees it."""
    rows: list[tuple[int | None]] = server.execute(
        url, "SELECT last_heartbeat_at FROM nodes WHERE fingerprint = 'n'"
    )
    return rows


def _seed(relay: Relay, writer: LicenseWriter) -> None:
    relay.add_licenses(
        [(writer.license(key=f"B-{n}", issued=T0 - 60), f"B-{n}") for n in range(2)],
        public_key=writer.public_key,
    )


def test_a_heartbeat_is_written_shortly_after_its_answer(
    postgres_server: PostgresServer,
    schema_url: str,
    pair: tuple[PostgresStore, PostgresStore],
    writer: LicenseWriter,
) -> None:
    store, _ = pair
    clock = FrozenClock(T0)
    relay = Relay(store, clock=clock)
    _seed(relay, writer)
    relay.claim("n")
    clock.advance(7)
    assert relay.claim("n").status is ClaimStatus.EXTENDED
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        beat = _last_heartbeat(postgres_server, schema_url)
        if beat == [(T0 + 7,)]:
            break
        time.sleep(FLUSH_INTERVAL / 5)
    assert beat == [(T0 + 7,)]
    assert [label for label, _ in _events(postgres_server, schema_url)][-2:] == [
        "license.lease_extended",
        "node.heartbeat_ping",
    ]


def test_the_next_transaction_writes_queued_heartbeats_first(
    postgres_server: PostgresServer,
    schema_url: str,
    pair: tuple[PostgresStore, PostgresStore],
    writer: LicenseWriter,
) -> None:
    """Within one store the audit log keeps the order things happened in."""
    store, _ = pair
    relay = Relay(store, clock=FrozenClock(T0))
    _seed(relay, writer)
    relay.claim("n")
    relay.claim("n")
    relay.release("n")  # its transaction writes the queued heartbeat before the release
    labels = [label for label, _ in _events(postgres_server, schema_url)]
    assert labels[-4:] == [
        "license.lease_extended",
        "node.heartbeat_ping",
        "license.released",
        "node.deactivated",
    ]


def test_a_heartbeat_for_a_lease_released_elsewhere_is_dropped(
    postgres_server: PostgresServer,
    schema_url: str,
    pair: tuple[PostgresStore, PostgresStore],
    writer: LicenseWriter,
    manual_flush: None,
) -> None:
    first, second = pair
    clock = FrozenClock(T0)
    here, there = Relay(first, clock=clock), Relay(second, clock=clock)
    _seed(here, writer)
    here.claim("n")
    clock.advance(5)
    assert here.claim("n").status is ClaimStatus.EXTENDED  # queued here ...
    there.release("n")  # ... while another replica releases the lease
    first.close()  # writes what is queued: nothing, the lease is gone
    labels = [label for label, _ in _events(postgres_server, schema_url)]
    assert labels[-2:] == ["license.released", "node.deactivated"]
    assert "license.lease_extended" not in labels
    assert _last_heartbeat(postgres_server, schema_url) == [(T0,)]


def test_close_writes_what_is_queued(
    postgres_server: PostgresServer, schema_url: str, writer: LicenseWriter
) -> None:
    store = PostgresStore(schema_url)
    clock = FrozenClock(T0)
    relay = Relay(store, clock=clock)
    _seed(relay, writer)
    relay.claim("n")
    clock.advance(3)
    relay.claim("n")
    store.close()
    assert _last_heartbeat(postgres_server, schema_url) == [(T0 + 3,)]


class CloseBeforeClear(threading.Event):
    """The flusher's wake-up flag, whose first `clear()` lets `close()` signal first: the
    interleaving in which the flusher used to clear close()'s wake-up and sleep for ever."""

    def __init__(self, closing: threading.Event) -> None:
        super().__init__()
        self.closing = closing
        self.first = True

    def clear(self) -> None:
        if self.first:
            self.first = False
            self.closing.set()  # what close() does, in its order
            self.set()
        super().clear()


def test_the_flusher_ends_when_close_signals_just_before_it_clears_its_flag(
    schema_url: str, writer: LicenseWriter
) -> None:
    """This interleaving hung a CI run in close() (test_replicas' teardown)."""
    store = PostgresStore(schema_url)
    try:
        store._flush_wanted = CloseBeforeClear(store._closing)
        clock = FrozenClock(T0)
        relay = Relay(store, clock=clock)
        _seed(relay, writer)
        relay.claim("n")
        clock.advance(3)
        relay.claim("n")  # answered after one read: starts the flusher
        flusher = store._flusher
        assert flusher is not None
        flusher.join(10)
        assert not flusher.is_alive(), "the flusher missed close()'s signal (close() would hang)"
    finally:
        store.close()


def test_a_with_block_closes_the_store_and_writes_what_is_queued(
    postgres_server: PostgresServer, schema_url: str, writer: LicenseWriter
) -> None:
    clock = FrozenClock(T0)
    with PostgresStore(schema_url) as store:
        relay = Relay(store, clock=clock)
        _seed(relay, writer)
        relay.claim("n")
        clock.advance(5)
        relay.claim("n")
    assert _last_heartbeat(postgres_server, schema_url) == [(T0 + 5,)]


def test_queued_heartbeats_are_committed_before_the_next_work_begins(
    postgres_server: PostgresServer,
    schema_url: str,
    pair: tuple[PostgresStore, PostgresStore],
    writer: LicenseWriter,
    manual_flush: None,
) -> None:
    """The flush locks several nodes' rows; work holding them while it locks one more could
    deadlock with another replica doing the same, so the flush commits on its own first."""
    store, _ = pair
    clock = FrozenClock(T0)
    relay = Relay(store, clock=clock)
    _seed(relay, writer)
    relay.claim("n")
    clock.advance(4)
    assert relay.claim("n").status is ClaimStatus.EXTENDED  # queued
    with store.transaction():
        # Another connection already sees it: committed, its row locks released.
        assert _last_heartbeat(postgres_server, schema_url) == [(T0 + 4,)]


def test_two_replicas_flushing_the_same_nodes_in_opposite_orders_do_not_deadlock(
    postgres_server: PostgresServer,
    schema_url: str,
    pair: tuple[PostgresStore, PostgresStore],
    writer: LicenseWriter,
    manual_flush: None,
) -> None:
    first, second = pair
    clock = FrozenClock(T0)
    here, there = Relay(first, clock=clock), Relay(second, clock=clock)
    count = 40
    here.add_licenses(
        [(writer.license(key=f"D-{n}", issued=T0 - 60), f"D-{n}") for n in range(count)],
        public_key=writer.public_key,
    )
    for n in range(count):
        here.claim(f"d-{n}")
    failures: list[BaseException] = []
    for _ in range(15):
        clock.advance(1)
        for n in range(count):  # queued here in one order, there in the other
            assert here.claim(f"d-{n}").status is ClaimStatus.EXTENDED
            assert there.claim(f"d-{count - 1 - n}").status is ClaimStatus.EXTENDED
        barrier = threading.Barrier(2)

        def flush(store: PostgresStore, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                store._flush()
            except BaseException as exc:  # reported below
                failures.append(exc)

        threads = [threading.Thread(target=flush, args=(s,)) for s in pair]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert failures == []
    assert postgres_server.execute(
        schema_url, "SELECT count(*) FROM nodes WHERE last_heartbeat_at = %s", (T0 + 15,)
    ) == [(count,)]

"""The lease cache: heartbeats answered without SQL, written shortly after, and never wrongly.

The store's cache clock is replaced by one the test moves, so "fresh" and "stale" are decided
by the test, not by how fast the machine is.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import relay_core.service
from relay_core import ClaimStatus, Relay
from relay_core.errors import ClaimConflictError, ClaimNotFoundError, StorageError
from relay_core.model import License, Node
from relay_core.testing import FrozenClock, LicenseWriter
from relay_sqlite import SqliteStore
from relay_sqlite import leases as leases_module
from relay_sqlite.leases import STALE_AFTER, LeaseCache


class Ticker:
    """A monotonic clock for the cache that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """The store's connection, counting the statements run through it."""

    def __init__(self, conn: sqlite3.Connection, fail_commit: bool = False) -> None:
        self._conn = conn
        self.statements: list[str] = []
        self.fail_commit = fail_commit

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.statements.append(sql)
        if self.fail_commit and sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture
def ticker(store: SqliteStore) -> Ticker:
    ticker = Ticker()
    store._leases = LeaseCache(clock=ticker)
    return ticker


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(int(time.time()))


@pytest.fixture
def relay(store: SqliteStore, ticker: Ticker, clock: FrozenClock, writer: LicenseWriter) -> Relay:
    relay = Relay(store, clock=clock, ttl=60)
    files = [(writer.license(key=f"KEY-{n}"), f"KEY-{n}") for n in range(4)]
    relay.add_licenses(files, public_key=writer.public_key)
    relay.add_licenses(
        [(writer.license(key="KEY-P"), "KEY-P")], public_key=writer.public_key, pool="p"
    )
    return relay


@contextmanager
def _counted(store: SqliteStore, *, fail_commit: bool = False) -> Iterator[Counting]:
    """The store's statements counted (and COMMIT failing, if asked) inside the block."""
    assert store._conn is not None
    counting = Counting(store._conn, fail_commit)
    store._conn = counting  # type: ignore[assignment]
    try:
        yield counting
    finally:
        store._conn = counting._conn


def _events(raw: sqlite3.Connection) -> list[tuple[str, int]]:
    return raw.execute(
        "SELECT e.name, a.entity_id FROM audit_logs a JOIN event_types e ON e.id = a.event_type_id"
        " WHERE e.name NOT IN ('license.added', 'pool.added') ORDER BY a.id"
    ).fetchall()


def _beat_of(raw: sqlite3.Connection, node_id: int) -> int | None:
    return raw.execute("SELECT last_heartbeat_at FROM nodes WHERE id = ?", (node_id,)).fetchone()[0]


def test_a_heartbeat_after_a_claim_runs_no_sql_and_is_written_by_the_next_transaction(
    store: SqliteStore, relay: Relay, clock: FrozenClock, raw: sqlite3.Connection
) -> None:
    claimed = relay.claim("n1")
    clock.advance(5)
    with _counted(store) as counting:
        extended = relay.claim("n1")
    assert counting.statements == []
    assert extended.status is ClaimStatus.EXTENDED
    assert extended.license == claimed.license
    assert extended.node.last_heartbeat_at == claimed.node.last_heartbeat_at + 5
    assert _beat_of(raw, claimed.node.id) == claimed.node.last_heartbeat_at  # not yet written

    relay.claim("n2")  # any transaction writes what is pending first
    assert _beat_of(raw, claimed.node.id) == extended.node.last_heartbeat_at
    node, lic = claimed.node.id, claimed.license.id
    assert _events(raw)[3:5] == [("license.lease_extended", lic), ("node.heartbeat_ping", node)]


def test_the_flusher_writes_pending_heartbeats_without_other_traffic(
    store: SqliteStore, relay: Relay, clock: FrozenClock, raw: sqlite3.Connection
) -> None:
    claimed = relay.claim("n1")
    clock.advance(7)
    relay.claim("n1")
    deadline = time.monotonic() + 10
    while _beat_of(raw, claimed.node.id) != claimed.node.last_heartbeat_at + 7:
        assert time.monotonic() < deadline, "the pending heartbeat was never written"
        time.sleep(0.01)
    assert not store._leases.pending


def test_close_writes_pending_heartbeats(
    store: SqliteStore, relay: Relay, clock: FrozenClock, raw: sqlite3.Connection
) -> None:
    claimed = relay.claim("n1")
    clock.advance(3)
    relay.claim("n1")
    store.close()
    assert _beat_of(raw, claimed.node.id) == claimed.node.last_heartbeat_at + 3
    assert _events(raw)[-1] == ("node.heartbeat_ping", claimed.node.id)
    with pytest.raises(StorageError, match="closed"):
        relay.claim("n1")  # the cache answers nothing once closed


def test_a_with_block_closes_the_store_and_writes_pending_heartbeats(
    db_path: Path, writer: LicenseWriter, clock: FrozenClock, raw: sqlite3.Connection
) -> None:
    with SqliteStore(db_path) as store:
        relay = Relay(store, clock=clock)
        relay.add_license(writer.license(key="K"), "K", public_key=writer.public_key)
        claimed = relay.claim("n1")
        clock.advance(3)
        relay.claim("n1")
    assert _beat_of(raw, claimed.node.id) == claimed.node.last_heartbeat_at + 3
    with pytest.raises(StorageError, match="closed"):
        relay.claim("n1")


_EXIT_WITHOUT_CLOSE = """
import sys
import relay_sqlite.store
from relay_core import ClaimStatus, Relay
from relay_sqlite import SqliteStore

relay_sqlite.store.FLUSH_INTERVAL = 3600  # only the exit can write the last heartbeat
relay = Relay(SqliteStore(sys.argv[1]))
relay.claim("n1")
assert relay.claim("n1").status is ClaimStatus.EXTENDED
"""


def test_an_embedded_store_never_closed_writes_its_heartbeats_at_exit(
    db_path: Path, writer: LicenseWriter, raw: sqlite3.Connection
) -> None:
    """An application that forgets `close()` (the flusher is a daemon thread, gone at exit)
    still gets the heartbeat the cache answered last: the store closes itself at exit."""
    with SqliteStore(db_path) as store:
        Relay(store).add_license(writer.license(key="K"), "K", public_key=writer.public_key)
    subprocess.run([sys.executable, "-c", _EXIT_WITHOUT_CLOSE, str(db_path)], check=True)
    assert _events(raw) == [
        ("node.activated", 1),
        ("license.leased", 1),
        ("node.heartbeat_ping", 1),
        ("license.lease_extended", 1),
        ("node.heartbeat_ping", 1),
    ]


_FORKED_CHILD_EXITS = """
import os, sys
import relay_sqlite.store
from relay_core import ClaimStatus, Relay
from relay_sqlite import SqliteStore

relay_sqlite.store.FLUSH_INTERVAL = 3600
store = SqliteStore(sys.argv[1])
relay = Relay(store)
relay.claim("n1")
assert relay.claim("n1").status is ClaimStatus.EXTENDED  # pending until the close
child = os.fork()
if child == 0:
    sys.exit(0)  # a forked worker that never used the store exits normally
os.waitpid(child, 0)
store.close()
"""


def test_a_forked_child_exiting_does_not_close_its_parents_store(
    db_path: Path, writer: LicenseWriter, raw: sqlite3.Connection
) -> None:
    """The exit hook belongs to the process that opened the store: a child closing it would
    write the parent's pending heartbeat through the parent's connection, and the parent again."""
    with SqliteStore(db_path) as store:
        Relay(store).add_license(writer.license(key="K"), "K", public_key=writer.public_key)
    subprocess.run([sys.executable, "-c", _FORKED_CHILD_EXITS, str(db_path)], check=True)
    assert [name for name, _ in _events(raw)].count("node.heartbeat_ping") == 2


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
    store: SqliteStore, relay: Relay, clock: FrozenClock
) -> None:
    store._flush_wanted = CloseBeforeClear(store._closing)
    relay.claim("n1")
    clock.advance(3)
    relay.claim("n1")  # answered from the cache: starts the flusher
    flusher = store._flusher
    assert flusher is not None
    flusher.join(10)
    assert not flusher.is_alive(), "the flusher missed close()'s signal (close() would hang)"


def test_a_release_evicts_so_the_next_claim_is_a_new_lease(
    store: SqliteStore, relay: Relay, raw: sqlite3.Connection
) -> None:
    first = relay.claim("n1")
    relay.claim("n1")  # answered from the cache
    relay.release("n1")
    again = relay.claim("n1")
    assert again.status is ClaimStatus.CREATED
    node, lic = first.node.id, first.license.id
    assert _events(raw) == [
        ("node.activated", node),
        ("license.leased", lic),
        ("node.heartbeat_ping", node),
        ("license.lease_extended", lic),  # the cached heartbeat, written before the release
        ("node.heartbeat_ping", node),
        ("license.released", lic),
        ("node.deactivated", node),
        ("node.activated", node),
        ("license.leased", again.license.id),
        ("node.heartbeat_ping", node),
    ]


def test_a_stale_cache_answers_nothing(store: SqliteStore, relay: Relay, ticker: Ticker) -> None:
    relay.claim("n1")
    ticker.now += STALE_AFTER
    with _counted(store) as counting:
        assert relay.claim("n1").status is ClaimStatus.EXTENDED
    assert "PRAGMA data_version" in counting.statements  # it ran in a transaction


def test_another_process_ending_a_lease_empties_the_cache_and_drops_what_it_answered(
    store: SqliteStore, relay: Relay, clock: FrozenClock, raw: sqlite3.Connection
) -> None:
    """`relay del` in another process while serving: within STALE_AFTER the cache may still
    answer, but the next transaction sees the change, writes nothing for that lease, and the
    node's next heartbeat finds its license gone."""
    claimed = relay.claim("n1")
    relay.claim("n2")
    raw.execute("DELETE FROM licenses WHERE id = ?", (claimed.license.id,))
    raw.execute("UPDATE nodes SET deactivated_at = 1 WHERE id = ?", (claimed.node.id,))
    clock.advance(2)
    relay.claim("n1")  # answered from the (now stale) cache
    relay.claim("n2")  # answered from the cache too, and still valid
    relay.claim("n3")  # a transaction: it reads data_version, and verifies both acks
    assert _beat_of(raw, claimed.node.id) == claimed.node.last_heartbeat_at
    extended = [entity for name, entity in _events(raw) if name == "license.lease_extended"]
    assert claimed.license.id not in extended
    assert len(extended) == 1  # n2's
    assert relay.claim("n1").status is ClaimStatus.CREATED  # from SQL: a new lease


def test_heartbeats_to_verify_stay_to_verify_after_a_failed_commit(
    store: SqliteStore, relay: Relay, clock: FrozenClock, raw: sqlite3.Connection
) -> None:
    """The transaction that saw another process's change fails to commit: the acks it gave
    back are still checked by the next one, although data_version has not moved since."""
    claimed = relay.claim("n1")
    raw.execute("DELETE FROM licenses WHERE id = ?", (claimed.license.id,))
    raw.execute("UPDATE nodes SET deactivated_at = 1 WHERE id = ?", (claimed.node.id,))
    clock.advance(2)
    relay.claim("n1")  # answered from the stale cache
    with _counted(store, fail_commit=True), pytest.raises(StorageError, match="disk is full"):
        relay.claim("n2")
    relay.claim("n2")
    assert not store._leases.pending
    assert _beat_of(raw, claimed.node.id) == claimed.node.last_heartbeat_at
    assert ("license.lease_extended", claimed.license.id) not in _events(raw)


def test_a_cull_spares_a_node_whose_heartbeat_the_cache_answered_meanwhile(
    store: SqliteStore,
    relay: Relay,
    clock: FrozenClock,
    raw: sqlite3.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race a cull has with heartbeats, made to happen: after the cull has written the
    pending rows and read the expired nodes, but before it evicts them, the cache answers a
    heartbeat for one. That heartbeat came first, so the node must not be culled; and sparing
    it must not end the pass early (batches of 2 here: the first still culls 2 nodes)."""
    monkeypatch.setattr(relay_core.service, "CULL_BATCH", 2)
    late = relay.claim("late")
    silent = [relay.claim("silent-1"), relay.claim("silent-2")]
    clock.advance(61)
    evict = store._leases.evict_for_cull
    calls: list[list[int]] = []

    def heartbeat_in_between(node_ids: list[int]) -> set[int]:
        calls.append(sorted(node_ids))
        if len(calls) == 1:
            now = int(clock.now())
            answered, lease = store._leases.attempt(lambda tx: relay._claim(tx, "late", None, now))
            assert answered
            assert lease is not None
            assert lease.status is ClaimStatus.EXTENDED
        return evict(node_ids)

    monkeypatch.setattr(store._leases, "evict_for_cull", heartbeat_in_between)
    report = relay.cull()
    assert (report.culled, report.released) == (2, 2)
    quiet = sorted(lease.node.id for lease in silent)
    assert calls[:2] == [sorted([late.node.id, quiet[0]]), quiet]
    assert _beat_of(raw, late.node.id) == int(clock.now())
    holders = dict(raw.execute("SELECT id, node_id FROM licenses WHERE node_id IS NOT NULL"))
    assert holders == {late.license.id: late.node.id}
    monkeypatch.undo()
    assert relay.claim("late").status is ClaimStatus.EXTENDED
    assert relay.claim("silent-1").status is ClaimStatus.CREATED


def test_a_failed_commit_gives_the_heartbeats_back_to_be_written_once(
    store: SqliteStore, relay: Relay, clock: FrozenClock, raw: sqlite3.Connection
) -> None:
    claimed = relay.claim("n1")
    clock.advance(4)
    relay.claim("n1")
    with _counted(store, fail_commit=True), pytest.raises(StorageError, match="disk is full"):
        relay.claim("n2")
    assert store._leases.pending
    relay.claim("n2")
    assert _beat_of(raw, claimed.node.id) == claimed.node.last_heartbeat_at + 4
    pings = [e for e in _events(raw) if e == ("node.heartbeat_ping", claimed.node.id)]
    assert len(pings) == 2  # the claim's and the heartbeat's, not a third


def test_while_commits_fail_the_cache_stops_answering_once_stale(
    store: SqliteStore, relay: Relay, ticker: Ticker
) -> None:
    """A full disk: transactions still begin and read, but nothing commits. Heartbeats are not
    answered from memory past STALE_AFTER, so nodes see the error and nothing piles up."""
    relay.claim("n1")
    relay.claim("n1")  # pending
    with _counted(store, fail_commit=True):
        with pytest.raises(StorageError, match="disk is full"):
            relay.claim("n2")
        assert relay.claim("n1").status is ClaimStatus.EXTENDED  # still fresh: answered
        ticker.now += STALE_AFTER
        with pytest.raises(StorageError, match="disk is full"):
            relay.claim("n2")  # began and read data_version, but did not commit
        with pytest.raises(StorageError, match="disk is full"):
            relay.claim("n1")
    relay.claim("n2")  # the disk has space again: everything pending is written
    assert not store._leases.pending
    assert relay.claim("n1").status is ClaimStatus.EXTENDED


def test_a_plain_transaction_writes_pending_heartbeats_and_empties_the_cache(
    store: SqliteStore, relay: Relay, clock: FrozenClock, raw: sqlite3.Connection
) -> None:
    claimed = relay.claim("n1")
    clock.advance(2)
    relay.claim("n1")
    assert relay.get_node(claimed.node.id) == Node(
        claimed.node.id, "n1", claimed.node.last_heartbeat_at + 2, claimed.node.created_at, None
    )
    with _counted(store) as counting:
        assert relay.claim("n1").status is ClaimStatus.EXTENDED
    assert counting.statements  # the cache was emptied: SQL answered


def test_removing_a_leased_license_in_process_ends_cached_answers(
    store: SqliteStore, relay: Relay
) -> None:
    claimed = relay.claim("n1")
    relay.remove_licenses([claimed.license.guid])
    assert relay.claim("n1").status is ClaimStatus.CREATED


def test_pooled_heartbeats_are_answered_and_the_wrong_pool_is_not(
    store: SqliteStore, relay: Relay
) -> None:
    relay.claim("n1", "p")
    relay.claim("n1", "p")  # the pool was read by a transaction: now cached with the lease
    with _counted(store) as counting:
        assert relay.claim("n1", "p").status is ClaimStatus.EXTENDED
        assert counting.statements == []
        with pytest.raises(ClaimConflictError):
            relay.claim("n1")  # held in "p", asked in the global pool: a question for SQL
    assert counting.statements


def test_the_cache_stops_growing_at_its_byte_budget(
    store: SqliteStore, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = relay.claim("n1")
    monkeypatch.setattr(leases_module, "MAX_FILE_BYTES", len(first.license.file) + 1)
    relay.claim("n2")  # granted, but past the budget: not kept
    with _counted(store) as counting:
        relay.claim("n1")
        assert counting.statements == []
        relay.claim("n2")
        assert counting.statements  # answered by SQL


def test_work_that_reads_no_cached_lease_is_never_answered_by_the_cache() -> None:
    cache = LeaseCache(clock=lambda: 0.0)
    cache.checked(1)
    cache.committed()
    node = Node(1, "n1", 0, 0, None)
    lic = License(1, "g", b"file", "k", 1, 0, None, 1, None, 0, None)
    cache.remember([("n1", node, lic)], [])

    def beat_only(tx: Any) -> str:
        tx.heartbeat_node(1, 5)
        return "done"

    assert cache.attempt(beat_only) == (False, None)
    assert not cache.pending
    assert cache.attempt(lambda tx: tx.get_node_lease("n1")) == (True, (node, lic))
    assert cache.attempt(lambda tx: tx.get_node_lease("n2")) == (False, None)
    assert cache.attempt(lambda tx: tx.has_free_license(None, 0)) == (False, None)


def test_a_lease_evicted_while_its_heartbeat_was_answered_sends_the_work_to_sql() -> None:
    """A write evicting the lease between the heartbeat's read and its ack wins: the ack is
    not taken, and the work runs again in a transaction, after that write."""
    cache = LeaseCache(clock=lambda: 0.0)
    cache.checked(1)
    cache.committed()
    node = Node(1, "n1", 0, 0, None)
    lic = License(1, "g", b"file", "k", 1, 0, None, 1, None, 0, None)
    cache.remember([("n1", node, lic)], [])

    def raced(tx: Any) -> str:
        tx.get_node_lease("n1")
        cache.evict_node(1)  # what a concurrent release does before it writes
        tx.heartbeat_node(1, 5)
        return "extended"

    assert cache.attempt(raced) == (False, None)
    assert not cache.pending


def test_a_release_reads_a_cached_lease_without_sql(
    relay: Relay, store: SqliteStore, raw: sqlite3.Connection
) -> None:
    """Issue 14.4: the lease a claim granted is read from the cache by its release (the
    transaction checked `data_version` first), and the release is written as usual."""
    claimed = relay.claim("n1")
    with _counted(store) as counting:
        released = relay.release("n1")
    assert released.id == claimed.license.id
    assert not any("FROM nodes n LEFT JOIN licenses" in sql for sql in counting.statements)
    assert raw.execute(
        "SELECT node_id FROM licenses WHERE id = ?", (claimed.license.id,)
    ).fetchone() == (None,)
    assert raw.execute(
        "SELECT deactivated_at IS NOT NULL FROM nodes WHERE id = ?", (claimed.node.id,)
    ).fetchone() == (1,)
    assert _events(raw)[-2:] == [
        ("license.released", claimed.license.id),
        ("node.deactivated", claimed.node.id),
    ]


def test_a_release_after_another_process_wrote_reads_sql(
    relay: Relay, store: SqliteStore, raw: sqlite3.Connection
) -> None:
    """Another connection's commit empties the cache when the release's transaction begins,
    so a lease that connection ended is not released twice."""
    claimed = relay.claim("n1")
    raw.execute("UPDATE licenses SET node_id = NULL WHERE id = ?", (claimed.license.id,))
    with pytest.raises(ClaimNotFoundError):
        relay.release("n1")

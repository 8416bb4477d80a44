"""The lease cache under real concurrency and mid-batch failures (found by review).

The stress test runs threads heartbeating, releasing and culling at once with a tiny GIL switch
interval, then replays the audit log: no heartbeat row may follow its lease's end, and every
answered extension must have exactly one audit row (nothing lost, nothing written twice).
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from relay_core import ClaimStatus, Relay
from relay_core.errors import NoLicensesAvailableError, RelayError
from relay_core.testing import FrozenClock, LicenseWriter
from relay_sqlite import SqliteStore
from relay_sqlite.store import _Slot


class Hooked:
    """The store's connection, calling `hook(conn, sql)` before each statement."""

    def __init__(self, conn: sqlite3.Connection, hook: Callable[[sqlite3.Connection, str], None]):
        self._conn = conn
        self._hook = hook

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._hook(self._conn, sql)
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _events(raw: sqlite3.Connection) -> list[tuple[str, int]]:
    return raw.execute(
        "SELECT e.name, a.entity_id FROM audit_logs a JOIN event_types e ON e.id = a.event_type_id"
        " ORDER BY a.id"
    ).fetchall()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(int(time.time()))


@pytest.fixture
def relay(store: SqliteStore, clock: FrozenClock, writer: LicenseWriter) -> Relay:
    relay = Relay(store, clock=clock, ttl=60)
    files = [(writer.license(key=f"K{n}"), f"K{n}") for n in range(3)]
    relay.add_licenses(files, public_key=writer.public_key)
    return relay


@pytest.fixture
def fast_switching() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def test_threads_heartbeating_releasing_and_culling_keep_the_audit_story(
    store: SqliteStore, writer: LicenseWriter, raw: sqlite3.Connection, fast_switching: None
) -> None:
    relay = Relay(store, ttl=0)  # every lease is cullable at once: culls race every heartbeat
    files = [(writer.license(key=f"S{n}"), f"S{n}") for n in range(12)]
    relay.add_licenses(files, public_key=writer.public_key)
    nodes = [f"n{i}" for i in range(16)]
    stop = time.monotonic() + 3
    extended = Counter[str]()
    failures: list[BaseException] = []

    def beater(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            try:
                if relay.claim(rng.choice(nodes)).status is ClaimStatus.EXTENDED:
                    extended[threading.current_thread().name] += 1
            except NoLicensesAvailableError:
                pass
            except BaseException as exc:
                failures.append(exc)

    def releaser() -> None:
        rng = random.Random(99)
        while time.monotonic() < stop:
            with contextlib.suppress(RelayError):
                relay.release(rng.choice(nodes))
            time.sleep(0.001)

    def culler() -> None:
        while time.monotonic() < stop:
            relay.cull()
            time.sleep(0.002)

    threads = [threading.Thread(target=beater, args=(i,), name=f"b{i}") for i in range(8)]
    threads += [threading.Thread(target=releaser), threading.Thread(target=culler)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    store.close()
    assert failures == []

    active: dict[int, bool] = {}
    held: dict[int, bool] = {}
    wrong = []
    for index, (name, entity) in enumerate(_events(raw)):
        if name == "node.activated":
            active[entity] = True
        elif name in ("node.deactivated", "node.culled"):
            active[entity] = False
        elif name == "node.heartbeat_ping" and not active.get(entity):
            wrong.append((index, name, entity))
        elif name == "license.leased":
            held[entity] = True
        elif name in ("license.released", "license.lease_expired"):
            held[entity] = False
        elif name == "license.lease_extended" and not held.get(entity):
            wrong.append((index, name, entity))
    assert wrong == []
    rows = sum(1 for name, _ in _events(raw) if name == "license.lease_extended")
    assert sum(extended.values()) > 0, "no heartbeat was ever extended: the test tested nothing"
    assert rows == sum(extended.values())


def test_another_process_committing_while_a_batch_restarts_is_seen(
    store: SqliteStore, relay: Relay, clock: FrozenClock, raw: sqlite3.Connection
) -> None:
    """A batch's first writer fails (no license free), so the batch rolls back and begins
    again; another process removes a cached lease in that gap, and a cached heartbeat for it
    is answered during the rest of the batch. The batch must check data_version again and not
    write that heartbeat."""
    first = relay.claim("n1")
    relay.claim("n2")
    relay.claim("n3")  # every license is held now
    restarting = {"rolled back": False}

    def other_process_in_the_gap(conn: sqlite3.Connection, sql: str) -> None:
        if sql == "ROLLBACK":
            restarting["rolled back"] = True
        elif sql == "BEGIN IMMEDIATE" and restarting["rolled back"]:
            restarting["rolled back"] = False
            raw.execute("UPDATE nodes SET deactivated_at = 1 WHERE id = ?", (first.node.id,))
            raw.execute("DELETE FROM licenses WHERE id = ?", (first.license.id,))

    clock.advance(3)
    now = int(clock.now())

    def cached_heartbeat(tx: Any) -> None:  # an HTTP worker's, while the batch runs
        answered, lease = store._leases.attempt(lambda t: relay._claim(t, "n1", None, now))
        assert answered
        assert lease is not None

    slots = [_Slot(lambda tx: relay._claim(tx, "new", None, now)), _Slot(cached_heartbeat)]
    real = store._conn
    assert real is not None
    store._conn = Hooked(real, other_process_in_the_gap)  # type: ignore[assignment]
    try:
        with store._lock:
            store._run_batch(slots)
    finally:
        store._conn = real
    assert isinstance(slots[0].error, NoLicensesAvailableError)
    assert ("license.lease_extended", first.license.id) not in _events(raw)
    with pytest.raises(NoLicensesAvailableError):  # from SQL: n1 lost its license, none free
        relay.claim("n1")


def test_a_batch_whose_deferred_rows_fail_midway_fails_whole(
    store: SqliteStore, relay: Relay, clock: FrozenClock, raw: sqlite3.Connection
) -> None:
    """Writing earlier work's deferred rows fails, and SQLite rolls the whole transaction back
    (a full disk can): no piece of the batch may be reported done, or a later one would lease
    the same license again in autocommit."""
    now = int(clock.now())
    failing = {"armed": False}

    def disk_full_on_audit(conn: sqlite3.Connection, sql: str) -> None:
        if failing["armed"] and sql.startswith("INSERT INTO audit_logs"):
            failing["armed"] = False
            conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")

    def arm_then_claim(tx: Any) -> object:
        failing["armed"] = True
        return relay._claim(tx, "b", None, now)

    slots = [
        _Slot(lambda tx: relay._claim(tx, "a", None, now)),
        _Slot(arm_then_claim),
        _Slot(lambda tx: relay._claim(tx, "c", None, now)),
    ]
    real = store._conn
    assert real is not None
    store._conn = Hooked(real, disk_full_on_audit)  # type: ignore[assignment]
    try:
        with store._lock:
            assert store._run_batch(slots) is None
    finally:
        store._conn = real
    assert all(slot.error is not None for slot in slots)
    assert not real.in_transaction
    assert raw.execute("SELECT count(*) FROM licenses WHERE node_id IS NOT NULL").fetchone() == (0,)
    assert relay.claim("a").status is ClaimStatus.CREATED  # the store carries on

"""`SqliteStore.run`: concurrent work runs back to back in one transaction, each piece undone alone."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from relay_core.errors import StorageError
from relay_core.model import AuditEntry, EntityType, EventType
from relay_core.ports import AuditQuery
from relay_sqlite import SqliteStore
from relay_sqlite.transaction import SqliteTransaction

Work = Callable[[SqliteTransaction], Any]


def _queued(store: SqliteStore) -> int:
    with store._queue_mutex:
        return len(store._queue)


@contextmanager
def _held(store: SqliteStore, callers: int) -> Iterator[None]:
    """Hold the store's lock until `callers` calls of `run` are waiting, then let them go.

    The first caller leads and waits for the lock; the others queue behind it, so when the lock
    is released the leader takes all of them in one batch.
    """
    with store._lock:
        yield
        deadline = time.monotonic() + 10
        while _queued(store) < callers:
            assert time.monotonic() < deadline, f"only {_queued(store)} of {callers} queued"
            time.sleep(0.001)


def _run_all(store: SqliteStore, works: list[Work]) -> list[tuple[str, Any]]:
    """Call `store.run(work)` from one thread per work, all queued at once; ("ok"|"err", value)."""
    outcomes: list[tuple[str, Any]] = [("none", None)] * len(works)

    def call(index: int) -> None:
        try:
            outcomes[index] = ("ok", store.run(works[index]))
        except BaseException as exc:
            outcomes[index] = ("err", exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(works))]
    with _held(store, len(works)):
        for thread in threads:
            thread.start()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    return outcomes


def _add_pool(name: str, fail: bool = False) -> Work:
    def work(tx: SqliteTransaction) -> tuple[str, int]:
        tx.create_pool(name, 1)
        if fail:
            raise ValueError(name)
        return name, threading.get_ident()

    return work


def _pools(raw: sqlite3.Connection) -> set[str]:
    return {name for (name,) in raw.execute("SELECT name FROM pools")}


def test_queued_work_runs_in_one_thread_and_is_committed_when_each_call_returns(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    outcomes = _run_all(store, [_add_pool(f"p{i}") for i in range(8)])
    assert [kind for kind, _ in outcomes] == ["ok"] * 8
    assert [value[0] for _, value in outcomes] == [f"p{i}" for i in range(8)]
    assert len({value[1] for _, value in outcomes}) == 1  # the leader ran every piece
    assert _pools(raw) == {f"p{i}" for i in range(8)}  # another connection sees all of it


@pytest.mark.parametrize("failing", [{0}, {3}, {0, 1, 5}, {7}])
def test_work_that_raises_is_rolled_back_alone(
    store: SqliteStore, raw: sqlite3.Connection, failing: set[int]
) -> None:
    """The first piece runs without a savepoint, the later ones under one: both are undone alone."""
    outcomes = _run_all(store, [_add_pool(f"p{i}", fail=i in failing) for i in range(8)])
    for index, (kind, value) in enumerate(outcomes):
        if index in failing:
            assert kind == "err"
            assert isinstance(value, ValueError)
            assert str(value) == f"p{index}"
        else:
            assert kind == "ok"
    assert _pools(raw) == {f"p{i}" for i in range(8) if i not in failing}


class _FailingCommit:
    """The store's connection, except that COMMIT fails as a full disk would make it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_a_failed_commit_fails_every_call_it_covered_and_keeps_nothing(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    real = store._conn
    assert real is not None
    store._conn = _FailingCommit(real)  # type: ignore[assignment]
    try:
        outcomes = _run_all(store, [_add_pool(f"p{i}", fail=i == 2) for i in range(6)])
    finally:
        store._conn = real
    for index, (kind, value) in enumerate(outcomes):
        assert kind == "err"
        if index == 2:
            assert isinstance(value, ValueError)  # its own error, not the commit's
        else:
            assert isinstance(value, StorageError)
            assert "disk is full" in str(value)
    assert not real.in_transaction
    assert _pools(raw) == set()
    assert store.run(_add_pool("after"))[0] == "after"  # the store carries on
    assert _pools(raw) == {"after"}


def test_a_failed_begin_fails_the_whole_batch(store: SqliteStore, raw: sqlite3.Connection) -> None:
    """Another process holding the write lock beyond busy_timeout: every queued call says so."""
    raw.execute("PRAGMA busy_timeout = 0")
    blocker = sqlite3.connect(store.path, isolation_level=None)
    store._conn.execute("PRAGMA busy_timeout = 50")  # type: ignore[union-attr]
    blocker.execute("BEGIN IMMEDIATE")
    try:
        outcomes = _run_all(store, [_add_pool(f"p{i}") for i in range(4)])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert all(kind == "err" and isinstance(value, StorageError) for kind, value in outcomes)
    assert _pools(raw) == set()


def test_run_inside_work_is_refused(store: SqliteStore) -> None:
    with pytest.raises(StorageError, match="nested"):
        store.run(lambda tx: store.run(lambda inner: None))
    with pytest.raises(StorageError, match="nested"), store.transaction():
        store.run(lambda tx: None)


def test_many_threads_calling_run_repeatedly_all_finish(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    """The lead passes from caller to caller: nobody is left asleep, nothing is lost."""
    errors: list[BaseException] = []

    def steady(who: int) -> None:
        for n in range(40):
            try:
                store.run(_add_pool(f"t{who}-{n}", fail=n % 7 == 3))
            except ValueError:
                pass
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=steady, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    assert errors == []
    expected = {f"t{who}-{n}" for who in range(12) for n in range(40) if n % 7 != 3}
    assert _pools(raw) == expected
    assert _queued(store) == 0
    assert not store._leading


# -- BatchTransaction: heartbeats and audit rows are written together, at the end -----------


def _nodes(store: SqliteStore, *fingerprints: str) -> list[int]:
    with store.transaction() as tx:
        return [tx.activate_node(fp, 1).id for fp in fingerprints]


def _beat(node_id: int, now: int, *, fail: bool = False) -> Work:
    def work(tx: SqliteTransaction) -> None:
        tx.heartbeat_node(node_id, now)
        tx.append_audit(
            [AuditEntry(EventType.NODE_HEARTBEAT_PING, EntityType.NODE, node_id, None, now)]
        )
        if fail:
            raise ValueError(node_id)

    return work


def _beats(raw: sqlite3.Connection) -> dict[int, int | None]:
    return dict(raw.execute("SELECT id, last_heartbeat_at FROM nodes").fetchall())


def _audit_nodes(raw: sqlite3.Connection) -> list[int]:
    return [n for (n,) in raw.execute("SELECT entity_id FROM audit_logs ORDER BY id")]


def test_deferred_rows_of_work_that_raises_are_dropped(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    a, b, c = _nodes(store, "a", "b", "c")
    outcomes = _run_all(store, [_beat(a, 10), _beat(b, 11, fail=True), _beat(c, 12)])
    assert [kind for kind, _ in outcomes] == ["ok", "err", "ok"]
    assert _beats(raw) == {a: 10, b: None, c: 12}
    assert _audit_nodes(raw) == [a, c]


def test_a_read_sees_earlier_deferred_rows_and_its_failure_keeps_them(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    """The earlier rows are written before the reader's savepoint, so undoing it spares them."""
    a, b = _nodes(store, "a", "b")
    seen: list[object] = []

    def reader(tx: SqliteTransaction) -> None:
        seen.append([r.entity_id for r in tx.read_audit(AuditQuery(limit=10))])
        tx.heartbeat_node(b, 20)
        seen.append([n.id for n, _ in [tx.get_node_lease("b")] if n.last_heartbeat_at == 20])
        raise ValueError("reader")

    outcomes = _run_all(store, [_beat(a, 10), reader, _beat(a, 30)])
    assert [kind for kind, _ in outcomes] == ["ok", "err", "ok"]
    # It failed after writing in a batch run without savepoints, so the batch ran again with
    # them; each time the reader saw a's audit row, and its own pending heartbeat.
    assert seen == [[a], [b], [a], [b]]
    assert _beats(raw) == {a: 30, b: None}
    assert _audit_nodes(raw) == [a, a]


def test_a_cull_in_the_same_batch_sees_pending_heartbeats(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    """Earlier work's and its own: neither node is culled, only the one really stale."""
    fresh, own, stale = _nodes(store, "fresh", "own", "stale")
    with store.transaction() as tx:
        for node_id in (fresh, own, stale):
            tx.heartbeat_node(node_id, 100)

    def cull(tx: SqliteTransaction) -> list[int]:
        tx.heartbeat_node(own, 200)
        return [c.node_id for c in tx.cull_batch(150, 200, 10)]

    outcomes = _run_all(store, [_beat(fresh, 200), cull])
    assert outcomes[1] == ("ok", [stale])
    assert _beats(raw) == {fresh: 200, own: 200, stale: 100}


@contextmanager
def _traced(store: SqliteStore) -> Iterator[list[str]]:
    """Every statement the store's connection runs inside the block."""
    assert store._conn is not None
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        store._conn.set_trace_callback(None)


def _counting(calls: list[str], name: str, work: Work) -> Work:
    def counted(tx: SqliteTransaction) -> Any:
        calls.append(name)
        return work(tx)

    return counted


def test_a_batch_that_does_not_fail_takes_no_savepoint(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    """Issue 14.4: work that writes after other work needs no SAVEPOINT when nothing fails."""
    a, b = _nodes(store, "a", "b")
    with _traced(store) as statements:
        outcomes = _run_all(store, [_add_pool("p1"), _beat(a, 10), _add_pool("p2"), _beat(b, 11)])
    assert [kind for kind, _ in outcomes] == ["ok"] * 4
    assert not any(sql.startswith("SAVEPOINT") for sql in statements)
    assert _pools(raw) == {"p1", "p2"}
    assert _beats(raw) == {a: 10, b: 11}
    # Deferred rows are written once, before the COMMIT: one UPDATE per time, one INSERT.
    writes = [sql.split()[0] for sql in statements if sql.startswith(("UPDATE", "INSERT"))]
    assert writes == ["INSERT", "INSERT", "UPDATE", "UPDATE", "INSERT"]


def test_work_failing_after_a_write_runs_the_batch_again_with_savepoints(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    """The batch is rolled back and every piece runs again, undone alone as before; the next
    batches keep their savepoints, so an exhausted pool does not pay for each batch twice."""
    calls: list[str] = []
    works = [
        _counting(calls, "p0", _add_pool("p0")),
        _counting(calls, "p1", _add_pool("p1", fail=True)),
        _counting(calls, "p2", _add_pool("p2")),
    ]
    with _traced(store) as statements:
        outcomes = _run_all(store, works)
    assert [kind for kind, _ in outcomes] == ["ok", "err", "ok"]
    assert isinstance(outcomes[1][1], ValueError)
    assert calls == ["p0", "p1", "p0", "p1", "p2"]
    assert statements.count("ROLLBACK") == 1  # the first run, without savepoints
    assert "ROLLBACK TO work" in statements  # the second run undid p1 alone
    assert _pools(raw) == {"p0", "p2"}
    with _traced(store) as statements:
        assert [kind for kind, _ in _run_all(store, [_add_pool("p3"), _add_pool("p4")])] == [
            "ok",
            "ok",
        ]
    assert "SAVEPOINT work" in statements
    assert _pools(raw) == {"p0", "p2", "p3", "p4"}


def test_work_failing_before_it_writes_is_dropped_without_running_again(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    """A failure with nothing written (a release of an unknown node) needs no rollback."""
    calls: list[str] = []

    def unknown(tx: SqliteTransaction) -> None:
        calls.append("unknown")
        assert tx.get_node_lease("nobody") is None
        raise ValueError("not found")

    works = [_add_pool("p0"), unknown, _add_pool("p2")]
    with _traced(store) as statements:
        outcomes = _run_all(store, works)
    assert [kind for kind, _ in outcomes] == ["ok", "err", "ok"]
    assert calls == ["unknown"]
    assert "ROLLBACK" not in statements
    assert _pools(raw) == {"p0", "p2"}

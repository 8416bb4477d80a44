"""`SqliteStore`: Relay's default store, one SQLite file shared by threads and processes.

One connection per store, guarded by a first-come-first-served lock taken in front of
`BEGIN IMMEDIATE`. Writes are serialised by SQLite anyway; queuing the threads on a fair Python
lock instead of SQLite's busy handler (which sleeps 1, 2, 5 … 100 ms) keeps tail latency low,
and one connection keeps one warm page cache. Other processes (`relay add` while `relay serve`
runs) wait on `busy_timeout`.

Work handed to `run` is combined: the first caller becomes the leader and runs everything queued
meanwhile in one transaction (`BatchTransaction`: each piece undone alone, heartbeats and audit
rows written together), while the others sleep until their piece is committed. A server's
threads then take turns at the connection without each waking the next, and share one BEGIN,
one COMMIT and one write of each page they all touch.

Heartbeats for leases the store has already read are answered before any of that, from a
`LeaseCache`, and written by the next transaction; a background thread runs one
`FLUSH_INTERVAL` after the first unwritten heartbeat (see `relay_sqlite.leases`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from relay_core.closing import close_at_exit
from relay_core.errors import StorageAccessError, StorageError

from .batch import BatchTransaction
from .connection import _busy_ms, connect, data_version, merged_pragmas, migrate
from .errors import translate
from .fairlock import FairLock
from .leases import FLUSH_INTERVAL, LeaseCache
from .transaction import SqliteTransaction

__all__ = ["SqliteStore", "open_store"]

T = TypeVar("T")

_NO_PRAGMAS: Mapping[str, str] = {}

CHECKPOINT_AFTER_CHANGES = 500
"""Rows changed between the store's own passive checkpoints (about 1,000 WAL pages)."""

RESTART_AFTER_FRAMES = 4096
"""Frames (8 KB each) the log may hold before a checkpoint waits for the store's lock so that
it can copy them all and let the next write rewind the log (see `_checkpoint_fully`)."""

CAREFUL_BATCHES = 64
"""Batches run with savepoints after one had to run again with them (see `_run_batch`)."""


class _Again:
    """`_try_batch`'s answer when the batch must run again with savepoints."""


_AGAIN = _Again()


class SqliteStore:
    """A `relay_core.ports.Store` on the SQLite file at `path`, schema-compatible with Keygen Relay.

    Opening creates and migrates the file; `pragmas` override the defaults of
    `relay_sqlite.DEFAULT_PRAGMAS` and are applied to the connection. Thread-safe; other
    processes may use the file meanwhile, but only one should serve claims (see the README:
    a heartbeat answered from the lease cache may lag another process's commit by 250 ms).
    Close it, or use it as a context manager; one left open is closed at interpreter exit.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, pragmas: Mapping[str, str] = _NO_PRAGMAS
    ) -> None:
        self.path = os.fspath(path)
        self.pragmas = merged_pragmas(pragmas)
        self._busy_ms = _busy_ms(self.pragmas)
        self._lock = FairLock()
        self._owner: int | None = None
        self._queue_mutex = threading.Lock()
        self._queue: list[_Slot] = []
        self._leading = False
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_lock = threading.Lock()
        self._conn: sqlite3.Connection | None = connect(self.path, self.pragmas)
        self._changes_at_checkpoint = 0
        self._identity = _identity(self.path)
        self._leases = LeaseCache()
        self._careful = 0  # batches still to run with savepoints after one needed them
        self._flush_wanted = threading.Event()
        self._closing = threading.Event()
        self._flusher: threading.Thread | None = None
        self._flusher_lock = threading.Lock()
        try:
            migrate(self._conn, self.path)
            if "wal_autocheckpoint" not in self.pragmas:
                # Checkpoints run after the lock is released (see `_after_commit`), so no
                # thread waits on the lock while another's commit copies the WAL and fsyncs.
                self._conn.execute("PRAGMA wal_autocheckpoint = 0").fetchall()
        except sqlite3.Error as exc:
            self._conn.close()
            raise self._translate(exc) from exc
        except BaseException:
            self._conn.close()
            raise
        self._forget_at_exit = close_at_exit(self)

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _translate(self, exc: sqlite3.Error) -> StorageError:
        return translate(exc, self.path, busy_timeout_ms=self._busy_ms)

    @contextmanager
    def transaction(self) -> Iterator[SqliteTransaction]:
        """A `BEGIN IMMEDIATE` unit of work: commit on normal exit, roll back on an exception."""
        self._refuse_nested()
        with self._lock:
            conn = self._usable()
            self._owner = threading.get_ident()
            try:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    verify = self._leases.checked(data_version(conn))
                except sqlite3.Error as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise self._translate(exc) from exc
                # This work may change anything: the cache forgets everything, and the
                # heartbeats it answered are written first.
                self._leases.clear()
                pending = BatchTransaction(conn, self._translate, self._leases, verify=verify)
                try:
                    pending.flush()
                    yield SqliteTransaction(conn, self._translate)
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    pending.give_back()
                    raise
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    pending.give_back()
                    raise self._translate(exc) from exc
                self._leases.committed()
                changes = conn.total_changes
            finally:
                self._owner = None
        self._after_commit(changes)

    def run(self, work: Callable[[SqliteTransaction], T]) -> T:
        """`work(tx)` in a transaction, committed before this returns (`CombiningStore`).

        If `work` raises, its changes alone are rolled back and the exception is re-raised
        here; if the shared commit fails, every call it covered raises the `StorageError`.
        Work the lease cache can answer (a heartbeat) returns at once, and is committed by the
        next transaction, about `FLUSH_INTERVAL` later at most while writes succeed.
        """
        self._refuse_nested()
        if self._leases.fresh():
            answered, value = self._leases.attempt(work)
            if answered:
                if self._leases.pending and not self._flush_wanted.is_set():
                    self._flush_soon()
                return value  # type: ignore[return-value]
        return self._combined(work)

    def _combined(self, work: Callable[[SqliteTransaction], T]) -> T:
        slot = _Slot(work)
        with self._queue_mutex:
            self._queue.append(slot)
            follow = self._leading
            self._leading = True
        if follow:
            slot.gate.acquire()  # released once our work is done, or to make us the leader
        if not slot.finished:
            self._lead(slot)
        return slot.outcome()  # type: ignore[no-any-return]

    def _lead(self, mine: _Slot) -> None:
        """Run the queued work as one transaction, wake its callers, and pass the lead on."""
        batch: list[_Slot] = []
        changes = None
        try:
            with self._lock:
                with self._queue_mutex:
                    batch, self._queue = self._queue, []
                self._owner = threading.get_ident()
                try:
                    changes = self._run_batch(batch)
                finally:
                    self._owner = None
        finally:
            with self._queue_mutex:
                if mine in self._queue:  # interrupted before taking the batch
                    self._queue.remove(mine)
                successor = self._queue[0] if self._queue else None
                self._leading = successor is not None
            for slot in batch:
                if not slot.finished:  # only if _run_batch itself was interrupted
                    slot.fail(StorageError(f"database {self.path}: transaction interrupted"))
                if slot is not mine:
                    slot.gate.release()
            if successor is not None:
                successor.gate.release()
        if changes is not None:
            self._after_commit(changes)
        elif self._leases.pending:  # the batch gave heartbeats back: have them retried
            self._flush_soon()

    def _run_batch(self, batch: list[_Slot]) -> int | None:
        """Each slot's work in one transaction, undone alone if it fails; the store's total
        changes once committed, or None if nothing was (each slot then holds its error).

        Work rarely fails after writing, so a batch first runs without savepoints. If a piece
        does fail after writing, the transaction is rolled back and the batch runs again with
        them, as do the next `CAREFUL_BATCHES` (a pool that stays exhausted fails that way on
        every claim by a new node, and should not pay for each batch twice).
        """
        if self._careful:
            self._careful -= 1
        else:
            changes = self._try_batch(batch, savepoints=False)
            if not isinstance(changes, _Again):
                return changes
            self._careful = CAREFUL_BATCHES
            for slot in batch:
                slot.reset()
        changes = self._try_batch(batch, savepoints=True)
        assert not isinstance(changes, _Again)  # with savepoints every piece is undoable
        return changes

    def _try_batch(self, batch: list[_Slot], *, savepoints: bool) -> int | _Again | None:
        """`_run_batch` with or without savepoints; `_AGAIN` when a piece could not be undone
        alone without them (nothing is then committed, and no slot holds an outcome)."""
        conn = None
        try:
            conn = self._usable()
            conn.execute("BEGIN IMMEDIATE")
            verify = self._leases.checked(data_version(conn))
        except (sqlite3.Error, StorageError) as exc:
            if conn is not None and conn.in_transaction:
                conn.execute("ROLLBACK")
            for slot in batch:
                slot.fail(self._as_storage_error(exc))
            return None
        tx = BatchTransaction(
            conn, self._translate, self._leases, verify=verify, savepoints=savepoints
        )
        done: list[_Slot] = []
        for index, slot in enumerate(batch):
            tx.begin_work()
            try:
                slot.succeed(slot.work(tx))
                done.append(slot)
            except BaseException as exc:
                if not tx.undoable:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    tx.give_back()
                    return _AGAIN
                failed = self._as_storage_error(exc)
                slot.fail(failed)
                lost = self._undo(tx, conn, failed)
                if lost is not None:
                    # SQLite may have rolled back the whole transaction itself (a full disk,
                    # an I/O error), or deferred rows were half written: the work done so
                    # far is gone or unusable, and nothing more can run.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    tx.give_back()
                    for other in done + batch[index + 1 :]:
                        other.fail(lost)
                    return None
        try:
            tx.flush()
            conn.execute("COMMIT")
        except (sqlite3.Error, StorageError) as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            tx.give_back()
            failed = self._as_storage_error(exc)
            for slot in done:
                slot.fail(failed)
            return None
        self._leases.committed()
        self._leases.remember(*tx.cacheable())
        return conn.total_changes

    def _undo(
        self, tx: BatchTransaction, conn: sqlite3.Connection, failed: BaseException
    ) -> BaseException | None:
        """Undo the failed piece of work alone; the error that ends the batch if it cannot."""
        if tx.broken:
            return failed
        try:
            tx.undo_work()
        except sqlite3.Error as undo:
            return self._translate(undo)
        if not conn.in_transaction:
            return StorageError(f"database {self.path}: the transaction was rolled back")
        return None

    def _flush_soon(self) -> None:
        """Have the flusher thread write the cache's pending heartbeats shortly."""
        with self._flusher_lock:
            if self._flusher is None and not self._closing.is_set():
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="relay-sqlite-flush", daemon=True
                )
                self._flusher.start()
        self._flush_wanted.set()

    def _flush_loop(self) -> None:
        try:
            while self._flush_wanted.wait() and not self._closing.wait(FLUSH_INTERVAL):
                self._flush_wanted.clear()
                if self._closing.is_set():  # close() set the flag just before it was cleared
                    return
                with contextlib.suppress(StorageError):  # the next round tries again
                    self._combined(_nothing)
        finally:  # on a bug, the next heartbeat answered from the cache starts another
            with self._flusher_lock:
                if self._flusher is threading.current_thread():
                    self._flusher = None

    def _refuse_nested(self) -> None:
        """The thread running a transaction's work must not open another: it would deadlock."""
        if self._owner == threading.get_ident():
            raise StorageError(f"database {self.path}: nested transactions are not supported")

    def _as_storage_error(self, exc: BaseException) -> BaseException:
        """A driver error as the `StorageError` callers expect; anything else as it is."""
        return self._translate(exc) if isinstance(exc, sqlite3.Error) else exc

    def _usable(self) -> sqlite3.Connection:
        """The connection, if the store is open and its file is still the one opened."""
        conn = self._conn
        if conn is None:
            raise StorageError(f"database {self.path} is closed")
        if not self._in_place(conn):
            raise StorageAccessError(
                f"database {self.path} was deleted or replaced while in use; "
                "restart relay to open the file now at that path"
            )
        return conn

    def _in_place(self, conn: sqlite3.Connection) -> bool:
        """Whether the file at `path` is still the one opened (same device and inode).

        A connection keeps writing to a deleted or replaced file, so answers would report
        changes nobody can see, and its write-ahead log, left under the old name, would be
        replayed into the new file on the next open and corrupt it. So once the file is gone,
        every transaction fails, and the log is emptied into the old file (TRUNCATE).
        """
        if self._identity is None or self._identity == _identity(self.path):
            return True
        with contextlib.suppress(sqlite3.Error):  # else the log stays; nothing more to do here
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return False

    def _after_commit(self, changes: int) -> None:
        """Checkpoint once about 1,000 pages may have piled up, as SQLite's own default would.

        Rows changed stand in for pages written (a claim changes ~5 rows and dirties ~10
        pages). It runs outside the store's lock, and is skipped if another thread is already
        checkpointing.
        """
        if changes - self._changes_at_checkpoint < CHECKPOINT_AFTER_CHANGES:
            return
        if not self._checkpoint_lock.acquire(blocking=False):
            return
        try:
            self._changes_at_checkpoint = changes
            self._checkpoint_fully()
        except StorageError:
            pass  # a failed checkpoint is retried after the next commits; the data is safe
        finally:
            self._checkpoint_lock.release()

    def checkpoint(self) -> tuple[int, int]:
        """Copy committed WAL pages into the database (PASSIVE), the last few with the store's
        lock held once the log is long (see `_checkpoint_fully`).

        Runs on a connection of its own, so transactions keep going meanwhile. Call it from a
        background loop (the HTTP server's cull loop): commits then rarely pay for SQLite's
        automatic checkpoint and its fsync. Returns (frames in the WAL, frames checkpointed);
        (0, 0) when the journal is not WAL or the store is closed.
        """
        with self._checkpoint_lock:
            return self._checkpoint_fully()

    def _checkpoint_fully(self) -> tuple[int, int]:
        """A passive checkpoint; then, once the log holds `RESTART_AFTER_FRAMES`, another with
        the store's lock held, so that every frame is copied when the next write begins and
        that write rewinds the log to its start.

        SQLite rewinds the log only for a write that begins after a checkpoint has copied all
        of it. Beside a steady stream of commits a passive checkpoint almost never has, so the
        log grew for as long as the load lasted (280 MB after 15 s of wrk's claims and
        releases), each commit appending to new blocks of the file. The first pass, outside
        the lock, copies most frames; the second only those committed during the first (1.4 ms
        in the median, in process, under that load). Other processes' commits can still keep
        the log from rewinding; SQLite then does so at the next quiet moment.
        """
        frames, done = self._checkpoint()
        mine = self._owner == threading.get_ident()  # called from inside a transaction
        if frames >= RESTART_AFTER_FRAMES and self._conn is not None and not mine:
            with self._lock:
                frames, done = self._checkpoint()
        return frames, done

    def _checkpoint(self) -> tuple[int, int]:
        if self._conn is None:
            return 0, 0
        try:
            if self._checkpointer is None:
                self._checkpointer = connect(self.path, self.pragmas)
            row = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        _, frames, done = row
        return max(frames, 0), max(done, 0)

    def close(self) -> None:
        """Write the pending heartbeats, then close the connections; idempotent.

        Later transactions raise `StorageError`; so does this call if the heartbeats could
        not be written. A store never closed is closed at interpreter exit.
        """
        self._forget_at_exit()
        with self._flusher_lock:
            self._closing.set()
            self._flush_wanted.set()
            flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.join()
        self._leases.close()
        try:
            # Queued behind any batch still running, so its heartbeats, if it gives them
            # back, are written too.
            if (flusher is not None or self._leases.pending) and self._conn is not None:
                self._combined(_nothing)
        finally:
            self._close_connections()

    def _close_connections(self) -> None:
        with self._checkpoint_lock, self._lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
            if self._conn is not None:
                self._in_place(self._conn)
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"


class _Slot:
    """One caller's work in `SqliteStore.run`, its outcome, and the gate its thread sleeps on."""

    __slots__ = ("error", "finished", "gate", "value", "work")

    def __init__(self, work: Callable[[SqliteTransaction], Any]) -> None:
        self.work = work
        self.gate = threading.Lock()
        self.gate.acquire()
        self.finished = False
        self.value: Any = None
        self.error: BaseException | None = None

    def succeed(self, value: Any) -> None:
        self.value, self.finished = value, True

    def reset(self) -> None:
        """Forget the outcome: the work runs again (its transaction was rolled back)."""
        self.value, self.error, self.finished = None, None, False

    def fail(self, error: BaseException) -> None:
        self.value, self.error, self.finished = None, error, True

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def _nothing(tx: SqliteTransaction) -> None:
    """Work for a transaction run only to write what is pending."""


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the database file; None if there is none (or it is in memory)."""
    if path == ":memory:" or path.startswith("file:"):
        return None
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def open_store(database: str, *, pragmas: Mapping[str, str] = _NO_PRAGMAS) -> SqliteStore:
    """The `relay.storage` entry point `sqlite`: a plain path or a `sqlite://<path>` URL."""
    path = database.removeprefix("sqlite://") if database.startswith("sqlite://") else database
    if not path:
        raise StorageError("database path is empty")
    return SqliteStore(path, pragmas=pragmas)


if TYPE_CHECKING:
    from relay_core.ports import CombiningStore, Store

    _: type[Store] = SqliteStore
    __: type[CombiningStore] = SqliteStore

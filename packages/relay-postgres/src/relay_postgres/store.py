"""`PostgresStore`: Relay's store on a PostgreSQL database that several replicas share.

Each unit of work borrows a connection from a psycopg pool and runs in one transaction on it;
a heartbeat is answered after one read and written a moment later, in a batch
(`relay_postgres.beats`).
Nothing is cached between transactions, since another replica may change any row at any
moment: the database's constraints and row locks keep the leases right (see
`relay_postgres.transaction`).

When the server goes away, every call fails within `pool_timeout` seconds with
`StorageUnavailableError` (HTTP 503), broken connections are dropped, and the pool reconnects
on its own once the server is back; `check()` tells a health probe which state it is in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool
from relay_core.closing import close_at_exit
from relay_core.errors import StorageError

from .beats import FLUSH_INTERVAL, MAX_PENDING, NotAHeartbeat, Pending, ProbeTransaction
from .errors import describe, is_retryable, is_transient, newer_schema, translate
from .migrations import LATEST_VERSION, MIGRATION_LOCK, MIGRATIONS
from .transaction import PostgresTransaction

__all__ = ["DEFAULT_OPTIONS", "PostgresStore", "open_store"]

log = logging.getLogger("relay.postgres")

T = TypeVar("T")

DEFAULT_OPTIONS: Mapping[str, str] = {
    "pool_size": "16",
    "pool_timeout": "5",
}
"""Store options (`--pragma key=value`): connections per replica and seconds to wait for one."""

# libpq settings that bound every wait on a server that stopped answering: the connect, and
# (TCP keepalives, unacknowledged writes) a connection that died without a word.
_CONNECT_DEFAULTS: Mapping[str, str] = {
    "connect_timeout": "3",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "2",
    "tcp_user_timeout": "8000",
    "application_name": "relay",
}
_DOWN_TIMEOUT = 0.5
"""Seconds to wait for a connection while the server is known to be down: requests then fail
(HTTP 503) at once instead of each waiting the whole pool timeout; a reconnection still gets
its chance, as the pool tries again for each request that waits."""
_CHECK_TIMEOUT = 2.0
"""At most this long for a health check to get a connection."""
_ATTEMPTS = 3
"""Runs of one piece of work (`run`) when it fails for a reason worth retrying (a deadlock, a
connection the server dropped) before anything was committed."""


def _options(pragmas: Mapping[str, str]) -> tuple[int, float]:
    unknown = sorted(set(pragmas) - set(DEFAULT_OPTIONS))
    if unknown:
        known = ", ".join(sorted(DEFAULT_OPTIONS))
        raise StorageError(f"unknown postgresql option {unknown[0]!r} (known: {known})")
    merged = {**DEFAULT_OPTIONS, **pragmas}
    try:
        size, timeout = int(merged["pool_size"]), float(merged["pool_timeout"])
    except ValueError as exc:
        raise StorageError(f"invalid postgresql option: {exc}") from None
    if size < 1 or not timeout > 0:
        raise StorageError("postgresql options pool_size and pool_timeout must be positive")
    return size, timeout


class PostgresStore:
    """A `relay_core.ports.Store` on the PostgreSQL database `conninfo` names (URL or key=value).

    Opening connects once, creates or migrates the schema (under an advisory lock, so replicas
    starting together migrate once) and starts the pool. `pragmas`: see `DEFAULT_OPTIONS`.
    Thread-safe; any number of stores, in any number of processes, may share one database.
    """

    def __init__(self, conninfo: str, *, pragmas: Mapping[str, str] | None = None) -> None:
        self.where = describe(conninfo)
        size, self._timeout = _options(pragmas or {})
        try:
            given = conninfo_to_dict(conninfo)
        except psycopg.Error as exc:
            raise StorageError(f"invalid database URL {self.where}: {exc}") from None
        extra = {k: v for k, v in _CONNECT_DEFAULTS.items() if k not in given}
        self.conninfo = make_conninfo(conninfo, **extra)
        self._closed = False
        self._down = False
        self._pending = Pending()
        self._flush_wanted = threading.Event()
        self._closing = threading.Event()
        self._flusher: threading.Thread | None = None
        self._flusher_lock = threading.Lock()
        self._checking = threading.Lock()
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                migrate(conn, self.where)
        except psycopg.Error as exc:
            raise translate(exc, self.where) from exc
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True},
            timeout=self._timeout,
            # Give up a reconnection after a second: the next request that needs a connection
            # starts a new one, so the pool is back within about a second of the server.
            reconnect_timeout=1.0,
            name=f"relay {self.where}",
            open=False,
        )
        self._pool.open(wait=False)
        self._forget_at_exit = close_at_exit(self)

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _translate(self, exc: BaseException) -> StorageError:
        error = translate(exc, self.where)
        if is_transient(exc):
            if not self._down:
                log.error("lost the database: %s", error)
            self._down = True
            self._purge_soon()
        return error

    def _purge_soon(self) -> None:
        """Drop the pool's idle connections that died with the server, from a thread of its own."""
        if self._closed or not self._checking.acquire(blocking=False):
            return

        def purge() -> None:
            try:
                self._pool.check()
            except Exception as exc:  # the next failure tries again
                log.debug("pool check failed: %s", exc)
            finally:
                self._checking.release()

        threading.Thread(target=purge, name="relay-postgres-check", daemon=True).start()

    @contextmanager
    def _connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        if self._closed:
            raise StorageError(f"database {self.where} is closed")
        wait = self._timeout if timeout is None else min(timeout, self._timeout)
        if self._down:
            wait = min(wait, _DOWN_TIMEOUT)
        try:
            conn = self._pool.getconn(timeout=wait)
        except Exception as exc:
            raise self._translate(exc) from exc
        try:
            yield conn
        finally:
            self._pool.putconn(conn)
        if self._down:
            log.warning("the database %s is back", self.where)
            self._down = False

    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        """One transaction on a pooled connection: commit on normal exit, roll back on error.

        Heartbeats answered but not yet written (`relay_postgres.beats`) are committed first,
        so that what it reads and writes comes after them.
        """
        with self._connection() as conn:
            self._write_pending(conn)
            try:
                with conn.transaction():
                    yield PostgresTransaction(conn, self._translate)
            except psycopg.Error as exc:  # BEGIN, a write or COMMIT failed
                raise self._translate(exc) from exc

    def _write_pending(self, conn: psycopg.Connection[Any]) -> None:
        """Commit the queued heartbeats in a transaction of their own, or give them back.

        Not inside the next piece of work's transaction: the flush locks the rows of several
        nodes, and work that then locked one more node could deadlock with another replica
        doing the same the other way round.
        """
        taken = self._pending.take()
        if not taken:
            return
        try:
            with conn.transaction():
                Pending.write(conn, taken)
        except psycopg.Error as exc:
            self._pending.give_back(taken)
            raise self._translate(exc) from exc
        except BaseException:
            self._pending.give_back(taken)
            raise

    def _flush(self) -> None:
        """Commit the queued heartbeats now."""
        with self._connection() as conn:
            self._write_pending(conn)

    def run(self, work: Callable[[PostgresTransaction], T]) -> T:
        """`work(tx)` in one transaction, committed before this returns (`CombiningStore`).

        A heartbeat is answered after its read, and written within `FLUSH_INTERVAL` (see
        `relay_postgres.beats`). Work that fails before its commit with a deadlock, a
        serialization failure or a connection the server dropped runs again, up to `_ATTEMPTS`
        times: it changed nothing.
        """
        if len(self._pending) < MAX_PENDING:
            answered, value = self._probe(work)
            if answered:
                return value  # type: ignore[return-value]
        for attempt in range(1, _ATTEMPTS + 1):
            committing = False
            try:
                with self.transaction() as tx:
                    value = work(tx)
                    committing = True
            except StorageError as exc:
                if committing or attempt == _ATTEMPTS or not is_retryable(exc.__cause__):
                    raise
                log.debug("running the work again after: %s", exc)
                continue
            return value
        raise AssertionError("unreachable")  # pragma: no cover

    def _probe(self, work: Callable[[PostgresTransaction], T]) -> tuple[bool, T | None]:
        """(True, result) if `work` was a heartbeat, answered and queued; else (False, None)."""
        with self._connection() as conn:
            probe = ProbeTransaction(conn, self._translate)
            try:
                value = work(probe)  # type: ignore[arg-type]
            except NotAHeartbeat:
                return False, None
            except StorageError as exc:
                if is_retryable(exc.__cause__):
                    return False, None  # the transaction path retries on a fresh connection
                raise
        if probe.beat is None:
            return False, None
        if self._pending.add(probe.beat, probe.audit):
            self._flush_soon()
        return True, value

    def _flush_soon(self) -> None:
        """Have the flusher thread write the queued heartbeats within `FLUSH_INTERVAL`."""
        with self._flusher_lock:
            if self._flusher is None and not self._closing.is_set():
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="relay-postgres-flush", daemon=True
                )
                self._flusher.start()
        self._flush_wanted.set()

    def _flush_loop(self) -> None:
        while self._flush_wanted.wait() and not self._closing.wait(FLUSH_INTERVAL):
            self._flush_wanted.clear()
            if self._closing.is_set():  # close() set the flag just before it was cleared
                return
            try:
                self._flush()
            except StorageError as exc:  # given back: try again a moment later
                log.debug("writing heartbeats failed: %s", exc)
                if len(self._pending):
                    self._flush_wanted.set()
                    self._closing.wait(FLUSH_INTERVAL * 10)

    def check(self) -> None:
        """Raise `StorageUnavailableError` unless the database answers now (health probes)."""
        with self._connection(_CHECK_TIMEOUT) as conn:
            try:
                conn.execute("SELECT 1").fetchone()
            except psycopg.Error as exc:
                raise self._translate(exc) from exc

    def close(self) -> None:
        """Write the queued heartbeats, then close the pool; idempotent.

        Later calls raise `StorageError`; so does this one if the heartbeats could not be
        written. A store never closed is closed at interpreter exit.
        """
        self._forget_at_exit()
        if self._closed:
            return
        with self._flusher_lock:
            self._closing.set()
            self._flush_wanted.set()
            flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.join()
        try:
            if len(self._pending):
                self._flush()
        finally:
            self._closed = True
            self._pool.close(timeout=5)

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"


def migrate(conn: psycopg.Connection[Any], where: str) -> int:
    """Bring the schema to `LATEST_VERSION` under the advisory lock; return how many ran."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS relay_schema ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at BIGINT NOT NULL DEFAULT (EXTRACT(EPOCH FROM now())::BIGINT), "
            "applied_by TEXT NOT NULL DEFAULT (pg_backend_pid()::TEXT || '@' || "
            "COALESCE(inet_client_addr()::TEXT, 'local')))"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM relay_schema").fetchone()
        current = int(row[0]) if row else 0
        if current > LATEST_VERSION:
            raise newer_schema(where, current, LATEST_VERSION)
        ran = 0
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                conn.execute(statement.encode())
            conn.execute(
                "INSERT INTO relay_schema (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            log.info("applied migration %d %s to %s", migration.version, migration.name, where)
            ran += 1
        return ran


def open_store(database: str, *, pragmas: Mapping[str, str] | None = None) -> PostgresStore:
    """The `relay.storage` entry points `postgresql` and `postgres`: a libpq URL."""
    if database.startswith("postgres://"):
        database = "postgresql://" + database.removeprefix("postgres://")
    return PostgresStore(database, pragmas=pragmas)


if TYPE_CHECKING:
    from relay_core.ports import CombiningStore, Store

    _: type[Store] = PostgresStore
    __: type[CombiningStore] = PostgresStore

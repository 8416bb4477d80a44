"""Storage benchmark: `SqliteStore` against a bare-`sqlite3` floor measured in the same run.

    python bench/storage.py            # full run (100 … 100,000 licenses; ~2 minutes, ~1.3 GB temp)
    python bench/storage.py --quick    # up to 10,000 licenses, fewer rounds (~20 s)

Measures, per strategy (fifo, lifo, rand) and pool size:

- claim+release cycles per second through `SqliteStore`'s transaction primitives, in the order
  `relay_core.Relay` calls them, against the floor: the same SQL statements on the same file
  through a bare `sqlite3` connection (no locks, no objects). Rounds are interleaved, and the
  ratios are medians of per-round ratios (absolute numbers drift on a shared machine);
- how the claim cost grows from 1,000 to 100,000 licenses (an indexed pick stays flat);
- culling 100,000 expired leases through `Relay.cull()` (batches of 1,000): the longest single
  write transaction, total time, and the floor (same statements, bare `sqlite3`); and the idle
  cull (nothing expired, 100,000 live leases) before and after that mass cull;
- 16 threads claiming at once: one connection behind a fair lock (what `SqliteStore` does)
  against one connection per thread relying on SQLite's busy handler, with a plain
  process-wide lock, and with a fair one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from relay_core import Relay
from relay_core.model import AuditEntry, EntityType, EventType, Strategy
from relay_core.ports import Transaction
from relay_sqlite import SqliteStore
from relay_sqlite import transaction as q
from relay_sqlite.connection import merged_pragmas
from relay_sqlite.fairlock import FairLock

FILE_SIZE = 3700  # bytes, a typical Keygen license file
NOW = int(time.time())
STRATEGIES = (Strategy.FIFO, Strategy.LIFO, Strategy.RAND)

_ACTIVATE = (
    "INSERT INTO nodes (fingerprint, created_at) VALUES (?, ?) "
    "ON CONFLICT (fingerprint) DO UPDATE SET deactivated_at = NULL "
    "RETURNING id, fingerprint, last_heartbeat_at, created_at, deactivated_at"
)


# -- building databases ---------------------------------------------------------------------


def build(path: Path, licenses: int, *, leased: bool = False, heartbeat: int = NOW) -> None:
    """A fresh file with `licenses` global-pool licenses (optionally all leased, one per node)."""
    SqliteStore(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO licenses (guid, file, key, created_at) VALUES (?, ?, ?, ?)",
        (
            (f"guid-{i:06d}", os.urandom(FILE_SIZE), f"KEY-{i:06d}", NOW - 86400 + i // 10)
            for i in range(licenses)
        ),
    )
    if leased:
        conn.executemany(
            "INSERT INTO nodes (fingerprint, last_heartbeat_at, created_at) VALUES (?, ?, ?)",
            ((f"held-{i:06d}", heartbeat, NOW - 3600) for i in range(licenses)),
        )
        conn.execute("UPDATE licenses SET node_id = id, claims = 1, last_claimed_at = ?", (NOW,))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


# -- one claim+release cycle, through the store and on the floor -----------------------------


class StoreCycle:
    """Claim then release through `SqliteStore`, calling the primitives as `Relay` does."""

    def __init__(self, path: Path, strategy: Strategy) -> None:
        self.store = SqliteStore(path)
        self.strategy = strategy
        self.rng = random.Random(1)

    def claim(self, fp: str) -> None:
        with self.store.transaction() as tx:
            found = tx.get_node_lease(fp)
            node = found[0] if found is not None else tx.activate_node(fp, NOW)
            lic = tx.lease_free_license(None, node.id, self.strategy, NOW, self.rng)
            assert lic is not None
            tx.heartbeat_node(node.id, NOW)
            tx.append_audit(
                [
                    AuditEntry(EventType.NODE_ACTIVATED, EntityType.NODE, node.id, None, NOW),
                    AuditEntry(EventType.LICENSE_LEASED, EntityType.LICENSE, lic.id, None, NOW),
                    AuditEntry(EventType.NODE_HEARTBEAT_PING, EntityType.NODE, node.id, None, NOW),
                ]
            )

    def release(self, fp: str) -> None:
        with self.store.transaction() as tx:
            found = tx.get_node_lease(fp)
            assert found is not None
            node, held = found
            assert held is not None
            tx.release_license(held.id, NOW)
            tx.deactivate_node(node.id, NOW)
            tx.append_audit(
                [
                    AuditEntry(EventType.LICENSE_RELEASED, EntityType.LICENSE, held.id, None, NOW),
                    AuditEntry(EventType.NODE_DEACTIVATED, EntityType.NODE, node.id, None, NOW),
                ]
            )

    def close(self) -> None:
        self.store.close()


def floor_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for key, value in merged_pragmas({}).items():
        conn.execute(f"PRAGMA {key} = {value}").fetchall()
    return conn


class FloorCycle:
    """The same statements on a bare `sqlite3` connection: no lock, no objects, no checks."""

    def __init__(self, path: Path, strategy: Strategy, conn: sqlite3.Connection | None = None):
        self.conn = conn or floor_connection(path)
        self.strategy = strategy
        self.rng = random.Random(1)
        self.lease = q._LEASE_ORDERED[strategy][True] if strategy is not Strategy.RAND else ""

    def claim(self, fp: str) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        row = c.execute(q._NODE_LEASE, (fp,)).fetchone()
        if row is None:
            row = c.execute(_ACTIVATE, (fp, NOW)).fetchone()
        node = row[0]
        params = {"pool": None, "node": node, "now": NOW}
        if self.strategy is Strategy.RAND:
            low, high = c.execute(q._FREE_SPAN[True], params).fetchone()
            lic = None
            while lic is None:
                params["id"] = self.rng.randint(low, high)
                lic = c.execute(q._LEASE_ID[True], params).fetchone()
        else:
            lic = c.execute(self.lease, params).fetchone()
        c.execute("UPDATE nodes SET last_heartbeat_at = ? WHERE id = ?", (NOW, node))
        c.execute(
            q._AUDIT_SQL[3],
            (7, 2, node, None, NOW, 3, 1, lic[0], None, NOW, 8, 2, node, None, NOW),
        )
        c.execute("COMMIT")

    def release(self, fp: str) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        row = c.execute(q._NODE_LEASE, (fp,)).fetchone()
        node, lic_id = row[0], row[q._NODE_FIELDS]
        c.execute(
            "UPDATE licenses SET node_id = NULL, last_released_at = ? WHERE id = ?", (NOW, lic_id)
        )
        c.execute(
            "UPDATE nodes SET deactivated_at = ? WHERE id = ? AND deactivated_at IS NULL",
            (NOW, node),
        )
        c.execute(q._AUDIT_SQL[2], (5, 1, lic_id, None, NOW, 9, 2, node, None, NOW))
        c.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class Window:
    """Claims and releases with `size` leases outstanding: each step claims one node and releases
    the one claimed `size` steps earlier, so the leased set slides instead of standing still."""

    def __init__(self, cycle: StoreCycle | FloorCycle, size: int, tag: str) -> None:
        self.cycle = cycle
        self.size = size
        self.names = [f"{tag}-{i}" for i in range(size * 4)]
        self.step = size
        for i in range(size):
            cycle.claim(self.names[i])

    def run(self, cycles: int) -> float:
        """Seconds for `cycles` claim+release pairs."""
        names, n = self.names, len(self.names)
        start = time.perf_counter()
        for i in range(self.step, self.step + cycles):
            self.cycle.claim(names[i % n])
            self.cycle.release(names[(i - self.size) % n])
        self.step += cycles
        return time.perf_counter() - start

    def close(self) -> None:
        for i in range(self.step - self.size, self.step):
            self.cycle.release(self.names[i % len(self.names)])
        self.cycle.close()


def compare(
    path: Path, strategy: Strategy, rounds: int, chunks: int
) -> tuple[list[float], list[float]]:
    """Per round: (store seconds per cycle, floor/store throughput ratio).

    Store and floor alternate in chunks of 100 cycles on the same file, so checkpoint stalls
    and a noisy neighbour hit both alike.
    """
    size = 100
    window = max(1, min(50, int(path.stem.split("-")[-1]) // 4))
    store = Window(StoreCycle(path, strategy), window, "s")
    floor = Window(FloorCycle(path, strategy), window, "f")
    store.run(size)
    floor.run(size)  # warm the page cache
    per_cycle, ratios = [], []
    for r in range(rounds):
        spent = {"store": 0.0, "floor": 0.0}
        for c in range(chunks):
            order = (store, floor) if (r + c) % 2 == 0 else (floor, store)
            for side in order:
                spent["store" if side is store else "floor"] += side.run(size)
        per_cycle.append(spent["store"] / (size * chunks))
        ratios.append(spent["floor"] / spent["store"])
    store.close()
    floor.close()
    return per_cycle, ratios


def pick_cost(path: Path, strategy: Strategy, picks: int) -> float:
    """Seconds of `lease_free_license` alone, each in a transaction rolled back: the lowest of
    three medians (noise from neighbours only ever adds time).

    Nothing reaches the WAL, so this isolates the pick from I/O: an indexed pick stays flat as
    the pool grows.
    """
    return min(_pick_median(path, strategy, picks) for _ in range(3))


def _pick_median(path: Path, strategy: Strategy, picks: int) -> float:
    store = SqliteStore(path)
    rng = random.Random(3)
    times = []

    class Undo(Exception):
        pass

    for n in range(picks):
        try:
            with store.transaction() as tx:
                node = tx.activate_node(f"pick-{n}", NOW)
                start = time.perf_counter()
                lic = tx.lease_free_license(None, node.id, strategy, NOW, rng)
                times.append(time.perf_counter() - start)
                assert lic is not None
                raise Undo
        except Undo:
            pass
    store.close()
    return statistics.median(times)


# -- culling ---------------------------------------------------------------------------------


class TimedStore:
    """A `Store` that records how long each transaction (the write lock) was held."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.durations: list[float] = []

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        start = time.perf_counter()
        with self.inner.transaction() as tx:
            yield tx
        self.durations.append(time.perf_counter() - start)

    def close(self) -> None:
        self.inner.close()


def floor_cull(conn: sqlite3.Connection, cutoff: int, now: int, limit: int) -> list[float]:
    """The cull's statements batch by batch on a bare connection; returns each batch's seconds."""
    import json

    durations = []
    while True:
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        nodes = [r[0] for r in conn.execute(q._CULL_NODES, (cutoff, limit))]
        ids = json.dumps(nodes)
        held = conn.execute(q._CULL_LICENSES, (ids,)).fetchall()
        conn.execute(
            f"UPDATE licenses SET node_id = NULL, last_released_at = ? WHERE id IN ({q._IDS})",
            (now, json.dumps([r[1] for r in held])),
        )
        conn.execute(f"UPDATE nodes SET deactivated_at = ? WHERE id IN ({q._IDS})", (now, ids))
        audit = [(6, 1, r[1], r[2], now) for r in held] + [(10, 2, n, None, now) for n in nodes]
        for first in range(0, len(audit), q._AUDIT_CHUNK):  # as the store does: 100 rows a go
            chunk = audit[first : first + q._AUDIT_CHUNK]
            conn.execute(q._audit_sql(len(chunk)), [v for row in chunk for v in row])
        conn.execute("COMMIT")
        durations.append(time.perf_counter() - start)
        if len(nodes) < limit:
            return durations


def idle_cull_ms(relay: Relay, runs: int = 300) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        report = relay.cull()
        times.append(time.perf_counter() - start)
        assert report.culled == 0
    return statistics.median(times) * 1000


def bench_cull(directory: Path, leases: int) -> dict[str, float]:
    class Clock:
        def __init__(self) -> None:
            self.t = float(NOW)

        def now(self) -> float:
            return self.t

    store_path, floor_path = directory / "cull.sqlite", directory / "cull-floor.sqlite"
    build(store_path, leases, leased=True, heartbeat=NOW)
    build(floor_path, leases, leased=True, heartbeat=NOW - 3600)
    clock = Clock()
    timed = TimedStore(SqliteStore(store_path))
    relay = Relay(timed, clock=clock, ttl=60)
    out: dict[str, float] = {}
    out["idle_ms_live"] = idle_cull_ms(relay)
    # Everyone stops heartbeating: an hour later every lease has expired at once.
    clock.t = NOW + 3600
    timed.durations.clear()
    # A probe thread keeps asking for a node, as a claim would: how long it waits for the cull
    # is how long the cull holds the store's lock.
    probe_waits: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            start = time.perf_counter()
            with timed.inner.transaction() as tx:
                tx.get_node(1)
            probe_waits.append(time.perf_counter() - start)
            time.sleep(0.001)

    prober = threading.Thread(target=probe)
    prober.start()
    start = time.perf_counter()
    try:
        report = relay.cull()
    finally:
        out["total_s"] = time.perf_counter() - start
        done.set()
        prober.join()
    assert report.released == leases, report
    out["probe_max_ms"] = max(probe_waits) * 1000
    out["probe_p99_ms"] = sorted(probe_waits)[int(len(probe_waits) * 0.99)] * 1000
    out["probes"] = len(probe_waits)
    out["max_txn_ms"] = max(timed.durations) * 1000
    out["median_txn_ms"] = statistics.median(timed.durations) * 1000
    out["transactions"] = len(timed.durations)
    out["idle_ms_after"] = idle_cull_ms(relay)
    timed.close()

    conn = floor_connection(floor_path)
    durations = floor_cull(conn, NOW - 60, NOW, 1000)
    out["floor_total_s"] = sum(durations)
    out["floor_max_txn_ms"] = max(durations) * 1000
    idle = []
    for _ in range(300):
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(q._CULL_NODES, (NOW - 60, 1000)).fetchall()
        conn.execute("COMMIT")
        idle.append(time.perf_counter() - start)
    out["floor_idle_ms"] = statistics.median(idle) * 1000
    conn.close()
    return out


# -- threads ---------------------------------------------------------------------------------


def bench_threads(path: Path, threads: int, seconds: float) -> dict[str, dict[str, float]]:
    """Claim+release from many threads: three ways of sharing the file."""
    results: dict[str, dict[str, float]] = {}
    process_lock = threading.Lock()
    fair_lock = FairLock()
    shared = StoreCycle(path, Strategy.FIFO)
    variants: dict[str, Callable[[int], StoreCycle | FloorCycle]] = {
        "one guarded connection (SqliteStore)": lambda _: shared,
        "connection per thread, busy handler": lambda _: FloorCycle(path, Strategy.FIFO),
        "connection per thread + process lock": lambda _: LockedFloor(path, process_lock),
        "connection per thread + fair lock": lambda _: LockedFloor(path, fair_lock),
    }
    for name, make in variants.items():
        cycles = [make(t) for t in range(threads)]
        latencies: list[list[float]] = [[] for _ in range(threads)]
        errors: list[BaseException] = []
        stop = time.perf_counter() + seconds
        barrier = threading.Barrier(threads)
        pool = [
            threading.Thread(
                target=_hammer, args=(cycles[t], f"thr{t}", latencies[t], errors, (stop, barrier))
            )
            for t in range(threads)
        ]
        start = time.perf_counter()
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        elapsed = time.perf_counter() - start
        flat = sorted(x for lat in latencies for x in lat)
        results[name] = {
            "cycles_per_s": len(flat) / 2 / elapsed,
            "p50_ms": flat[len(flat) // 2] * 1000 if flat else float("nan"),
            "p99_ms": flat[int(len(flat) * 0.99)] * 1000 if flat else float("nan"),
            "failed": len(errors),
        }
        if name != "one guarded connection (SqliteStore)":
            for cycle in cycles:
                cycle.close()
    shared.close()
    return results


def _hammer(
    cycle: Any,
    name: str,
    latencies: list[float],
    errors: list[BaseException],
    until: tuple[float, threading.Barrier],
) -> None:
    """Claim and release as fast as possible until the deadline, recording each latency."""
    stop, barrier = until
    barrier.wait()
    i = 0
    while time.perf_counter() < stop:
        fp = f"{name}-{i % 8}"
        try:
            a = time.perf_counter()
            cycle.claim(fp)
            b = time.perf_counter()
            cycle.release(fp)
            c = time.perf_counter()
        except sqlite3.OperationalError as exc:
            errors.append(exc)
            with contextlib.suppress(sqlite3.Error):
                cycle.conn.execute("ROLLBACK")
            continue
        latencies += [b - a, c - b]
        i += 1


class LockedFloor(FloorCycle):
    """Per-thread connection, but a process-wide lock in front of BEGIN IMMEDIATE."""

    def __init__(self, path: Path, lock: threading.Lock | FairLock) -> None:
        super().__init__(path, Strategy.FIFO)
        self.lock = lock

    def claim(self, fp: str) -> None:
        with self.lock:
            super().claim(fp)

    def release(self, fp: str) -> None:
        with self.lock:
            super().release(fp)


# -- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    parser.add_argument("--dir", type=Path, help="where to build the databases (default: temp)")
    args = parser.parse_args(argv)
    sizes = (100, 1000, 10_000) if args.quick else (100, 1000, 10_000, 100_000)
    rounds = 3 if args.quick else 5
    chunks = 2 if args.quick else 4
    cull_leases = 10_000 if args.quick else 100_000
    big = sizes[-1]

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="relay-bench-") as tmp:
        directory = Path(tmp)
        print(
            f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} CPUs; {rounds} rounds x {chunks} chunks x 100 cycles per side"
        )
        per_cycle: dict[tuple[Strategy, int], list[float]] = {}
        ratios: dict[tuple[Strategy, int], list[float]] = {}
        picks: dict[tuple[Strategy, int], float] = {}
        for size in sizes:
            path = directory / f"licenses-{size}.sqlite"
            t = time.perf_counter()
            build(path, size)
            print(f"built {size:>7,} licenses in {time.perf_counter() - t:5.1f} s")
            for strategy in STRATEGIES:
                picks[(strategy, size)] = pick_cost(path, strategy, 400)
                per_cycle[(strategy, size)], ratios[(strategy, size)] = compare(
                    path, strategy, rounds, chunks
                )
            path.unlink()
            for suffix in ("-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)

        print("\nclaim+release cycles/s through SqliteStore; floor = same SQL on bare sqlite3,")
        print("interleaved in chunks of 100 cycles; ratio = median of per-round store/floor")
        print(
            f"{'strategy':8} {'licenses':>9} {'store/s':>9} {'floor/s':>9} "
            f"{'store/floor (min-max)':>22} {'pick alone':>11}"
        )
        for (strategy, size), times in per_cycle.items():
            rs = [1 / r for r in ratios[(strategy, size)]]
            store_rate = 1 / statistics.median(times)
            floor_rate = store_rate / statistics.median(rs)
            print(
                f"{strategy.value:8} {size:>9,} {store_rate:>9,.0f} {floor_rate:>9,.0f} "
                f"{statistics.median(rs):>10.2f} ({min(rs):.2f}-{max(rs):.2f}) "
                f"{picks[(strategy, size)] * 1e6:>8.1f} us"
            )
        print(f"\ncost growth from 1,000 to {big:,} licenses (target <= 1.5x)")
        for strategy in STRATEGIES:
            growth = statistics.median(per_cycle[(strategy, big)]) / statistics.median(
                per_cycle[(strategy, 1000)]
            )
            pick = picks[(strategy, big)] / picks[(strategy, 1000)]
            print(f"  {strategy.value}: claim+release {growth:.2f}x, pick alone {pick:.2f}x")

        print(f"\nculling {cull_leases:,} expired leases (Relay.cull, batches of 1,000)")
        cull = bench_cull(directory, cull_leases)
        print(
            f"  idle cull, {cull_leases:,} live leases:        {cull['idle_ms_live']:.3f} ms "
            f"(floor {cull['floor_idle_ms']:.3f} ms; target < 1 ms)"
        )
        print(
            f"  mass cull: {cull['transactions']:.0f} transactions, total {cull['total_s']:.2f} s, "
            f"longest {cull['max_txn_ms']:.1f} ms, median {cull['median_txn_ms']:.1f} ms "
            "(each including the checkpoint it runs after unlocking)"
        )
        print(
            f"  a probe transaction waited at most {cull['probe_max_ms']:.1f} ms for the lock "
            f"(p99 {cull['probe_p99_ms']:.1f} ms, {cull['probes']:.0f} probes; target <= 50 ms)"
        )
        print(
            f"  floor:     total {cull['floor_total_s']:.2f} s, "
            f"longest {cull['floor_max_txn_ms']:.1f} ms"
        )
        print(
            f"  idle cull after, {cull_leases:,} deactivated nodes: {cull['idle_ms_after']:.3f} ms"
        )

        path = directory / "threads.sqlite"
        build(path, 10_000)
        threads = 16
        seconds = 1.5 if args.quick else 3.0
        print(f"\n{threads} threads claiming+releasing for {seconds:.0f} s, 10,000 licenses")
        for name, res in bench_threads(path, threads, seconds).items():
            print(
                f"  {name:38} {res['cycles_per_s']:>7,.0f} cycles/s  "
                f"p50 {res['p50_ms']:6.2f} ms  p99 {res['p99_ms']:7.2f} ms  "
                f"failed {res['failed']:.0f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Relay on PostgreSQL against the SQLite relay, side by side in one run.

    .venv/bin/python bench/postgres.py [--rounds 3] [--nodes 2000] [--connections 16]
    .venv/bin/python bench/postgres.py --skip-http      # only the claim cost at 1k vs 100k

What it does:

1. Starts a throwaway PostgreSQL 15 (relay_postgres.testing: initdb + pg_ctl, as `nobody` when
   run as root) with durable settings (fsync on, full_page_writes on) and synchronous_commit off,
   which is what SQLite's WAL with synchronous=NORMAL (Relay's default) also gives: a power cut
   may lose the last commits, never consistency.
2. HTTP (`relay serve`, the real CLI, 16 threads each): the SQLite relay on a file of `--nodes`
   license files (~3.7 KB each), one replica on PostgreSQL, and two replicas on one PostgreSQL
   database (the same licenses, copied with `relay db copy`). For each round (order rotating),
   the phases of bench/http.py with `--nodes` distinct fingerprints over `--connections`
   keep-alive connections (split evenly over the replicas): claim (201), heartbeat for
   `--heartbeat-seconds` (202), release (204). Reports throughput and the medians of per-round
   ratios PostgreSQL / SQLite: heartbeat throughput and claim+release throughput.
3. Claim cost (in-process, through `relay_core.Relay` on a `PostgresStore`, audit on): mean time
   of claim+release cycles with 1,000 and with 100,000 licenses in the pool, half of them held by
   other nodes, for each strategy; the ratio 100k / 1k.

The load generator shares the machine's cores with the servers and PostgreSQL: quote the ratios.
"""

from __future__ import annotations

import sys

# bench/ must not shadow the standard library's `http` (bench/http.py): move it to the end.
if sys.path and sys.path[0] == __file__.rpartition("/")[0]:
    sys.path.append(sys.path.pop(0))

import argparse
import importlib.util
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import build_database, free_port, wait_healthy

ROOT = Path(__file__).resolve().parent
RELAY = Path(sys.executable).with_name("relay")

_spec = importlib.util.spec_from_file_location("bench_http", ROOT / "http.py")
assert _spec is not None
assert _spec.loader is not None
bench_http: Any = importlib.util.module_from_spec(_spec)
sys.modules["bench_http"] = bench_http  # dataclasses look their module up there
_spec.loader.exec_module(bench_http)

PG_SETTINGS = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "off"}


def serve(database: str, log: Any, threads: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [str(RELAY), "--database", database, "serve", "--bind", "127.0.0.1", "--port", str(port),
         "--threads", str(threads)],
        stdout=log, stderr=log,
    )  # fmt: skip
    wait_healthy(port, proc)
    return proc, port


def run_round(
    ports: list[int], pids: list[int], fingerprints: list[str], args: argparse.Namespace
) -> Any:
    """bench/http.py's three phases, the fingerprints (and connections) split over `ports`."""
    phases = []
    for method, duration in (("PUT", None), ("PUT", args.heartbeat_seconds), ("DELETE", None)):
        cpu = sum(bench_http.cpu_seconds(pid) for pid in pids)
        parts = _parallel(ports, method, fingerprints, duration, args)
        phase = bench_http.PhaseResult()
        for part in parts:
            phase.latencies += part.latencies
            phase.errors += part.errors
            for status, count in part.statuses.items():
                phase.statuses[status] = phase.statuses.get(status, 0) + count
        phase.requests = len(phase.latencies)
        phase.seconds = max(part.seconds for part in parts)
        phase.server_cpu = sum(bench_http.cpu_seconds(pid) for pid in pids) - cpu
        phases.append(phase)
    return bench_http.RoundResult(*phases)


def _parallel(
    ports: list[int], method: str, fingerprints: list[str], duration: float | None,
    args: argparse.Namespace,
) -> list[Any]:
    """One phase against several replicas at once (a thread drives each replica's share)."""
    import threading

    results: list[Any] = [None] * len(ports)

    def drive(index: int) -> None:
        results[index] = bench_http.run_phase(
            ports[index],
            method,
            "/v1/nodes/",
            fingerprints[index :: len(ports)],
            connections=max(1, args.connections // len(ports)),
            procs=max(1, args.procs // len(ports)),
            duration=duration,
        )

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(len(ports))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def http_bench(args: argparse.Namespace, tmp: Path, server: Any) -> dict[str, Any]:
    sqlite_db = tmp / "relay.sqlite"
    t0 = time.monotonic()
    build_database(sqlite_db, args.nodes, "Bench")
    pg_url = server.create_database("relay_bench")
    copied = subprocess.run(
        [str(RELAY), "db", "copy", "--from", str(sqlite_db), "--to", pg_url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    print(f"databases: {args.nodes} licenses ({time.monotonic() - t0:.1f} s); {copied.stdout.strip()}")
    log = open(tmp / "servers.log", "wb")  # noqa: SIM115 - closed below
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sqlite_proc, sqlite_port = serve(str(sqlite_db), log, args.threads)
        pg_a, port_a = serve(pg_url, log, args.threads)
        pg_b, port_b = serve(pg_url, log, args.threads)
        procs = [sqlite_proc, pg_a, pg_b]
        targets = {
            "sqlite": ([sqlite_port], [sqlite_proc.pid]),
            "pg x1": ([port_a], [pg_a.pid]),
            "pg x2": ([port_a, port_b], [pg_a.pid, pg_b.pid]),
        }
        ratios: dict[str, list[float]] = {}
        bad: dict[str, int] = {}
        for rnd in range(args.rounds):
            names = list(targets)
            names = names[rnd % len(names) :] + names[: rnd % len(names)]
            results = {}
            for name in names:
                ports, pids = targets[name]
                fingerprints = [f"node-{rnd}-{name[-2:]}-{i:06d}" for i in range(args.nodes)]
                results[name] = run_round(ports, pids, fingerprints, args)
                for phase, expected in zip(
                    (results[name].claim, results[name].heartbeat, results[name].release),
                    (201, 202, 204),
                    strict=True,
                ):
                    for status, count in phase.statuses.items():
                        if status != expected:
                            bad[f"{name} {status}"] = bad.get(f"{name} {status}", 0) + count
            print(f"round {rnd + 1}, {args.connections} connections")
            for name in targets:
                print(bench_http.describe(name, results[name]))
            base = results["sqlite"]
            for name in ("pg x1", "pg x2"):
                r = results[name]
                for key, value in (
                    (f"{name} / sqlite heartbeat throughput", r.heartbeat.rps / base.heartbeat.rps),
                    (f"{name} / sqlite claim+release throughput", r.cycle_rps / base.cycle_rps),
                    (f"{name} heartbeats/s", r.heartbeat.rps),
                    (f"{name} claim+release cycles/s", r.cycle_rps),
                ):
                    ratios.setdefault(key, []).append(value)
            ratios.setdefault("sqlite heartbeats/s", []).append(base.heartbeat.rps)
            ratios.setdefault("sqlite claim+release cycles/s", []).append(base.cycle_rps)
        print()
        print(f"medians (min-max) over {args.rounds} rounds")
        for key, values in ratios.items():
            print(f"  {key:45} {bench_http.summary(values)}")
        print(f"non-expected statuses: {bad or 'none'}")
        return {"ratios": ratios, "unexpected": bad}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


# -- claim cost at 1k and 100k licenses -------------------------------------------------------

_FILL = (
    "INSERT INTO nodes (fingerprint, created_at, last_heartbeat_at) "
    "SELECT 'holder-' || g, %(now)s, %(now)s FROM generate_series(1, %(held)s) g",
    # ~3.7 KB of incompressible bytes per file, like a real one; every other license held.
    "INSERT INTO licenses (guid, file, key, created_at, node_id, file_expires_at) "
    "SELECT 'guid-' || g, "
    "decode(string_agg(md5(g::text || '/' || i::text), '' ORDER BY i), 'hex'), "
    "'KEY-' || g, %(now)s - %(count)s + g, CASE WHEN g %% 2 = 0 THEN g / 2 END, "
    "%(now)s + 86400 "
    "FROM generate_series(1, %(count)s) g, generate_series(1, 232) i GROUP BY g",
    "ANALYZE",
)


def claim_cost(args: argparse.Namespace, server: Any) -> dict[str, Any]:
    import random

    import psycopg
    from relay_core import Relay, Strategy
    from relay_postgres import PostgresStore

    now = int(time.time())
    sizes = (1_000, 100_000)
    costs: dict[tuple[str, int], list[float]] = {}
    stores = {}
    for count in sizes:
        url = server.create_database(f"relay_cost_{count}")
        PostgresStore(url).close()
        t0 = time.monotonic()
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in _FILL:
                params = {"now": now, "count": count, "held": count // 2}
                conn.execute(statement.encode(), params if "%(" in statement else None)
        print(f"claim cost: {count} licenses ({count // 2} held) built in {time.monotonic() - t0:.1f} s")
        stores[count] = PostgresStore(url)
    try:
        for rnd in range(args.cost_rounds):
            for strategy in Strategy:
                for count in sizes if rnd % 2 == 0 else reversed(sizes):
                    relay = Relay(stores[count], strategy=strategy, rng=random.Random(rnd))
                    cycles = args.cycles
                    started = time.perf_counter()
                    for i in range(cycles):
                        fp = f"bench-{rnd}-{strategy}-{i}"
                        relay.claim(fp)
                        relay.release(fp)
                    costs.setdefault((strategy.value, count), []).append(
                        (time.perf_counter() - started) / cycles * 1e6
                    )
    finally:
        for store in stores.values():
            store.close()
    print()
    print(f"claim+release cycle through Relay on PostgreSQL, median of {args.cost_rounds} rounds "
          f"of {args.cycles} cycles (us)")  # fmt: skip
    outcome: dict[str, Any] = {}
    for strategy in Strategy:
        small = statistics.median(costs[(strategy.value, sizes[0])])
        large = statistics.median(costs[(strategy.value, sizes[1])])
        print(f"  {strategy.value:4}  1k {small:7.0f}  100k {large:7.0f}  100k/1k {large / small:.2f}")
        outcome[strategy.value] = {"1k us": small, "100k us": large, "ratio": large / small}
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--heartbeat-seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=16, help="server worker threads")
    parser.add_argument("--cycles", type=int, default=300, help="claim+release cycles per round")
    parser.add_argument("--cost-rounds", type=int, default=3)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    args = parser.parse_args()

    from relay_postgres.testing import start_server

    server = start_server(PG_SETTINGS)
    try:
        with tempfile.TemporaryDirectory(prefix="relay-bench-pg-") as tmp:
            if not args.skip_http:
                http_bench(args, Path(tmp), server)
            if not args.skip_cost:
                print()
                claim_cost(args, server)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

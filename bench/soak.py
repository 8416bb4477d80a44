"""Soak test of `relay serve`: many nodes heartbeating for minutes, watching for leaks.

    .venv/bin/python bench/soak.py [--minutes 10] [--nodes 1000] [--ttl 30] [--json out.json]

What it does:

1. Stores `--nodes` fresh license files (~3.7 KB each, like real Keygen files) in a new SQLite
   database in a temporary directory, and starts `relay serve --ttl <ttl> --cull-interval 5s`
   on a free loopback port (stderr to a file in that directory).
2. Every node claims once (spread over the first heartbeat interval), then heartbeats (PUT)
   every ttl/3 seconds, as docs/api.md tells node developers to. Churn: at each heartbeat a node
   releases and re-claims with probability `--churn` (1%), and goes silent for ttl + 10 s with
   probability `--die` (0.2%), so the reaper culls it, after which it claims again. Requests
   run on `--workers` threads, each with its own keep-alive connection.
3. Every 10 s it samples the server process: resident memory (VmRSS, and RssAnon, the heap,
   which holds SQLite's page cache), the database file's size, open file descriptors
   (/proc/PID/fd), threads, and the p99 latency, request count and errors of the interval.
   An error is a connection failure or any status other than 201, 202 or 204.
4. At the end it stops the server with SIGTERM (it must exit 0), checks the database (integrity
   and no lease on an inactive node), and prints a table of samples and a verdict: RSS growth
   after warm-up (the first `--warmup` minutes, default 2 or a fifth of the run) under 5%, no
   growth of descriptors or threads after warm-up, no errors.

Traffic goes to 127.0.0.1 only, and the run stops by itself. Not part of CI.
"""

from __future__ import annotations

import sys

# bench/http.py would shadow the standard library's http package: move this directory behind the
# standard library on sys.path (`harness`, what the benchmarks share, still imports).
if sys.path and sys.path[0] == __file__.rpartition("/")[0]:
    sys.path.append(sys.path.pop(0))

import argparse
import heapq
import http.client
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import build_database, free_port, wait_healthy

RELAY = Path(sys.executable).with_name("relay")
SAMPLE_SECONDS = 10.0
CULL_INTERVAL = 5


def proc_stats(pid: int) -> tuple[int, int, int, int]:
    """(RSS KiB, anonymous RSS KiB, open file descriptors, threads) of process `pid`."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()[0] if value.split() else "0"
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return int(fields["VmRSS"]), int(fields["RssAnon"]), fds, int(fields["Threads"])


@dataclass
class Sample:
    t: float
    rss_kib: int
    anon_kib: int
    db_kib: int
    fds: int
    threads: int
    requests: int
    errors_total: int
    p50_ms: float
    p99_ms: float


@dataclass
class Load:
    """The nodes' schedule and what their requests saw, shared by the worker threads."""

    port: int
    nodes: int
    ttl: float
    churn: float
    die: float
    end: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    ready: threading.Condition = field(init=False)
    due: list[tuple[float, int, str]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    total: int = 0

    def __post_init__(self) -> None:
        self.ready = threading.Condition(self.lock)
        start = time.monotonic()
        period = self.ttl / 3
        for n in range(self.nodes):
            self.due.append((start + period * n / self.nodes, n, "claim"))
        heapq.heapify(self.due)

    def next(self) -> tuple[float, int, str] | None:
        with self.ready:
            while True:
                now = time.monotonic()
                if now >= self.end:
                    return None
                if self.due and self.due[0][0] <= now:
                    return heapq.heappop(self.due)
                wait = (self.due[0][0] if self.due else self.end) - now
                self.ready.wait(min(wait, self.end - now, 1.0))

    def schedule(self, at: float, node: int, action: str) -> None:
        with self.ready:
            heapq.heappush(self.due, (at, node, action))
            self.ready.notify()

    def record(self, latency: float, status: int | None, error: str | None) -> None:
        with self.lock:
            self.total += 1
            self.latencies.append(latency)
            if status is not None:
                self.statuses[status] = self.statuses.get(status, 0) + 1
            if error is not None:
                self.errors.append(error)

    def drain(self) -> tuple[list[float], int, int]:
        """The interval's latencies, request count and error count; resets the interval."""
        with self.lock:
            latencies, self.latencies = self.latencies, []
            count, self.total = self.total, 0
            errors = len(self.errors)
        return latencies, count, errors


def worker(load: Load, seed: int) -> None:
    rng = random.Random(seed)
    conn: http.client.HTTPConnection | None = None
    period = load.ttl / 3

    def send(method: str, node: int) -> int | None:
        nonlocal conn
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", load.port, timeout=30)
        started = time.perf_counter()
        try:
            conn.request(method, f"/v1/nodes/soak-node-{node:05d}")
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conn = None
            load.record(time.perf_counter() - started, None, f"{method} {node}: {exc!r}")
            return None
        status = resp.status
        expected = {"PUT": (201, 202), "DELETE": (204,)}[method]
        error = None if status in expected else f"{method} {node}: {status}"
        load.record(time.perf_counter() - started, status, error)
        if resp.will_close:
            conn.close()
            conn = None
        return status

    while (job := load.next()) is not None:
        _, node, action = job
        if action == "heartbeat" and rng.random() < load.churn:
            send("DELETE", node)
        elif action == "heartbeat" and rng.random() < load.die:
            load.schedule(time.monotonic() + load.ttl + 2 * CULL_INTERVAL, node, "claim")
            continue
        send("PUT", node)
        load.schedule(time.monotonic() + period, node, "heartbeat")
    if conn is not None:
        conn.close()


def check_database(db: Path) -> list[str]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
        orphans = conn.execute(
            "SELECT count(*) FROM licenses l JOIN nodes n ON n.id = l.node_id "
            "WHERE n.deactivated_at IS NOT NULL"
        ).fetchone()[0]
    if orphans:
        problems.append(f"{orphans} leases on inactive nodes")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--ttl", type=float, default=30.0, help="lease TTL in seconds (>= 30)")
    parser.add_argument("--churn", type=float, default=0.01)
    parser.add_argument("--die", type=float, default=0.002)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--warmup", type=float, help="minutes excluded from growth checks")
    parser.add_argument("--json", type=Path, help="also write the samples here")
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="extra argument for relay serve, e.g. --serve-arg=--pragma=cache_size=-2000",
    )
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else min(2.0, args.minutes / 5)

    with tempfile.TemporaryDirectory(prefix="relay-soak-") as tmp:
        db = Path(tmp) / "relay.sqlite"
        print(f"storing {args.nodes} licenses ...", flush=True)
        build_database(db, args.nodes, "Soak")
        port = free_port()
        log = Path(tmp) / "serve.log"
        with log.open("wb") as stderr:
            server = subprocess.Popen(
                [
                    RELAY,
                    "serve",
                    "--database",
                    str(db),
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--ttl",
                    f"{args.ttl}s",
                    "--cull-interval",
                    f"{CULL_INTERVAL}s",
                    *args.serve_arg,
                ],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            wait_healthy(port, server)
            samples = soak(args, port, server.pid, db)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                code = server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                code = server.wait()
        problems = check_database(db)
        log_tail = log.read_text(errors="replace").strip().splitlines()[-5:]

    print(f"server exit code {code}; database: {problems or 'ok'}")
    if log_tail:
        print("last server log lines:", *log_tail, sep="\n  ")
    verdict = judge(samples, warmup)
    if code != 0:
        verdict.append(f"server exited with {code}")
    verdict += problems
    if args.json:
        args.json.write_text(json.dumps([asdict(s) for s in samples], indent=1))
    print("PASS" if not verdict else "FAIL: " + "; ".join(verdict))
    return 0 if not verdict else 1


def soak(args: argparse.Namespace, port: int, pid: int, db: Path) -> list[Sample]:
    started = time.monotonic()
    load = Load(
        port=port,
        nodes=args.nodes,
        ttl=args.ttl,
        churn=args.churn,
        die=args.die,
        end=started + args.minutes * 60,
    )
    threads = [
        threading.Thread(target=worker, args=(load, n), daemon=True) for n in range(args.workers)
    ]
    for thread in threads:
        thread.start()
    samples: list[Sample] = []
    print(
        f"{'t (s)':>6} {'RSS MiB':>8} {'anon':>6} {'db MiB':>7} {'fds':>5} {'thr':>4} {'req':>6} {'err':>4} "
        f"{'p50 ms':>7} {'p99 ms':>7}  (err: errors so far)"
    )
    next_sample = started + SAMPLE_SECONDS
    # Sample only while the nodes run: at the end they close their connections.
    while next_sample < load.end - 1:
        time.sleep(max(0.0, next_sample - time.monotonic()))
        next_sample += SAMPLE_SECONDS
        latencies, count, errors = load.drain()
        rss, anon, fds, nthreads = proc_stats(pid)
        db_kib = db.stat().st_size // 1024
        cuts = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0.0] * 99
        sample = Sample(
            t=round(time.monotonic() - started, 1),
            rss_kib=rss,
            anon_kib=anon,
            db_kib=db_kib,
            fds=fds,
            threads=nthreads,
            requests=count,
            errors_total=errors,
            p50_ms=round(cuts[49] * 1000, 2),
            p99_ms=round(cuts[98] * 1000, 2),
        )
        samples.append(sample)
        print(
            f"{sample.t:6.0f} {rss / 1024:8.1f} {anon / 1024:6.1f} {db_kib / 1024:7.1f} {fds:5d} {nthreads:4d} {count:6d} "
            f"{errors:4d} {sample.p50_ms:7.2f} {sample.p99_ms:7.2f}",
            flush=True,
        )
    for thread in threads:
        thread.join(timeout=60)
    print(f"statuses: {dict(sorted(load.statuses.items()))}; first errors: {load.errors[:5]}")
    return samples


def judge(samples: list[Sample], warmup: float) -> list[str]:
    """Why the run fails (empty when it passes), printing the summary figures."""
    after = [s for s in samples if s.t > warmup * 60]
    if not after:
        return ["no samples after warm-up"]
    base = after[0]
    last_minute = [s for s in after if s.t > after[-1].t - 60]
    rss_end = statistics.median(s.rss_kib for s in last_minute)
    growth = (rss_end - base.rss_kib) / base.rss_kib * 100
    first_minute = [s for s in after if s.t <= base.t + 60]
    fds = (min(s.fds for s in after), max(s.fds for s in after))
    threads = (min(s.threads for s in after), max(s.threads for s in after))
    errors = samples[-1].errors_total
    requests = sum(s.requests for s in samples)
    p99s = [s.p99_ms for s in after]
    print(
        f"after {warmup:g} min warm-up: RSS {base.rss_kib / 1024:.1f} -> {rss_end / 1024:.1f} MiB "
        f"(median of the last minute, {growth:+.2f}%), max {max(s.rss_kib for s in after) / 1024:.1f}"
        f" MiB; fds {fds[0]}-{fds[1]}; threads {threads[0]}-{threads[1]}; "
        f"p99 per 10 s median {statistics.median(p99s):.1f} ms, max {max(p99s):.1f} ms; "
        f"{requests} requests in the sampled intervals, {errors} errors"
    )
    verdict = []
    if growth >= 5:
        verdict.append(f"RSS grew {growth:.1f}% after warm-up")
    for name in ("fds", "threads"):
        early = max(getattr(s, name) for s in first_minute)
        late = max(getattr(s, name) for s in last_minute)
        if late > early:
            verdict.append(
                f"{name} grew: max {early} in the first minute after warm-up, {late} in the last"
            )
    if errors:
        verdict.append(f"{errors} errors")
    return verdict


if __name__ == "__main__":
    sys.exit(main())

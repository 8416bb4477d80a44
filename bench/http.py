"""Load test of `relay serve` against the HTTP floor, side by side in one run.

    .venv/bin/python bench/http.py [--rounds 3] [--nodes 3000] [--connections 16,32]

What it does:

1. Builds a SQLite database with `--nodes` license files (~3.7 KB each, the size of real Keygen
   files) in a temporary directory, using relay_core's test kit.
2. Starts `relay serve` on it (a subprocess on a free loopback port, 16 threads) and, as the
   floor, a trivial Falcon app under the same waitress settings (`relay_http.Server`, 16
   threads) that answers PUT with a pre-encoded body of the same size as Relay's (201 and 202)
   and DELETE with an empty 204.
3. For each round and each connection count, runs against both servers (order alternating per
   round), three phases with `--nodes` distinct fingerprints:
   claim (each node PUTs once: 201), heartbeat (nodes PUT again in turn for `--heartbeat-seconds`:
   202), release (each node DELETEs: 204).
4. Reports per-phase throughput and p50/p99 latency, and the medians (min-max) over rounds of
   the per-round ratios relay/floor: heartbeat throughput, claim+release throughput
   (nodes / (claim time + release time)), and p99 latencies; plus every non-2xx status and
   any "database is locked" in the server's log.

With `--versus-no-metrics` the floor is `relay serve --no-metrics` on a copy of the database
instead of the trivial app, so the ratios are relay with metrics / relay without: the price of
/metrics (counters and the request histogram) on each path.

The load generator is standard library only: `--procs` processes, each with its share of the
connections as threads, one keep-alive `http.client` connection per thread. Client and servers
share the machine's cores, so quote the ratios, not the absolute numbers.

`--wrk` measures with wrk instead (Debian package `wrk`; skipped with a message when it is not
installed), using `bench/wrk-relay.lua` with one connection per wrk thread: for each round, and
in alternating order, `churn` (each connection claims a fresh fingerprint, releases it, and
moves on: claim+release) and `heartbeat` (each connection claims once, then extends) against
both servers for `--wrk-seconds` each. It reports the medians (min-max) of the per-round
ratios relay/floor of throughput and p99 latency, the server CPU and context switches per
claim or release, and every 5xx, connection error or unexpected status.
"""

from __future__ import annotations

import sys

# This file is named http.py: move its directory behind the standard library on sys.path, so
# `http.client` is the stdlib's and `harness` (what the benchmarks share) still imports.
if sys.path and sys.path[0] == __file__.rpartition("/")[0]:
    sys.path.append(sys.path.pop(0))

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import build_database, free_port, wait_healthy

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
RELAY = Path(PY).with_name("relay")

# -- setup -------------------------------------------------------------------------------------


def created_body_size(file: bytes, key: str) -> int:
    """The size of Relay's 201 body for this license (the floor answers with as many bytes)."""
    import base64

    body = {
        "license_file": base64.b64encode(file).decode(),
        "license_key": key,
        "expires_at": int(time.time()) + 60,
        "expires_in": 60,
    }
    return len(json.dumps(body, separators=(",", ":"))) + 1


FLOOR_SERVER = """
import sys
import falcon
from relay_http import Server

created = b"x" * (int(sys.argv[2]) - 1) + b"\\n"
extended = b'{"expires_at":1764949550,"expires_in":60}\\n'

class Node:
    def on_put(self, req, resp, fingerprint):
        resp.status = falcon.HTTP_201
        resp.content_type = "application/json"
        resp.data = created

    def on_delete(self, req, resp, fingerprint):
        resp.status = falcon.HTTP_204
        resp.content_type = "application/json"

class Beat:
    def on_put(self, req, resp, fingerprint):
        resp.status = falcon.HTTP_202
        resp.content_type = "application/json"
        resp.data = extended

app = falcon.App()
app.add_route("/v1/nodes/{fingerprint}", Node())
app.add_route("/v1/beats/{fingerprint}", Beat())
server = Server(app, host="127.0.0.1", port=int(sys.argv[1]), threads=16)
import signal
signal.signal(signal.SIGTERM, lambda *_: server.stop())
server.run()
"""


LAUNCHER = """
import sys
from relay_core import Relay
from relay_http import serve
from relay_sqlite import open_store

db, port, threads, switch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
if switch:
    sys.setswitchinterval(switch)
store = open_store(db, pragmas={})
try:
    serve(Relay(store), host="127.0.0.1", port=port, threads=threads, cull_interval=15)
finally:
    store.close()
"""


# -- load generation ---------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    port: int
    pid: int
    claim_path: str  # prefix for claim and release
    beat_path: str  # prefix for heartbeats


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of all the process's live threads (Linux /proc).

    Threads that exit between two readings drop out of the sum; a server's threads live as long
    as it does, so the difference over a run is what that run cost.
    """
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # the thread ended meanwhile
            continue
        for line in text.splitlines():
            if "ctxt_switches:" in line:
                total += int(line.split()[1])
    return total


@dataclass
class PhaseResult:
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    server_cpu: float = 0.0

    @property
    def cpu_us(self) -> float:
        """Server CPU time per request, in microseconds."""
        return self.server_cpu / self.requests * 1e6 if self.requests else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _connection_worker(
    port: int,
    method: str,
    paths: list[str],
    *,
    until: float | None,
    go: threading.Event,
    out: list[tuple[list[float], dict[int, int], int, float, float]],
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    go.wait()
    start = time.monotonic()
    i = 0
    n = len(paths)
    while True:
        if until is None:
            if i >= n:
                break
        elif time.monotonic() >= until:
            break
        path = paths[i % n]
        i += 1
        t0 = time.perf_counter()
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        latencies.append(time.perf_counter() - t0)
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
    end = time.monotonic()
    conn.close()
    out.append((latencies, statuses, errors, start, end))


def _process_worker(
    port: int,
    method: str,
    path_lists: list[list[str]],
    *,
    duration: float | None,
    start_at: float,
    queue: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    go = threading.Event()
    out: list[tuple[list[float], dict[int, int], int, float, float]] = []
    until = None if duration is None else start_at + duration
    threads = [
        threading.Thread(
            target=_connection_worker,
            args=(port, method, paths),
            kwargs={"until": until, "go": go, "out": out},
        )
        for paths in path_lists
    ]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, start_at - time.monotonic()))  # CLOCK_MONOTONIC is system-wide
    go.set()
    for thread in threads:
        thread.join()
    queue.put(out)


def run_phase(
    port: int,
    method: str,
    prefix: str,
    fingerprints: list[str],
    *,
    connections: int,
    procs: int,
    duration: float | None = None,
) -> PhaseResult:
    """Send one request per fingerprint (or cycle for `duration` s) over `connections`."""
    per_conn = [
        [f"{prefix}{fp}" for fp in fingerprints[c::connections]] for c in range(connections)
    ]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.monotonic() + 0.5
    workers = [
        ctx.Process(
            target=_process_worker,
            args=(port, method, per_conn[p::procs]),
            kwargs={"duration": duration, "start_at": start_at, "queue": queue},
        )
        for p in range(procs)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    phase = PhaseResult()
    starts, ends = [], []
    for per_process in results:
        for latencies, statuses, errors, start, end in per_process:
            phase.latencies += latencies
            phase.errors += errors
            for status, count in statuses.items():
                phase.statuses[status] = phase.statuses.get(status, 0) + count
            starts.append(start)
            ends.append(end)
    phase.requests = len(phase.latencies)
    phase.seconds = max(ends) - min(starts)
    return phase


@dataclass
class RoundResult:
    claim: PhaseResult
    heartbeat: PhaseResult
    release: PhaseResult

    @property
    def cycle_rps(self) -> float:
        """Claim+release cycles per second."""
        return self.claim.requests / (self.claim.seconds + self.release.seconds)


def run_round(
    target: Target, fingerprints: list[str], connections: int, procs: int, beat_seconds: float
) -> RoundResult:
    phases = []
    for method, prefix, duration in (
        ("PUT", target.claim_path, None),
        ("PUT", target.beat_path, beat_seconds),
        ("DELETE", target.claim_path, None),
    ):
        cpu = cpu_seconds(target.pid)
        phase = run_phase(
            target.port,
            method,
            prefix,
            fingerprints,
            connections=connections,
            procs=procs,
            duration=duration,
        )
        phase.server_cpu = cpu_seconds(target.pid) - cpu  # includes the 0.5 s idle start
        phases.append(phase)
    return RoundResult(*phases)


# -- reporting ---------------------------------------------------------------------------------


def describe(name: str, result: RoundResult) -> str:
    parts = []
    phases = (("claim", result.claim), ("heartbeat", result.heartbeat))
    for label, phase in (*phases, ("release", result.release)):
        parts.append(
            f"{label} {phase.rps:5.0f}/s p50 {phase.pct(0.50):5.1f} p99 {phase.pct(0.99):5.1f} ms"
            f" cpu {phase.cpu_us:4.0f} us"
        )
    return f"  {name:5}  " + " | ".join(parts)


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


# -- wrk mode ----------------------------------------------------------------------------------

WRK_SCRIPT = Path(__file__).resolve().with_name("wrk-relay.lua")


@dataclass
class WrkResult:
    """One wrk run against one server: its WRKJSON line plus the server's CPU time."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    errors: dict[str, int]
    server_cpu: float
    switches: int  # the server's context switches during the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        return self.server_cpu / self.requests * 1e6 if self.requests else 0.0

    @property
    def switches_per_request(self) -> float:
        return self.switches / self.requests if self.requests else 0.0


def run_wrk(
    target: Target, mode: str, prefix: str, *, connections: int, seconds: float
) -> WrkResult:
    """`wrk -tN -cN` (one connection per thread, as the script needs) for `seconds`."""
    env = dict(os.environ)
    env["RELAY_PATH"] = target.beat_path if mode == "heartbeat" else target.claim_path
    command = ["wrk", f"-t{connections}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
               "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{target.port}", "--", mode, prefix]  # fmt: skip
    cpu, switches = cpu_seconds(target.pid), context_switches(target.pid)
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=seconds + 60, check=False
    )
    server_cpu = cpu_seconds(target.pid) - cpu
    server_switches = context_switches(target.pid) - switches
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    data = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["lat_us"]["p50"] / 1000,
        p99_ms=data["lat_us"]["p99"] / 1000,
        statuses={str(k): int(v) for k, v in data["status"].items()},
        errors={k: int(v) for k, v in data["errors"].items() if v},
        server_cpu=server_cpu,
        switches=server_switches,
    )


def wrk_bench(
    args: argparse.Namespace, levels: list[int], relay: Target, floor: Target
) -> dict[str, object]:
    """Interleaved wrk rounds; per-round ratios relay/floor and their medians."""
    expected = {"churn": {"201", "204"}, "heartbeat": {"201", "202"}}
    outcome: dict[str, dict[str, list[float]]] = {}
    bad: dict[str, int] = {}
    stamp = int(time.time())
    for rnd in range(args.rounds):
        for conns in levels:
            order = (relay, floor) if rnd % 2 == 0 else (floor, relay)
            results: dict[tuple[str, str], WrkResult] = {}
            for mode in ("churn", "heartbeat"):
                for target in order:
                    prefix = f"wrk{stamp}-{rnd}-{conns}-{mode}"
                    results[target.name, mode] = run_wrk(
                        target, mode, prefix, connections=conns, seconds=args.wrk_seconds
                    )
            print(f"round {rnd + 1}, {conns} connections (wrk, {args.wrk_seconds:g} s per run)")
            for name in ("relay", "floor"):
                parts = []
                for mode in ("churn", "heartbeat"):
                    res = results[name, mode]
                    parts.append(
                        f"{mode} {res.rps:6.0f} req/s p50 {res.p50_ms:5.2f} p99 {res.p99_ms:6.2f} ms"
                        f" cpu {res.cpu_us:4.0f} us {res.statuses}"
                    )
                print(f"  {name:5}  " + " | ".join(parts))
            for (name, mode), res in results.items():
                unexpected = {s: n for s, n in res.statuses.items() if s not in expected[mode]}
                unexpected.update({f"{kind} errors": n for kind, n in res.errors.items()})
                for what, count in unexpected.items():
                    bad[f"{name} {mode} {what}"] = bad.get(f"{name} {mode} {what}", 0) + count
            rc, fc = results["relay", "churn"], results["floor", "churn"]
            rh, fh = results["relay", "heartbeat"], results["floor", "heartbeat"]
            ratios = outcome.setdefault(str(conns), {})
            for key, value in (
                ("claim+release throughput", rc.rps / fc.rps),
                ("heartbeat throughput", rh.rps / fh.rps),
                ("claim+release p99", rc.p99_ms / fc.p99_ms),
                ("heartbeat p99", rh.p99_ms / fh.p99_ms),
                ("relay claim+release cycles/s", rc.rps / 2),
                ("floor claim+release cycles/s", fc.rps / 2),
                ("relay heartbeats/s", rh.rps),
                ("floor heartbeats/s", fh.rps),
                ("relay claim+release cpu us/req", rc.cpu_us),
                ("floor claim+release cpu us/req", fc.cpu_us),
                ("relay heartbeat cpu us/req", rh.cpu_us),
                ("floor heartbeat cpu us/req", fh.cpu_us),
                ("relay claim+release switches/req", rc.switches_per_request),
                ("floor claim+release switches/req", fc.switches_per_request),
                ("relay claim+release p99 ms", rc.p99_ms),
                ("floor claim+release p99 ms", fc.p99_ms),
            ):
                ratios.setdefault(key, []).append(value)
    print()
    print(f"wrk: medians (min-max) of per-round values over {args.rounds} rounds")
    for conns, ratios in outcome.items():
        print(f"  {conns} connections")
        for key, values in ratios.items():
            print(f"    {key:32} {summary(values)}")
    print(f"5xx, errors and unexpected statuses: {bad or 'none'}")
    return {"ratios": outcome, "unexpected": bad}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=3000)
    parser.add_argument("--connections", default="16,32")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--heartbeat-seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=16, help="server worker threads")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--launcher",
        action="store_true",
        help="start the relay with relay_http.serve in `python -c` instead of `relay serve`",
    )
    parser.add_argument(
        "--switch-interval", type=float, default=0.0, help="with --launcher: sys.setswitchinterval"
    )
    parser.add_argument(
        "--wrk", action="store_true", help="measure with wrk (churn and heartbeat) instead"
    )
    parser.add_argument("--wrk-seconds", type=float, default=10.0, help="length of each wrk run")
    parser.add_argument(
        "--versus-no-metrics",
        action="store_true",
        help="the floor is `relay serve --no-metrics` on a copy of the database",
    )
    parser.add_argument(
        "--relay-args",
        default="",
        help="extra `relay serve` flags for the relay under test, e.g. --relay-args=--no-metrics "
        "with --versus-no-metrics for an A/A run that shows the setup's own asymmetry",
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.connections.split(",")]
    if args.wrk and shutil.which("wrk") is None:
        print("skipped: --wrk needs the `wrk` command (Debian: apt-get install wrk), not found")
        return 0

    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        db = Path(tmp) / "relay.sqlite"
        t0 = time.monotonic()
        body_size = created_body_size(*build_database(db, args.nodes, "Bench"))
        print(
            f"database: {args.nodes} licenses, 201 body {body_size} bytes "
            f"({time.monotonic() - t0:.1f} s to build)"
        )
        relay_port, floor_port = free_port(), free_port()
        log_path = Path(tmp) / "relay.log"
        with open(log_path, "wb") as log:
            if args.launcher:
                command = [PY, "-c", LAUNCHER, str(db), str(relay_port), str(args.threads),
                           str(args.switch_interval)]  # fmt: skip
            else:
                command = [str(RELAY), "serve", "--database", str(db), "--bind", "127.0.0.1",
                           "--port", str(relay_port), "--threads", str(args.threads), "-v",
                           *args.relay_args.split()]  # fmt: skip
            relay_proc = subprocess.Popen(command, stdout=log, stderr=log)
            floor_command = [PY, "-c", FLOOR_SERVER, str(floor_port), str(body_size)]
            if args.versus_no_metrics:
                shutil.copyfile(db, Path(tmp) / "floor.sqlite")
                floor_command = [str(RELAY), "serve", "--database", str(Path(tmp) / "floor.sqlite"),
                                 "--bind", "127.0.0.1", "--port", str(floor_port), "--threads",
                                 str(args.threads), "-v", "--no-metrics"]  # fmt: skip
            floor_proc = subprocess.Popen(floor_command, stdout=log, stderr=log)
            try:
                wait_healthy(relay_port, relay_proc)
                wait_healthy(floor_port, floor_proc)
                if args.wrk:
                    outcome = wrk_bench(
                        args,
                        levels,
                        Target("relay", relay_port, relay_proc.pid, "/v1/nodes/", "/v1/nodes/"),
                        Target(
                            "floor",
                            floor_port,
                            floor_proc.pid,
                            "/v1/nodes/",
                            "/v1/nodes/" if args.versus_no_metrics else "/v1/beats/",
                        ),
                    )
                else:
                    outcome = bench(
                        args,
                        levels,
                        relay_pid=relay_proc.pid,
                        relay_port=relay_port,
                        floor_pid=floor_proc.pid,
                        floor_port=floor_port,
                    )
            finally:
                for proc in (relay_proc, floor_proc):
                    proc.send_signal(signal.SIGTERM)
                for proc in (relay_proc, floor_proc):
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
        server_log = log_path.read_text(errors="replace")
        locked = server_log.count("database is locked")
        print(
            f"relay serve exit code: {relay_proc.returncode}; 'database is locked' in log: {locked}"
        )
        if args.json:
            args.json.write_text(json.dumps(outcome, indent=2))
    return 0


def bench(
    args: argparse.Namespace,
    levels: list[int],
    *,
    relay_pid: int,
    relay_port: int,
    floor_pid: int,
    floor_port: int,
) -> dict[str, object]:
    relay = Target("relay", relay_port, relay_pid, "/v1/nodes/", "/v1/nodes/")
    beats = "/v1/nodes/" if args.versus_no_metrics else "/v1/beats/"
    floor = Target("floor", floor_port, floor_pid, "/v1/nodes/", beats)
    outcome: dict[str, dict[str, list[float]]] = {}
    bad: dict[str, int] = {}
    for rnd in range(args.rounds):
        for conns in levels:
            fingerprints = [f"node-{rnd}-{conns}-{i:06d}" for i in range(args.nodes)]
            order = (relay, floor) if rnd % 2 == 0 else (floor, relay)
            results = {t.name: run_round(t, fingerprints, conns, args.procs, args.heartbeat_seconds)
                       for t in order}  # fmt: skip
            r, f = results["relay"], results["floor"]
            print(f"round {rnd + 1}, {conns} connections")
            print(describe("relay", r))
            print(describe("floor", f))
            for phase, expected in ((r.claim, 201), (r.heartbeat, 202), (r.release, 204)):
                for status, count in phase.statuses.items():
                    if status != expected:
                        bad[f"relay {status}"] = bad.get(f"relay {status}", 0) + count
                if phase.errors:
                    bad["relay connection errors"] = bad.get("relay connection errors", 0) + 1
            ratios = outcome.setdefault(str(conns), {})
            for key, value in (
                ("heartbeat throughput", r.heartbeat.rps / f.heartbeat.rps),
                ("claim+release throughput", r.cycle_rps / f.cycle_rps),
                ("heartbeat p99", r.heartbeat.pct(0.99) / f.heartbeat.pct(0.99)),
                ("claim p99", r.claim.pct(0.99) / f.claim.pct(0.99)),
                ("release p99", r.release.pct(0.99) / f.release.pct(0.99)),
                ("relay heartbeat rps", r.heartbeat.rps),
                ("floor heartbeat rps", f.heartbeat.rps),
                ("relay heartbeat cpu us/req", r.heartbeat.cpu_us),
                ("floor heartbeat cpu us/req", f.heartbeat.cpu_us),
                ("relay claim cpu us/req", r.claim.cpu_us),
                ("relay release cpu us/req", r.release.cpu_us),
                ("floor claim cpu us/req", f.claim.cpu_us),
                ("relay claim+release cycles/s", r.cycle_rps),
                ("floor claim+release cycles/s", f.cycle_rps),
                ("relay heartbeat p99 ms", r.heartbeat.pct(0.99)),
                ("floor heartbeat p99 ms", f.heartbeat.pct(0.99)),
                ("relay claim p99 ms", r.claim.pct(0.99)),
                ("floor claim p99 ms", f.claim.pct(0.99)),
            ):
                ratios.setdefault(key, []).append(value)
    print()
    print(f"medians (min-max) of per-round values over {args.rounds} rounds")
    for conns, ratios in outcome.items():
        print(f"  {conns} connections")
        for key, values in ratios.items():
            print(f"    {key:30} {summary(values)}")
    print(f"relay non-expected statuses/errors: {bad or 'none'}")
    return {"ratios": outcome, "unexpected": bad}


if __name__ == "__main__":
    sys.exit(main())

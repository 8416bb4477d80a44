"""Does a crowd of parked claims (``Prefer: wait``) slow the server down for everyone else?

    .venv/bin/python bench/waiting.py [--rounds 3] [--waiters 200] [--seconds 10]

Each round starts `relay serve` (default threads, 16) on a fresh SQLite database holding 16
licenses in the global pool and one in pool ``busy``, then runs two phases on that one server,
in alternating order per round:

- idle: 16 nodes heartbeat (PUT, 202) every 50 ms each on keep-alive connections, while a probe
  times ``GET /v1/health`` on a fresh connection every 50 ms;
- waiting: the same, while `--waiters` claims wait in pool ``busy`` (whose seat is held) with
  ``Prefer: wait=120``. The server runs with ``--max-waiting`` equal to `--waiters`, and one
  more waiter is refused at once (410 + Retry-After), which shows that all of them are parked
  before timing starts. Afterwards the waiters hang up, which empties the queue.

Reports per phase the heartbeat p50/p99 and the health p50/p99/max in milliseconds, the
server's threads and resident memory at the end of the phase, and the
medians (min-max) over rounds of the waiting/idle ratios. Loopback only; every loop is bounded
by `--seconds`. Client and server share the machine's cores: quote the ratios.
"""

from __future__ import annotations

import sys

# bench/http.py would shadow the standard library's `http`: move this directory behind the
# standard library on sys.path (`harness`, what the benchmarks share, still imports).
if sys.path and sys.path[0] == __file__.rpartition("/")[0]:
    sys.path.append(sys.path.pop(0))

import argparse
import http.client
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path

from harness import free_port, wait_healthy

RELAY = str(Path(sys.executable).with_name("relay"))
NODES = 16
BEAT_INTERVAL = 0.05
PROBE_INTERVAL = 0.05


def build(root: Path) -> Path:
    from relay_core import Relay
    from relay_core.testing import LicenseWriter
    from relay_sqlite import open_store

    writer = LicenseWriter.ed25519()
    now = time.time()
    files = [
        (writer.license(key=f"BENCH-{i:03d}", issued=now - 60), f"BENCH-{i:03d}")
        for i in range(NODES + 1)
    ]
    path = root / "relay.sqlite"
    store = open_store(str(path), pragmas={})
    try:
        relay = Relay(store)
        relay.add_licenses(files[:NODES], public_key=writer.public_key)
        relay.add_licenses(files[NODES:], public_key=writer.public_key, pool="busy")
    finally:
        store.close()
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def heartbeats(port: int, seconds: float, out: list[float], errors: list[str]) -> None:
    def node(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        path = f"/v1/nodes/bench-node-{n:02d}"
        end = time.monotonic() + seconds
        next_at = time.monotonic()
        while time.monotonic() < end:
            started = time.perf_counter()
            conn.request("PUT", path)
            resp = conn.getresponse()
            resp.read()
            if resp.status not in (201, 202):
                errors.append(f"heartbeat {resp.status}")
            elif resp.status == 202:
                out.append(time.perf_counter() - started)
            next_at += BEAT_INTERVAL
            time.sleep(max(0.0, next_at - time.monotonic()))
        conn.close()

    threads = [threading.Thread(target=node, args=(n,)) for n in range(NODES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def probe(port: int, stop: threading.Event, out: list[float], errors: list[str]) -> None:
    while not stop.wait(PROBE_INTERVAL):
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/v1/health")
        resp = conn.getresponse()
        resp.read()
        conn.close()
        if resp.status != 200:
            errors.append(f"health {resp.status}")
        out.append(time.perf_counter() - started)


def measure(port: int, seconds: float) -> tuple[list[float], list[float], list[str]]:
    beats: list[float] = []
    health: list[float] = []
    errors: list[str] = []
    stop = threading.Event()
    prober = threading.Thread(target=probe, args=(port, stop, health, errors))
    prober.start()
    heartbeats(port, seconds, beats, errors)
    stop.set()
    prober.join()
    return beats, health, errors


def park(port: int, count: int) -> list[socket.socket]:
    """`count` waiting claims in pool busy, each on its own raw socket; checks they are parked."""
    request = (
        "PUT /v1/nodes/{} HTTP/1.1\r\nHost: bench\r\nRelay-Pool: busy\r\n"
        "Prefer: wait=120\r\nContent-Length: 0\r\n\r\n"
    )
    socks = []
    for n in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(request.format(f"bench-waiter-{n:03d}").encode())
        socks.append(sock)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=130)
        conn.request(
            "PUT", "/v1/nodes/bench-extra", headers={"Relay-Pool": "busy", "Prefer": "wait=1"}
        )
        resp = conn.getresponse()
        resp.read()
        conn.close()
        if resp.getheader("Retry-After"):
            return socks
    import select

    answered, _, _ = select.select(socks, [], [], 0)
    first = answered[0].recv(300).decode(errors="replace") if answered else ""
    raise SystemExit(f"the waiters never all parked: {len(answered)} answered early: {first!r}")


def threads_and_rss(pid: int) -> tuple[int, float]:
    """The server's thread count and resident memory (MiB), from /proc."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) / 1024


def run_round(root: Path, waiters: int, seconds: float, waiting_first: bool) -> dict[str, float]:
    db = build(root)
    port = free_port()
    log = (root / "serve.log").open("wb")
    proc = subprocess.Popen(
        [
            RELAY,
            "--database",
            str(db),
            "serve",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-waiting",
            str(waiters),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    results: dict[str, float] = {}
    try:
        wait_healthy(port, proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("PUT", "/v1/nodes/bench-holder", headers={"Relay-Pool": "busy"})
        assert conn.getresponse().status == 201
        conn.close()
        with closing(sqlite3.connect(db)) as check:
            ours = check.execute("SELECT 1 FROM nodes WHERE fingerprint = 'bench-holder'")
            if ours.fetchone() is None:
                # Another session's server took the port between free_port() and our bind.
                raise SystemExit(f"port {port} answered by another server: run again")
        for phase in ["waiting", "idle"] if waiting_first else ["idle", "waiting"]:
            socks = park(port, waiters) if phase == "waiting" else []
            beats, health, errors = measure(port, seconds)
            results[f"{phase}_threads"], results[f"{phase}_rss"] = threads_and_rss(proc.pid)
            for sock in socks:
                sock.close()
            if socks:
                time.sleep(2.0)  # the server notices the hang-ups within a second
            if errors:
                raise SystemExit(f"{phase}: {sorted(set(errors))}")
            results[f"{phase}_beat_p50"] = percentile(beats, 0.50) * 1000
            results[f"{phase}_beat_p99"] = percentile(beats, 0.99) * 1000
            results[f"{phase}_health_p50"] = percentile(health, 0.50) * 1000
            results[f"{phase}_health_p99"] = percentile(health, 0.99) * 1000
            results[f"{phase}_health_max"] = max(health) * 1000
            results[f"{phase}_beats"] = len(beats)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    return results


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--waiters", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    rounds = []
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            r = run_round(Path(tmp), args.waiters, args.seconds, waiting_first=n % 2 == 1)
        rounds.append(r)
        print(
            f"round {n + 1}: "
            + "  ".join(
                f"{phase}: beat p50 {r[phase + '_beat_p50']:.1f} p99 {r[phase + '_beat_p99']:.1f}"
                f" ({r[phase + '_beats']:.0f} beats), health p50 {r[phase + '_health_p50']:.1f}"
                f" p99 {r[phase + '_health_p99']:.1f} max {r[phase + '_health_max']:.1f} ms,"
                f" {r[phase + '_threads']:.0f} threads, {r[phase + '_rss']:.0f} MiB"
                for phase in ("idle", "waiting")
            ),
            flush=True,
        )
    print(
        "waiting/idle heartbeat p99: "
        + summary([r["waiting_beat_p99"] / r["idle_beat_p99"] for r in rounds])
    )
    print(
        "waiting/idle heartbeat p50: "
        + summary([r["waiting_beat_p50"] / r["idle_beat_p50"] for r in rounds])
    )
    print("health max while waiting (ms): " + summary([r["waiting_health_max"] for r in rounds]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

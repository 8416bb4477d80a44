"""Report benchmark: `relay report` over a year of audit history for 1,000 licenses.

    python bench/report.py                  # 1,000 licenses, 365 days, 1 lease a day each
    python bench/report.py --leases-per-day 3 --heartbeats 8

Builds a SQLite database with bare `sqlite3` (fast): every license is leased `--leases-per-day`
times a day by a fresh node and released (1 in 10 leases culled instead), with `--heartbeats`
heartbeat rows (`license.lease_extended` + `node.heartbeat_ping`) per lease, and 410 counters
for one minute in ten. Then times, best of `--rounds`:

- `Relay.usage_report` in-process: one period over the year, and `--every 1d` (365 periods);
- the `relay report --json --every 7d` command, end to end (process start included).

The target (issue 18) is under 2 s for the year. Heartbeat rows are in the file but not read:
the partial index `relay_audit_lifecycle` leaves them out, which `--heartbeats 0` against the
default shows (same time).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from relay_core import Relay
from relay_sqlite import SqliteStore

DAY = 86400
END = 1_793_577_600  # 2026-11-02T00:00:00Z


def build(path: Path, licenses: int, days: int, per_day: int, heartbeats: int) -> int:
    """The history; returns the number of audit rows written."""
    SqliteStore(path).close()  # the schema, with our indexes
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    start = END - days * DAY
    conn.execute("BEGIN")
    conn.execute("INSERT INTO pools (name, created_at) VALUES ('prod', ?)", (start,))
    conn.executemany(
        "INSERT INTO licenses (guid, file, key, pool_id, created_at) VALUES (?, ?, ?, 1, ?)",
        [(f"g{i}", os.urandom(32), f"k{i}", start) for i in range(licenses)],
    )
    rows: list[tuple[int, int, int, int, int]] = [(1, 1, i + 1, 1, start) for i in range(licenses)]
    rng = random.Random(7)
    node = 0
    slot = DAY // per_day
    for day in range(days):
        for lic in range(1, licenses + 1):
            for n in range(per_day):
                node += 1
                begin = start + day * DAY + n * slot + rng.randrange(slot // 4)
                end = begin + rng.randrange(slot // 4, slot // 2)
                rows.append((7, 2, node, 1, begin))
                rows.append((3, 1, lic, 1, begin))
                for beat in range(heartbeats):
                    t = begin + (end - begin) * (beat + 1) // (heartbeats + 1)
                    rows.append((4, 1, lic, 1, t))
                    rows.append((8, 2, node, 1, t))
                culled = rng.random() < 0.1
                rows.append((6 if culled else 5, 1, lic, 1, end))
                rows.append((10 if culled else 9, 2, node, 1, end))
        if len(rows) > 500_000:
            _flush(conn, rows)
    _flush(conn, rows)
    conn.executemany(
        "INSERT INTO relay_denials (pool_id, minute, count) VALUES (1, ?, ?)",
        [(m, 3) for m in range(start - start % 60, END, 600)],
    )
    conn.execute("COMMIT")
    total = conn.execute("SELECT COUNT(*) FROM audit_logs").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    return int(total)


def _flush(conn: sqlite3.Connection, rows: list[tuple[int, int, int, int, int]]) -> None:
    conn.executemany(
        "INSERT INTO audit_logs (event_type_id, entity_type_id, entity_id, pool_id, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        rows,
    )
    rows.clear()


def best(rounds: int, work: Callable[[], object]) -> tuple[float, float]:
    """The best wall-clock and CPU times over `rounds` runs (CPU: this process and children)."""
    walls, cpus = [], []
    for _ in range(rounds):
        began, cpu = time.perf_counter(), _cpu()
        work()
        walls.append(time.perf_counter() - began)
        cpus.append(_cpu() - cpu)
    return min(walls), min(cpus)


def _cpu() -> float:
    mine, children = os.times()[0:2], os.times()[2:4]
    return sum(mine) + sum(children)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--licenses", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--leases-per-day", type=int, default=1)
    parser.add_argument("--heartbeats", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    relay_bin = str(Path(sys.executable).with_name("relay"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "relay.sqlite"
        began = time.perf_counter()
        total = build(path, args.licenses, args.days, args.leases_per_day, args.heartbeats)
        print(
            f"history: {args.licenses:,} licenses, {args.days} days, "
            f"{args.licenses * args.days * args.leases_per_day:,} leases, {total:,} audit rows, "
            f"{path.stat().st_size / 2**20:,.0f} MiB (built in {time.perf_counter() - began:.0f} s)"
        )
        since = END - args.days * DAY
        store = SqliteStore(path)
        relay = Relay(store)
        try:
            (year,) = relay.usage_report(since=since, until=END)
            print(
                f"check: {year.leases_granted:,} leases granted, {year.leases_expired:,} expired, "
                f"{year.seat_hours:,.0f} seat-hours, peak {year.peak_leases}, "
                f"{year.denials:,} denials"
            )
            one = best(args.rounds, lambda: relay.usage_report(since=since, until=END))
            daily = best(
                args.rounds, lambda: relay.usage_report(since=since, until=END, every=DAY)
            )
        finally:
            store.close()
        command = [
            relay_bin, "--database", str(path), "report", "--json", "--every", "7d",
            "--since", str(since), "--until", str(END),
        ]  # fmt: skip
        cli = best(
            args.rounds,
            lambda: subprocess.run(command, check=True, capture_output=True),
        )
        print(f"load average before timing: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
        for label, (wall, cpu) in (
            ("Relay.usage_report, one period", one),
            ("Relay.usage_report, --every 1d", daily),
            ("relay report --json --every 7d (CLI)", cli),
        ):
            print(f"{label:<38} wall {wall:5.2f} s   cpu {cpu:5.2f} s")
        print("target: under 2 s (wall on a quiet machine; cpu is what it costs whatever the load)")


if __name__ == "__main__":
    main()

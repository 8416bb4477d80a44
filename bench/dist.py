"""Start-up of the one-file `dist/relay` against the venv's `relay`, measured side by side.

    .venv/bin/python bench/dist.py [--runs 20] [--relay dist/relay]

A one-file executable unpacks its bundle (interpreter, libraries, modules) into a fresh
temporary folder on every start; the venv's `relay` imports from site-packages. Two things are
timed, `--runs` times each, the sides interleaved (venv, one file, venv, ...):

1. `relay version`: wall time from spawn to exit;
2. serve readiness: wall time from spawning `relay serve` to its first 200 on GET /v1/health
   (polled every 5 ms over loopback), on a database made beforehand by each side's `relay ls`.

The one-file build runs with `env -i PATH=/usr/bin:/bin HOME=<empty folder>`, as shipped; the
venv's `relay` with this environment, with bytecode caching allowed after a warm-up (as a pip
install is byte-compiled). Reported: median and min-max of each, and the median ratio one file /
venv of the per-pair times.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_RELAY = str(Path(sys.executable).with_name("relay"))


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_version(relay: str, env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([relay, "version"], env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def time_ready(relay: str, env: dict[str, str], cwd: Path) -> float:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [relay, "serve", "--bind", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = started + 60
        while time.perf_counter() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/v1/health")
                if conn.getresponse().status == 200:
                    return time.perf_counter() - started
            except OSError:
                time.sleep(0.005)
            finally:
                conn.close()
        raise SystemExit("relay serve did not become ready within 60 s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def summary(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):7.1f} ms ({min(ms):.1f}-{max(ms):.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--relay", default=str(ROOT / "dist" / "relay"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        home, onefile_dir, venv_dir = root / "home", root / "onefile", root / "venv"
        for folder in (home, onefile_dir, venv_dir):
            folder.mkdir()
        onefile_env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
        venv_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        sides = {
            "venv": (VENV_RELAY, venv_env, venv_dir),
            "one file": (args.relay, onefile_env, onefile_dir),
        }
        for relay, env, cwd in sides.values():  # warm-up: bytecode, page cache, the database
            subprocess.run([relay, "ls"], env=env, cwd=cwd, check=True, capture_output=True)
            time_version(relay, env, cwd)
        results: dict[str, dict[str, list[float]]] = {
            name: {"version": [], "ready": []} for name in sides
        }
        for _ in range(args.runs):
            for name, (relay, env, cwd) in sides.items():
                results[name]["version"].append(time_version(relay, env, cwd))
            for name, (relay, env, cwd) in sides.items():
                results[name]["ready"].append(time_ready(relay, env, cwd))
    size = Path(args.relay).stat().st_size
    print(f"{args.relay}: {size / 1e6:.1f} MB; {args.runs} runs each, interleaved")
    for what in ("version", "ready"):
        label = "relay version" if what == "version" else "serve ready "
        for name in sides:
            print(f"  {label} {name:8} {summary(results[name][what])}")
        ratios = [
            one / venv
            for one, venv in zip(results["one file"][what], results["venv"][what], strict=True)
        ]
        print(f"  {label} one file / venv: {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

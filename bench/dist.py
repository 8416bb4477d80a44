"""Start-up of the one-file `dist/relay` (and `dist/relay-onedir/relay`) against the venv's `relay`.

    .venv/bin/python bench/dist.py [--runs 20] [--relay dist/relay] [--onedir ...]

A one-file executable unpacks its bundle (interpreter, libraries, modules) into a fresh
temporary folder on every start; the venv's `relay` imports from site-packages. Two things are
timed, `--runs` times each, the sides interleaved (venv, one file, one folder, venv, ...):

1. `relay version`: wall time from spawn to exit, and CPU time (user + system, children
   included);
2. serve readiness: wall time from spawning `relay serve` to its first 200 on GET /v1/health
   (polled every 5 ms over loopback), on a database made beforehand by each side's `relay ls`.

The one-file and one-folder builds run with `env -i PATH=/usr/bin:/bin HOME=<empty folder>`, as shipped; the
venv's `relay` with this environment, with bytecode caching allowed after a warm-up (as a pip
install is byte-compiled). Reported: median and min-max of each, and the median ratios one file /
venv and one folder / venv of the per-round times.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def health_status(port: int) -> int | None:
    """GET /v1/health over a bare socket (bench/http.py shadows the `http` package here)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /v1/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            head = sock.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def time_version(relay: str, env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one `relay version`; CPU (user + system of the process and its
    children, the one-file unpacker's Python child included) is steadier on a busy machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([relay, "version"], env=env, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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
            if health_status(port) == 200:
                return time.perf_counter() - started
            time.sleep(0.005)
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
    parser.add_argument("--onedir", default=str(ROOT / "dist" / "relay-onedir" / "relay"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        home = root / "home"
        home.mkdir()
        minimal = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
        venv_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        sides = {
            "venv": (VENV_RELAY, venv_env, root / "venv"),
            "one file": (args.relay, minimal, root / "onefile"),
            "folder": (args.onedir, minimal, root / "onedir"),
        }
        for _, _, folder in sides.values():
            folder.mkdir()
        for relay, env, cwd in sides.values():  # warm-up: bytecode, page cache, the database
            subprocess.run([relay, "ls"], env=env, cwd=cwd, check=True, capture_output=True)
            time_version(relay, env, cwd)
        results: dict[str, dict[str, list[float]]] = {
            name: {"version": [], "cpu": [], "ready": []} for name in sides
        }
        for _ in range(args.runs):
            for name, (relay, env, cwd) in sides.items():
                wall, cpu = time_version(relay, env, cwd)
                results[name]["version"].append(wall)
                results[name]["cpu"].append(cpu)
            for name, (relay, env, cwd) in sides.items():
                results[name]["ready"].append(time_ready(relay, env, cwd))
    size = Path(args.relay).stat().st_size
    print(f"{args.relay}: {size / 1e6:.1f} MB; {args.runs} runs each, interleaved")
    labels = {"version": "version wall", "cpu": "version CPU ", "ready": "serve ready "}
    for what, label in labels.items():
        for name in sides:
            print(f"  {label} {name:8} {summary(results[name][what])}")
        for name in ("one file", "folder"):
            pairs = zip(results[name][what], results["venv"][what], strict=True)
            ratio = statistics.median(one / venv for one, venv in pairs)
            print(f"  {label} {name} / venv: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

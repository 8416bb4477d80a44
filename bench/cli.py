"""Speed of the `relay` command against floors measured in the same run.

    .venv/bin/python bench/cli.py [--files 1000] [--rounds 3] [--starts 20]

1. Bulk add: `relay add` of `--files` generated license files (~3.7 KB each, the size of real
   Keygen files) in one call, into a fresh database, against the floor: the same work in a bare
   loop in this process — read each file, undo the armour, Ed25519-verify, AES-256-GCM-decrypt,
   parse the JSON, then insert every row (and its `license.added` audit row) in one bare
   `sqlite3` transaction into a database with the same schema. The floor pays no process
   start-up, no imports and no framework; `relay add` pays all of them.
2. Start-up: wall time of `relay version` against `python -c pass`, `--starts` runs each,
   interleaved.

Like a regular (non-editable) install, whose modules pip byte-compiles, the `relay` processes run
with bytecode caching allowed (PYTHONDONTWRITEBYTECODE removed) after one warm-up run; pass
`--keep-env` to run them with the environment unchanged.

Rounds alternate the order of the two sides. Reported: per-round figures and the median of
the per-round ratios floor/relay (throughput: 1.0 = as fast as the floor) and relay/python
(start-up: 1.0 = as fast as a bare interpreter), with min-max.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PY = sys.executable
RELAY = str(Path(PY).with_name("relay"))
NAME_PAD = 1600  # makes LicenseWriter's file ~3.7 KB, the size of a real Keygen file


def generate(folder: Path, count: int) -> tuple[list[str], list[str], str]:
    """Write `count` valid license files; return their paths, keys and the public key."""
    from relay_core.testing import LicenseWriter

    writer = LicenseWriter.ed25519()
    now = time.time()
    paths, keys = [], []
    for i in range(count):
        key = f"BENCH-{i:06d}-{os.urandom(8).hex().upper()}"
        path = folder / f"l{i:05d}.lic"
        path.write_bytes(
            writer.license(key=key, issued=now - 60, expiry=now + 86400 * 30, name="x" * NAME_PAD)
        )
        paths.append(str(path))
        keys.append(key)
    return paths, keys, writer.public_key


ENV = dict(os.environ)


def fresh_database(folder: Path, name: str) -> Path:
    """A new database with Relay's schema, created by `relay ls` (so both sides insert alike)."""
    db = folder / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    subprocess.run([RELAY, "--database", str(db), "ls"], check=True, capture_output=True, env=ENV)
    return db


def relay_add(db: Path, paths: list[str], keys: list[str], public_key: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [
            RELAY,
            "--database",
            str(db),
            "add",
            "--file",
            ",".join(paths),
            "--key",
            ",".join(keys),
            "--public-key",
            public_key,
        ],
        capture_output=True,
        text=True,
        check=False,
        env=ENV,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or done.stdout.count("\n") != len(paths):
        raise SystemExit(f"relay add failed ({done.returncode}): {done.stderr[:500]}")
    return elapsed


def floor_add(db: Path, paths: list[str], keys: list[str], public_key: str) -> float:
    """The irreducible work of `relay add`, in a bare loop."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    started = time.perf_counter()
    verifier = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
    rows = []
    for path, key in zip(paths, keys, strict=True):
        raw = Path(path).read_bytes()
        body = b"".join(line for line in raw.splitlines() if not line.startswith(b"-----"))
        cert = json.loads(base64.b64decode(body))
        verifier.verify(base64.b64decode(cert["sig"]), f"license/{cert['enc']}".encode())
        ct, iv, tag = (base64.b64decode(part) for part in cert["enc"].split("."))
        plain = AESGCM(hashlib.sha256(key.encode()).digest()).decrypt(iv, ct + tag, None)
        doc = json.loads(plain)
        rows.append((doc["data"]["id"], raw, doc["data"]["attributes"]["key"]))
    now = int(time.time())
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        for guid, raw, key in rows:
            cur = conn.execute(
                "INSERT INTO licenses (guid, file, key, created_at, file_expires_at) VALUES (?, ?, ?, ?, ?)",
                (guid, raw, key, now, now + 86400 * 30),
            )
            conn.execute(
                "INSERT INTO audit_logs (event_type_id, entity_type_id, entity_id, pool_id, created_at)"
                " VALUES (1, 1, ?, NULL, ?)",
                (cur.lastrowid, now),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return time.perf_counter() - started


def wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=ENV)
    return time.perf_counter() - started


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--starts", type=int, default=20, help="start-up runs per side per round")
    parser.add_argument(
        "--keep-env",
        action="store_true",
        help="keep PYTHONDONTWRITEBYTECODE as the environment sets it",
    )
    args = parser.parse_args()
    if not args.keep_env:
        ENV.pop("PYTHONDONTWRITEBYTECODE", None)

    with tempfile.TemporaryDirectory(prefix="relay-bench-cli-") as tmp:
        folder = Path(tmp)
        (folder / "files").mkdir()
        print(f"generating {args.files} license files ...", flush=True)
        paths, keys, public_key = generate(folder / "files", args.files)
        size = Path(paths[0]).stat().st_size
        print(
            f"file size {size} bytes; python {sys.version.split()[0]}; sqlite {sqlite3.sqlite_version}"
        )

        print(
            "bytecode cache:", "as the environment says" if args.keep_env else "allowed, warmed up"
        )
        relay_add(fresh_database(folder, "warmup.sqlite"), paths[:2], keys[:2], public_key)

        add_ratios: list[float] = []
        print(f"\nbulk add of {args.files} files in one call")
        for round_no in range(args.rounds):
            sides: list[tuple[str, Callable[[Path, list[str], list[str], str], float]]] = [
                ("relay", relay_add),
                ("floor", floor_add),
            ]
            if round_no % 2:
                sides.reverse()
            times = {}
            for name, fn in sides:
                db = fresh_database(folder, f"{name}.sqlite")
                times[name] = fn(db, paths, keys, public_key)
            ratio = times["floor"] / times["relay"]
            add_ratios.append(ratio)
            print(
                f"  round {round_no + 1}: relay {times['relay']:.3f}s "
                f"({args.files / times['relay']:.0f} files/s), floor {times['floor']:.3f}s "
                f"({args.files / times['floor']:.0f} files/s), floor/relay {ratio:.2f}"
            )

        start_ratios: list[float] = []
        print(f"\nstart-up, median of {args.starts} runs each")
        for round_no in range(args.rounds):
            relay_runs, python_runs = [], []
            for i in range(args.starts):
                pair = [("relay", [RELAY, "version"]), ("python", [PY, "-c", "pass"])]
                if (i + round_no) % 2:
                    pair.reverse()
                for name, argv in pair:
                    (relay_runs if name == "relay" else python_runs).append(wall(argv))
            relay_s, python_s = statistics.median(relay_runs), statistics.median(python_runs)
            start_ratios.append(relay_s / python_s)
            print(
                f"  round {round_no + 1}: relay version {relay_s * 1000:.1f} ms, "
                f"python -c pass {python_s * 1000:.1f} ms, relay/python {relay_s / python_s:.2f}"
            )

        print("\nsummary (medians of per-round ratios)")
        print(f"  bulk add throughput, floor/relay ... {spread(add_ratios)}   target >= 0.50")
        print(f"  relay version start-up / python .... {spread(start_ratios)}   target <= 2.5")


if __name__ == "__main__":
    main()

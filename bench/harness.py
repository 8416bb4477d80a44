"""What the HTTP and soak benchmarks share: a database of realistic license files, a free
loopback port, and waiting for a server to answer.

Imported by scripts that keep this directory at the end of `sys.path` (after the standard
library), because `bench/http.py` would otherwise shadow the standard library's `http`.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import time
from pathlib import Path

LICENSE_NAME_PAD = 1600  # makes LicenseWriter's file ~3.7 KB, the size of a real Keygen file


def build_database(path: Path, nodes: int, label: str) -> tuple[bytes, str]:
    """Store `nodes` fresh licenses (keys ``<LABEL>-000000`` …) in a new SQLite database at
    `path`, checkpointed and fsynced so that timing starts clean; return the first (file, key).
    """
    from relay_core import Relay
    from relay_core.testing import LicenseWriter
    from relay_sqlite import open_store

    writer = LicenseWriter.ed25519()
    now = time.time()
    items = [
        (
            writer.license(
                key=f"{label.upper()}-{i:06d}",
                issued=now - 60,
                expiry=now + 30 * 86400,
                name=f"Relay {label} " + "x" * LICENSE_NAME_PAD,
            ),
            f"{label.upper()}-{i:06d}",
        )
        for i in range(nodes)
    ]
    store = open_store(str(path), pragmas={})
    try:
        Relay(store).add_licenses(items, public_key=writer.public_key)
        store.checkpoint()
    finally:
        store.close()
    with open(path, "rb") as db:  # fsync before timing, or the first checkpoint pays for it
        os.fsync(db.fileno())
    return items[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(port: int, proc: subprocess.Popen[bytes], path: str = "/v1/health") -> None:
    """Return once the server on `port` answers `path` with any HTTP response (within 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server on port {port} did not answer within 30 s")

"""A SQLite database of realistic license files, shared by the HTTP and soak benchmarks.

Imported by scripts that keep this directory at the end of `sys.path` (after the standard
library), because `bench/http.py` would otherwise shadow the standard library's `http`.
"""

from __future__ import annotations

import os
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

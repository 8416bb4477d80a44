"""Two OS processes claiming from one file never share a license."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from relay_core import Relay
from relay_core.testing import LicenseWriter
from relay_sqlite import SqliteStore

CLAIMER = """
import json, sys, time
from pathlib import Path
from relay_core import Relay
from relay_core.errors import NoLicensesAvailableError
from relay_sqlite import SqliteStore

path, name, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
store = SqliteStore(path)
relay = Relay(store)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
won = []
for i in range(40):
    try:
        won.append(relay.claim(f"{name}-{i}").license.guid)
    except NoLicensesAvailableError:
        pass
store.close()
print(json.dumps(won), flush=True)
"""


def test_two_processes_claiming_at_once_never_share_a_license(
    tmp_path: Path, writer: LicenseWriter
) -> None:
    """Eighty claims from two processes lease each of forty licenses exactly once."""
    path = tmp_path / "relay.sqlite"
    go = tmp_path / "go"
    store = SqliteStore(path)
    relay = Relay(store)
    now = int(time.time())
    files = [(writer.license(key=f"K-{n}", issued=now - 60), f"K-{n}") for n in range(40)]
    relay.add_licenses(files, public_key=writer.public_key)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(path), name, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        go.touch()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    a, b = results
    assert set(a).isdisjoint(b)
    assert len(a) + len(b) == 40
    assert len(set(a) | set(b)) == 40
    holders = [lic.node_id for lic in relay.list_licenses()]
    assert None not in holders
    assert len(set(holders)) == 40
    store.close()

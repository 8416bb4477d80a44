"""Crashes: SIGKILL the server (and a concurrent `relay add`) at random moments, 20 times.

Each round restarts `relay serve` on the same database, runs a claim/heartbeat/release storm
from 16 keep-alive nodes while a `relay add` of 3 licenses runs, and kills both at a random
moment between 0.05 and 1.0 s into the storm (the issue asks for random moments; a longer
storm adds no new interleavings, only time). After every kill the database is checked before
anything else opens it. The seed is printed so a failing round can be replayed.
"""

from __future__ import annotations

import http.client
import random
import signal
import subprocess
import threading
import time

from .conftest import (
    RELAY,
    KeepAlive,
    LicenseFile,
    Workspace,
    add_licenses,
    base_env,
    start_server,
    violations,
)

ROUNDS = 20
NODES = 16


def _storm(port: int, round_no: int, stop: threading.Event, statuses: list[int]) -> None:
    def node(n: int) -> None:
        rng = random.Random(round_no * 100 + n)
        client = KeepAlive(port, timeout=10)
        fingerprint = f"crash-node-{rng.randrange(24):02d}"
        try:
            while not stop.is_set():
                method = "DELETE" if rng.random() < 0.35 else "PUT"
                try:
                    status, _ = client.request(method, f"/v1/nodes/{fingerprint}")
                except (OSError, http.client.HTTPException):
                    return  # the server is gone
                statuses.append(status)
                if method == "DELETE":
                    fingerprint = f"crash-node-{rng.randrange(24):02d}"
        finally:
            client.close()

    threads = [threading.Thread(target=node, args=(n,)) for n in range(NODES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)


def test_sigkill_at_random_moments_loses_nothing(ws: Workspace) -> None:
    """20 SIGKILLs mid-storm (server and a `relay add`): after each, integrity_check is ok, no
    license is lost or doubly leased, every lease is on an active node, every change has its
    audit rows and no audit row lacks its change, and each killed `relay add` is all or nothing."""
    seed = random.randrange(2**32)
    print(f"crash storm seed {seed}")
    rng = random.Random(seed)
    committed = {lic.guid for lic in add_licenses(ws, 12)}
    statuses: list[int] = []
    for round_no in range(ROUNDS):
        server = start_server(ws)
        batch = [ws.license(f"round{round_no}-{i}") for i in range(3)]
        adder = _start_add(ws, batch)
        stop = threading.Event()
        storm = threading.Thread(target=_storm, args=(server.port, round_no, stop, statuses))
        storm.start()
        time.sleep(rng.uniform(0.05, 1.0))
        server.process.send_signal(signal.SIGKILL)
        adder.send_signal(signal.SIGKILL)
        stop.set()
        storm.join(timeout=60)
        server.process.wait()
        _, add_err = adder.communicate()
        assert adder.returncode in (0, -signal.SIGKILL), add_err

        found = violations(ws.db)
        assert found == [], f"round {round_no} (seed {seed}): {found}"
        present = {guid for (guid,) in ws.query("SELECT guid FROM licenses")}
        added = {lic.guid for lic in batch} & present
        assert added in (set(), {lic.guid for lic in batch}), f"round {round_no}: half an add"
        committed |= added
        assert present == committed, f"round {round_no}: licenses lost or invented"
    assert not any(status >= 500 for status in statuses)
    assert {201, 202, 204} <= set(statuses), "the storms never got going"

    final = start_server(ws)
    assert final.claim("after-the-crashes").status in (201, 202, 410)
    code, _, err = final.stop()
    assert code == 0, err
    assert violations(ws.db) == []


def _start_add(ws: Workspace, batch: list[LicenseFile]) -> subprocess.Popen[str]:
    args = [RELAY, "add", "--public-key", ws.public_key]
    for lic in batch:
        args += ["--file", lic.path.name, "--key", lic.key]
    return subprocess.Popen(
        args,
        cwd=ws.root,
        env=base_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

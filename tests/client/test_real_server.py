"""relay-client against the real `relay serve` (subprocess, SQLite, loopback), black-box.

The relay's TTL cannot go below 30 s, so everything that needs a lease to expire happens in
one test, `test_three_ttls_hold_pause_and_kill`, which runs its scenarios side by side.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from relay_client import (
    NoSeatError,
    RelayClient,
    RelayUnavailableError,
    ResponseSignatureError,
)

if TYPE_CHECKING:  # pytest's importlib mode: conftest is not importable at run time
    from conftest import Relays, Worker

StartWorker = Callable[..., "Worker"]


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll until `predicate()` or `timeout` seconds; returns the last result."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_claim_heartbeat_release(relays: Relays) -> None:
    """A lease is claimed (seat taken), heartbeated (relay's timestamp moves), and released."""
    relay = relays.serve(seats=2, pool="prod", secret="s3cret")
    client = RelayClient(
        relay.url,
        pool="prod",
        fingerprint="node-1",
        signing_secret="s3cret",
        public_key=relays.writer.public_key,
        heartbeat_fraction=0.04,  # every 1.2 s with the 30 s TTL
    )
    with client.lease() as lease:
        assert lease.license is not None
        assert lease.license.key == lease.license_key
        assert relay.leased() == 1
        first = relay.query("SELECT last_heartbeat_at FROM nodes WHERE fingerprint = 'node-1'")
        assert wait_for(lambda: lease.heartbeats >= 2, timeout=15)
        assert (
            relay.query("SELECT last_heartbeat_at FROM nodes WHERE fingerprint = 'node-1'") > first
        )
        lease.check()
    assert relay.leased() == 0
    assert relay.active_nodes() == 0


def test_relay_restart_under_a_held_lease(relays: Relays) -> None:
    """The relay stops and starts again on the same database: heartbeats resume, nothing is lost."""
    relay = relays.serve()
    client = RelayClient(relay.url, fingerprint="node-1", heartbeat_fraction=0.04, retry_max=1.0)
    with client.lease() as lease:
        relay.stop()
        time.sleep(2)  # at least one heartbeat fails while the relay is down
        relay.start()
        before = lease.heartbeats
        assert wait_for(lambda: lease.heartbeats > before, timeout=15)
        assert not lease.lost
        assert relay.leased() == 1
    assert relay.leased() == 0


def test_wait_for_a_seat(relays: Relays) -> None:
    """With one seat taken, lease(wait=...) gets it once the holder releases; no wait fails."""
    relay = relays.serve()
    holder = RelayClient(relay.url, fingerprint="holder").acquire()
    with pytest.raises(NoSeatError):
        RelayClient(relay.url, fingerprint="impatient").acquire()
    got: list[str] = []

    def wait_then_work() -> None:
        with RelayClient(relay.url, fingerprint="waiter", retry_max=0.5).lease(wait=20) as lease:
            got.append(lease.license_key)

    thread = threading.Thread(target=wait_then_work)
    thread.start()
    time.sleep(1)  # the waiter is now retrying 410s
    holder.release()
    thread.join(timeout=30)
    assert len(got) == 1
    assert relay.leased() == 0


def test_wrong_signing_secret(relays: Relays) -> None:
    """A relay signing with another secret makes lease() fail with a signature error, seat freed."""
    relay = relays.serve(secret="theirs")
    client = RelayClient(relay.url, fingerprint="node-1", signing_secret="ours")
    with pytest.raises(ResponseSignatureError, match="wrong signing secret"), client.lease():
        pytest.fail("the block must not run")
    assert relay.leased() == 0


def test_a_relay_that_stops_answering(relays: Relays) -> None:
    """A frozen relay (SIGSTOP) makes requests fail after the timeout instead of hanging."""
    relay = relays.serve()
    relay.signal(signal.SIGSTOP)
    try:
        client = RelayClient(relay.url, fingerprint="node-1", timeout=0.5)
        with pytest.raises(RelayUnavailableError, match="no answer within 0.5s"):
            client.acquire()
    finally:
        relay.signal(signal.SIGCONT)


def test_sigterm_releases_the_seat(relays: Relays, workers: StartWorker) -> None:
    """A client process killed with SIGTERM gives its seat back at once (well before the TTL)."""
    relay = relays.serve()
    worker = workers(relay.url, "node-1", "--hold", "600")
    worker.expect("held")
    assert relay.leased() == 1
    sent = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: relay.leased() == 0, timeout=10)
    freed_after = time.monotonic() - sent
    assert worker.proc.wait(timeout=10) == -signal.SIGTERM  # still dies of SIGTERM
    print(f"seat freed {freed_after:.2f}s after SIGTERM")


def test_sigterm_chains_to_the_applications_handler(relays: Relays, workers: StartWorker) -> None:
    """With the application's own SIGTERM handler, the seat is released and that handler still runs."""
    relay = relays.serve()
    worker = workers(relay.url, "node-1", "--hold", "600", "--own-sigterm")
    worker.expect("held")
    worker.proc.send_signal(signal.SIGTERM)
    worker.expect("own handler")
    assert worker.proc.wait(timeout=10) == 7
    assert relay.leased() == 0


def test_twelve_processes_share_ten_seats(relays: Relays, workers: StartWorker) -> None:
    """12 clients with wait all run, never more than 10 at once, and nothing is held afterwards."""
    relay = relays.serve(seats=10, pool="prod")
    procs = [
        workers(relay.url, f"node-{i}", "--pool", "prod", "--wait", "120", "--hold", "2")
        for i in range(12)
    ]
    most = 0
    while any(w.proc.poll() is None for w in procs):
        most = max(most, relay.leased(), relay.active_nodes())
        time.sleep(0.05)
    assert [w.proc.returncode for w in procs] == [0] * 12
    for w in procs:
        w.expect("held")
        w.expect("released")
    assert 0 < most <= 10
    assert relay.query("SELECT COUNT(*) FROM licenses WHERE claims > 0") == 10
    assert relay.query("SELECT SUM(claims) FROM licenses") == 12
    assert relay.leased() == 0
    assert relay.active_nodes() == 0


def test_three_ttls_hold_pause_and_kill(relays: Relays, workers: StartWorker) -> None:
    """Side by side over 3x the 30 s TTL: a plain lease() holds throughout and frees its seat at
    once; a client paused past the TTL is culled and detects the loss; a SIGKILLed one is culled.
    """
    relay = relays.serve(seats=3)
    holder = workers(relay.url, "holder", "--hold", "90")
    paused = workers(relay.url, "paused", "--hold", "600")
    killed = workers(relay.url, "killed", "--hold", "600")
    for w in (holder, paused, killed):
        w.expect("held")
    assert relay.leased() == 3

    paused.proc.send_signal(signal.SIGSTOP)
    killed.proc.send_signal(signal.SIGKILL)
    # The relay culls both within TTL + cull interval; the holder keeps heartbeating.
    assert wait_for(lambda: relay.leased() == 1, timeout=45, step=0.5)
    paused.proc.send_signal(signal.SIGCONT)
    assert "before the lease expired" in paused.expect("lost", timeout=10)
    assert paused.proc.wait(timeout=10) == 3
    assert relay.leased() == 1

    line = holder.expect("released", timeout=90)
    assert relay.leased() == 0  # free immediately after the with block
    assert int(line.split()[1]) >= 8  # heartbeats every 10 s for 90 s
    assert holder.proc.wait(timeout=10) == 0

"""One fingerprint, one live lease: across processes, clients, threads and tasks, and after a loss."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from relay_client import (
    AsyncLease,
    AsyncRelayClient,
    ConfigurationError,
    Lease,
    LeaseConflictError,
    RelayClient,
    exits,
    seatlock,
)
from relay_client.wire import Request, Response
from relay_core import Relay
from relay_core.testing import FrozenClock

from .gate import Gate
from .test_client import wait_until

Serve = Callable[..., AbstractContextManager[str]]
MakeRelay = Callable[..., Relay]
Leased = Callable[..., int]

HOLDER = """
import sys, time
from relay_client import RelayClient
lease = RelayClient(sys.argv[1], fingerprint="shared", release_on_signal=False).acquire()
print(lease.license_key, flush=True)
time.sleep(60)
"""


def test_a_second_process_is_refused_until_the_first_dies(
    serve: Serve, make_relay: MakeRelay, leased: Leased, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live process holding the fingerprint's lease makes a claim fail without asking the
    relay; once that process is killed (its lock dies with it), its seat is taken over."""
    relay = make_relay(seats=2)
    with serve(relay) as url:
        client = RelayClient(url, fingerprint="shared")
        sent: list[Request] = []
        send = client._transport.send

        def record(request: Request) -> Response:
            sent.append(request)
            return send(request)

        monkeypatch.setattr(client._transport, "send", record)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "KEY-0"
            with pytest.raises(LeaseConflictError, match="another live process"):
                client.acquire()
            assert sent == []
            assert leased(relay) == 1
        finally:
            holder.kill()
            holder.wait(10)
        with client.lease() as lease:  # the dead run's seat: 202, given back, claimed anew
            assert lease.license_key == "KEY-0"
            assert leased(relay) == 1
        assert [r.method for r in sent] == ["PUT", "DELETE", "PUT", "DELETE"]


def test_two_clients_in_one_process_do_not_share_a_fingerprint(
    serve: Serve, make_relay: MakeRelay, leased: Leased
) -> None:
    """A second client with the same fingerprint is refused while the first holds the lease."""
    relay = make_relay(seats=2)
    with serve(relay) as url:
        first = RelayClient(url, fingerprint="fp")
        second = RelayClient(url, fingerprint="fp")
        with first.lease():
            with pytest.raises(LeaseConflictError, match="another client in this process"):
                second.acquire()
            assert leased(relay) == 1
        with second.lease() as lease:
            assert lease.license_key == "KEY-0"


def test_acquire_from_two_threads_gives_one_lease(
    serve: Serve, make_relay: MakeRelay, leased: Leased, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one thread's claim is in flight, a second acquire() on the client is refused."""
    relay = make_relay(seats=2)
    with serve(relay) as url:
        client = RelayClient(url, fingerprint="fp")
        gate = Gate(client._transport.send, "PUT", nth=1)
        monkeypatch.setattr(client._transport, "send", gate)
        got: list[Lease] = []
        claimer = threading.Thread(target=lambda: got.append(client.acquire()))
        claimer.start()
        try:
            assert gate.entered.wait(10)
            with pytest.raises(ConfigurationError, match="already claiming"):
                client.acquire()
        finally:
            gate.opened.set()
            claimer.join(10)
        assert len(got) == 1
        assert leased(relay) == 1
        assert got[0].release() is True


def test_acquire_from_two_tasks_gives_one_lease(
    serve: Serve, make_relay: MakeRelay, leased: Leased
) -> None:
    """The asyncio client refuses a second acquire() while the first is claiming."""
    relay = make_relay(seats=2)

    async def main(url: str) -> None:
        client = AsyncRelayClient(url, fingerprint="fp")
        results = await asyncio.gather(client.acquire(), client.acquire(), return_exceptions=True)
        leases = [r for r in results if isinstance(r, AsyncLease)]
        refused = [r for r in results if isinstance(r, ConfigurationError)]
        assert (len(leases), len(refused)) == (1, 1), results
        assert "already claiming" in str(refused[0])
        assert leased(relay) == 1
        assert await leases[0].release() is True

    with serve(relay) as url:
        asyncio.run(main(url))


def test_a_lost_lease_does_not_block_a_new_one(
    serve: Serve,
    make_relay: MakeRelay,
    leased: Leased,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a heartbeat's 410 the loss says so (no claim advice), and acquire() works again."""
    relay = make_relay(ttl=30)
    with serve(relay) as url:
        client = RelayClient(url, fingerprint="n1", heartbeat_fraction=0.01)
        gate = Gate(client._transport.send, "PUT", nth=2)  # hold the first heartbeat back
        monkeypatch.setattr(client._transport, "send", gate)
        lease = client.acquire()
        assert gate.entered.wait(10)
        clock.advance(31)
        assert relay.cull().released == 1
        relay.claim("other")  # the seat went to another node: the heartbeat gets 410
        gate.opened.set()
        assert wait_until(lambda: lease.lost)
        error = lease.lost_error
        assert error is not None
        assert "410" in error.reason
        assert "wait" not in str(error)
        relay.release("other")
        with client.lease() as again:
            assert again.license_key == "KEY-0"
            assert leased(relay) == 1
        assert lease.released


NOWHERE = ["http://127.0.0.1:9"]


def test_a_forked_child_neither_keeps_the_lock_nor_holds_a_lease() -> None:
    """A child made by fork (multiprocessing's default on Linux) that outlives the parent's
    lease neither keeps the fingerprint locked nor inherits the parent's lock registry."""
    lock = seatlock.take(NOWHERE, None, "forked", patience=0)
    go_r, go_w = os.pipe()
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it holds, then outlive the parent's release
        try:
            os.write(report_w, str(len(seatlock._held)).encode())
            os.read(go_r, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(report_r, 16) == b"0"
        lock.release()
        seatlock.take(NOWHERE, None, "forked", patience=0).release()  # free again
    finally:
        os.write(go_w, b"x")
        os.waitpid(pid, 0)
        for fd in (go_r, go_w, report_r, report_w):
            os.close(fd)


FORKING_HOLDER = """
import os, sys, time
from relay_client import seatlock
lock = seatlock.take(["http://127.0.0.1:9"], None, "forked", patience=0)
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
time.sleep(60)
"""


def test_a_forked_child_does_not_keep_the_lock_of_a_killed_parent() -> None:
    """The lock dies with its process on SIGKILL even if that process forked a child."""
    holder = subprocess.Popen(
        [sys.executable, "-c", FORKING_HOLDER], stdout=subprocess.PIPE, text=True
    )
    child = 0
    try:
        assert holder.stdout is not None
        child = int(holder.stdout.readline())
        holder.kill()
        holder.wait(10)
        seatlock.take(NOWHERE, None, "forked", patience=0).release()
    finally:
        holder.kill()
        holder.wait(10)
        if child:
            os.kill(child, signal.SIGKILL)


def test_a_forked_child_exiting_does_not_release_the_parents_lease(
    serve: Serve, make_relay: MakeRelay, leased: Leased
) -> None:
    """The exit hooks (atexit, SIGTERM) of a forked child do not give back the parent's seat."""
    relay = make_relay(ttl=30)
    with (
        serve(relay) as url,
        RelayClient(url, fingerprint="n1", release_on_signal=False).lease() as lease,
    ):
        pid = os.fork()
        if pid == 0:
            try:
                exits.release_all()  # what its atexit or SIGTERM handler runs
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert leased(relay) == 1
        lease.check()
        assert not lease.released

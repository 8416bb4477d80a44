"""AsyncRelayClient: the same flows driven from asyncio, against the in-process relay."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from relay_client import (
    AsyncRelayClient,
    LeaseConflictError,
    LeaseLostError,
    NoSeatError,
    RelayClient,
    ResponseSignatureError,
    seatlock,
)
from relay_client.seatlock import SeatLock
from relay_core import Relay
from relay_core.testing import FrozenClock, LicenseWriter

from .gate import Gate

Serve = Callable[..., AbstractContextManager[str]]
MakeRelay = Callable[..., Relay]
Leased = Callable[..., int]


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `predicate` on the loop until true or `timeout`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end and not predicate():
        await asyncio.sleep(0.02)
    return predicate()


def test_async_lease_claims_heartbeats_and_releases(
    serve: Serve, make_relay: MakeRelay, leased: Leased, writer: LicenseWriter, clock: FrozenClock
) -> None:
    """async with client.lease(): verified license, heartbeats from a task, seat free after."""
    relay = make_relay(ttl=2)

    async def main(url: str) -> None:
        client = AsyncRelayClient(
            url, fingerprint="n1", signing_secret="k", public_key=writer.public_key
        )
        async with client.lease() as lease:
            assert lease.license is not None
            assert lease.license.key == "KEY-0"
            assert await eventually(lambda: lease.heartbeats >= 2)
            clock.advance(1)
            assert relay.cull().released == 0
            lease.check()
        assert leased(relay) == 0
        await client.health()

    with serve(relay, signing_secret="k") as url:
        asyncio.run(main(url))


def test_async_wait_and_loss(
    serve: Serve, make_relay: MakeRelay, leased: Leased, clock: FrozenClock
) -> None:
    """wait retries the 410 until a seat frees; a culled lease is lost and check() raises."""
    relay = make_relay(ttl=30)

    async def main(url: str) -> None:
        first = AsyncRelayClient(url, fingerprint="a")
        second = AsyncRelayClient(
            url, fingerprint="b", retry_base=0.05, retry_max=0.2, heartbeat_fraction=0.01
        )
        with pytest.raises(NoSeatError):
            async with first.lease():
                await second.acquire()
        async with second.lease(wait=5) as lease:
            clock.advance(31)
            assert relay.cull().released == 1
            assert await eventually(lambda: lease.lost)
            with pytest.raises(LeaseLostError):
                lease.check()
        assert leased(relay) == 0

    with serve(relay) as url:
        asyncio.run(main(url))


def test_async_cancelled_claim_leaks_no_seat(
    serve: Serve, make_relay: MakeRelay, leased: Leased
) -> None:
    """Cancelling a waiting claim stops it; nothing stays leased to the cancelled node."""
    relay = make_relay()

    async def main(url: str) -> None:
        holder = await AsyncRelayClient(url, fingerprint="holder").acquire()
        waiter = AsyncRelayClient(url, fingerprint="waiter", retry_base=0.05, retry_max=0.1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(waiter.acquire(wait=30), timeout=0.3)
        await holder.release()
        await asyncio.sleep(0.3)  # the abandoned claim would have retried by now
        assert leased(relay) == 0

    with serve(relay) as url:
        asyncio.run(main(url))


def test_async_wrong_secret_is_a_signature_error(
    serve: Serve, make_relay: MakeRelay, leased: Leased
) -> None:
    """The async client verifies signatures the same way and gives back the untrusted grant."""
    relay = make_relay()

    async def main(url: str) -> None:
        with pytest.raises(ResponseSignatureError):
            await AsyncRelayClient(url, fingerprint="a", signing_secret="ours").acquire()

    with serve(relay, signing_secret="theirs") as url:
        asyncio.run(main(url))
    assert leased(relay) == 0


def test_async_cancelled_while_taking_the_lock_leaves_it_free(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cancelled while its thread takes the fingerprint's lock, acquire() leaves the lock free
    once that take completes (it is not held by nobody for the rest of the process)."""

    async def main() -> None:
        client = AsyncRelayClient("http://127.0.0.1:9", fingerprint="n1")
        entered, opened, took = threading.Event(), threading.Event(), threading.Event()
        taken: list[SeatLock] = []
        take = client._take_seat

        def gated() -> SeatLock:
            entered.set()
            opened.wait(10)
            taken.append(take())
            took.set()
            return taken[0]

        monkeypatch.setattr(client, "_take_seat", gated)
        task = asyncio.ensure_future(client.acquire())
        assert await asyncio.to_thread(entered.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        opened.set()
        assert await asyncio.to_thread(took.wait, 10)
        assert await asyncio.to_thread(taken[0].ended.wait, 10)
        assert seatlock._held == {}

    asyncio.run(main())


def test_async_cancelled_claim_holds_the_lock_until_given_back(
    serve: Serve, make_relay: MakeRelay, leased: Leased, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim cancelled in flight keeps the fingerprint locked until its answer (201) is given
    back: another client cannot meanwhile take the abandoned seat over and then lose it."""
    relay = make_relay()

    async def main(url: str) -> None:
        client = AsyncRelayClient(url, fingerprint="n1")
        gate = Gate(client._transport.send, "PUT", 1)
        monkeypatch.setattr(client._transport, "send", gate)
        taken: list[SeatLock] = []
        take = client._take_seat
        monkeypatch.setattr(client, "_take_seat", lambda: taken.append(take()) or taken[0])
        task = asyncio.ensure_future(client.acquire())
        assert await asyncio.to_thread(gate.entered.wait, 10)
        [lock] = taken
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not lock.ended.is_set()
        other = RelayClient(url, fingerprint="n1")
        with pytest.raises(LeaseConflictError, match="in this process"):
            other.acquire()  # refused before sending anything
        gate.opened.set()
        assert await asyncio.to_thread(lock.ended.wait, 10)
        assert gate.log == [("PUT", 201), ("DELETE", 204)]
        assert leased(relay) == 0
        lease = await asyncio.to_thread(other.acquire)
        assert leased(relay) == 1
        lease.release()

    with serve(relay) as url:
        asyncio.run(main(url))


def test_async_on_lost_runs_on_the_event_loop(serve: Serve, make_relay: MakeRelay) -> None:
    """on_lost of an async lease runs on its loop (the heartbeat's requests run in threads),
    so it may set an asyncio.Event."""
    relay = make_relay(ttl=30)

    async def main(url: str) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        called = threading.Event()
        seen: list[tuple[threading.Thread, asyncio.AbstractEventLoop | None]] = []

        def on_lost(error: LeaseLostError) -> None:
            try:
                running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            seen.append((threading.current_thread(), running))
            stop.set()
            called.set()

        client = AsyncRelayClient(url, fingerprint="n1", heartbeat_fraction=0.01)
        lease = await client.acquire(on_lost=on_lost)
        relay.release("n1", None)
        assert await asyncio.to_thread(called.wait, 10)
        assert seen == [(threading.current_thread(), loop)]
        await asyncio.wait_for(stop.wait(), 10)
        assert lease.lost
        await lease.release()

    with serve(relay) as url:
        asyncio.run(main(url), debug=True)

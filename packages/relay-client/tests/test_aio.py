"""AsyncRelayClient: the same flows driven from asyncio, against the in-process relay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from relay_client import AsyncRelayClient, LeaseLostError, NoSeatError, ResponseSignatureError
from relay_core import Relay
from relay_core.testing import FrozenClock, LicenseWriter

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

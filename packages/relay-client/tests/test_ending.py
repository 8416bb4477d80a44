"""Ending a lease while a heartbeat is in flight never leaves a seat taken."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from relay_client import AsyncRelayClient, RelayClient
from relay_core import Relay

from .gate import Gate
from .test_client import wait_until

Serve = Callable[..., AbstractContextManager[str]]
MakeRelay = Callable[..., Relay]
Leased = Callable[..., int]

AFTER_RELEASE = [("PUT", 201), ("DELETE", 204), ("PUT", 201), ("DELETE", 204)]
"""The claim, the release, the late heartbeat re-taking the seat, and its give-back."""


def test_a_heartbeat_answered_after_the_release_gives_its_seat_back(
    serve: Serve, make_relay: MakeRelay, leased: Leased, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A heartbeat still in flight when release_timeout forces the DELETE out, and reaching the
    relay after it (201), gives that seat straight back; the release itself does not wait."""
    relay = make_relay(ttl=2)
    with serve(relay) as url:
        client = RelayClient(url, fingerprint="n1", heartbeat_fraction=0.05, release_timeout=0.4)
        gate = Gate(client._transport.send, "PUT", nth=2)
        monkeypatch.setattr(client._transport, "send", gate)
        lease = client.acquire()
        assert gate.entered.wait(10)
        assert lease.release() is True
        assert leased(relay) == 0
        gate.opened.set()
        assert wait_until(lambda: not lease._thread.is_alive())
        assert gate.log == AFTER_RELEASE
        assert leased(relay) == 0


@pytest.mark.parametrize("loop_closes", [False, True])
def test_async_heartbeat_answered_after_the_release_gives_its_seat_back(
    serve: Serve, make_relay: MakeRelay, leased: Leased, loop_closes: bool
) -> None:
    """The same for the asyncio client, also when the loop closes with the heartbeat in flight."""
    relay = make_relay(ttl=2)
    gates: list[Gate] = []

    async def main(url: str) -> None:
        client = AsyncRelayClient(
            url, fingerprint="n1", heartbeat_fraction=0.05, release_timeout=0.4
        )
        gate = Gate(client._transport.send, "PUT", nth=2)
        gates.append(gate)
        client._transport.send = gate  # type: ignore[method-assign]
        async with client.lease():
            assert await asyncio.to_thread(gate.entered.wait, 10)
        assert leased(relay) == 0
        gate.opened.set()
        if not loop_closes:
            await asyncio.to_thread(wait_until, lambda: len(gate.log) == 4)

    with serve(relay) as url:
        asyncio.run(main(url))
        assert wait_until(lambda: len(gates[0].log) == 4)
        assert gates[0].log == AFTER_RELEASE
        assert leased(relay) == 0

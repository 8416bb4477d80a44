"""relay-client's `lease(wait=timedelta(...))` against the real `relay serve`: queued or polling."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from relay_client import AsyncRelayClient, NoSeatError, RelayClient

if TYPE_CHECKING:  # pytest's importlib mode: conftest is not importable at run time
    from conftest import Relays


def _claim(url: str, fingerprint: str) -> None:
    RelayClient(url, fingerprint=fingerprint).acquire()


def test_waiting_client_is_queued_ahead_of_plain_claims(relays: Relays) -> None:
    """A client waiting through the relay's queue is owed the freed seat: a plain claim loses."""
    relay = relays.serve()
    holder = RelayClient(relay.url, fingerprint="holder").acquire()
    got: list[str] = []

    def wait_then_work() -> None:
        # retry_max 5 s: a polling client would lose the seat to the plain claim below.
        with RelayClient(relay.url, fingerprint="waiter", retry_max=5).lease(
            wait=timedelta(seconds=20)
        ) as lease:
            got.append(lease.license_key)
            time.sleep(0.5)

    thread = threading.Thread(target=wait_then_work)
    thread.start()
    time.sleep(1)
    holder.release()
    with pytest.raises(NoSeatError):
        _claim(relay.url, "plain")
    thread.join(timeout=30)
    assert len(got) == 1


def test_client_polls_a_relay_that_does_not_wait(relays: Relays) -> None:
    """With waiting off at the relay (--max-wait 0) the client still gets the seat, by polling."""
    relay = relays.serve()
    relay.stop()
    relay.args += ["--max-wait", "0"]
    relay.start()
    holder = RelayClient(relay.url, fingerprint="holder").acquire()
    threading.Timer(1.0, holder.release).start()
    client = RelayClient(relay.url, fingerprint="waiter", retry_max=0.5)
    with client.lease(wait=timedelta(seconds=20)) as lease:
        assert lease.license_key
    assert relay.leased() == 0


def test_async_client_waits_in_the_queue(relays: Relays) -> None:
    """The asyncio client shares the engine: it waits in the relay's queue too."""
    import asyncio

    relay = relays.serve()
    holder = RelayClient(relay.url, fingerprint="holder").acquire()

    async def main() -> str:
        client = AsyncRelayClient(relay.url, fingerprint="waiter", retry_max=5)
        asyncio.get_running_loop().call_later(1.0, holder.release)
        async with client.lease(wait=timedelta(seconds=20)) as lease:
            return lease.license_key

    assert asyncio.run(main())
    assert relay.leased() == 0

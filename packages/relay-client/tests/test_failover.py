"""Several relay URLs: two replicas serving one store, as relay-postgres replicas share a database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack

import pytest
from relay_client import AsyncRelayClient, ConfigurationError, RelayClient, RelayUnavailableError
from relay_client.failover import FailoverTransport, parse_endpoints
from relay_client.wire import Request
from relay_core import Relay, StorageUnavailableError
from relay_core.testing import FrozenClock, LicenseWriter, MemoryStore

from .test_client import wait_until

Serve = Callable[..., AbstractContextManager[str]]


class DownStore(MemoryStore):
    """A store whose database is unreachable: every use case fails (HTTP 503)."""

    def transaction(self):  # type: ignore[no-untyped-def]
        raise StorageUnavailableError("database postgresql://db:5432/relay is unreachable")


def _replicas(writer: LicenseWriter, clock: FrozenClock, seats: int = 1) -> tuple[Relay, Relay]:
    store = MemoryStore()
    first = Relay(store, clock=clock, ttl=2)
    first.add_licenses(
        [(writer.license(key=f"KEY-{i}"), f"KEY-{i}") for i in range(seats)],
        public_key=writer.public_key,
    )
    return first, Relay(store, clock=clock, ttl=2)


def test_urls_must_share_a_path_and_be_distinct() -> None:
    assert [e.port for e in parse_endpoints(["http://a:1", "http://b:2"])] == [1, 2]
    with pytest.raises(ConfigurationError, match="different paths"):
        RelayClient(["http://a:1/x", "http://b:2/y"], fingerprint="n")
    with pytest.raises(ConfigurationError, match="listed twice"):
        RelayClient(["http://a:1", "http://a:1/"], fingerprint="n")
    with pytest.raises(ConfigurationError, match="no relay URL"):
        RelayClient([], fingerprint="n")


def test_a_dead_replica_is_skipped_for_claim_heartbeat_and_release(
    serve: Serve, writer: LicenseWriter, clock: FrozenClock
) -> None:
    """The lease lives in the shared store: claimed on one replica, kept alive and released
    through the other once the first stops answering."""
    first, second = _replicas(writer, clock)
    with ExitStack() as stack:
        url_a = stack.enter_context(serve(first))
        dead = "http://127.0.0.1:1"
        with serve(second) as url_b:
            client = RelayClient(
                [dead, url_a, url_b], fingerprint="node-1", heartbeat_fraction=0.05
            )
            lease = client.acquire()
            assert lease.license_key == "KEY-0"
            stack.close()  # replica a goes away with the lease held
            beats = lease.heartbeats
            assert wait_until(lambda: lease.heartbeats >= beats + 3)
            assert not lease.lost
            assert lease.release() is True
            assert not any(lic.leased for lic in second.list_licenses())


def test_a_replica_answering_503_is_skipped(
    serve: Serve, writer: LicenseWriter, clock: FrozenClock
) -> None:
    first, second = _replicas(writer, clock)
    broken = Relay(DownStore(), clock=clock)
    with serve(broken) as url_broken, serve(second) as url_b:
        client = RelayClient([url_broken, url_b], fingerprint="node-1")
        transport = client._transport
        assert isinstance(transport, FailoverTransport)
        with client.lease() as lease:
            assert lease.license_key == "KEY-0"
            assert any(lic.leased for lic in first.list_licenses())
            # Sticky: the next request goes straight to the replica that answered.
            answer = transport.send(Request("GET", "/v1/health", {}))
            assert answer.status == 200
        assert not any(lic.leased for lic in first.list_licenses())


def test_every_replica_down_names_them_all() -> None:
    client = RelayClient(["http://127.0.0.1:1", "http://127.0.0.1:2"], fingerprint="n", timeout=1)
    started = time.monotonic()
    with pytest.raises(RelayUnavailableError) as caught:
        client.acquire()
    assert time.monotonic() - started < 5
    text = str(caught.value)
    assert "http://127.0.0.1:1 or http://127.0.0.1:2" in text
    assert "no replica answered" in text


def test_the_async_client_fails_over_too(
    serve: Serve, writer: LicenseWriter, clock: FrozenClock
) -> None:
    _, second = _replicas(writer, clock)
    with serve(second) as url_b:
        client = AsyncRelayClient(["http://127.0.0.1:1", url_b], fingerprint="node-1")

        async def main() -> str:
            async with client.lease() as lease:
                return lease.license_key

        assert asyncio.run(main()) == "KEY-0"
        assert not any(lic.leased for lic in second.list_licenses())

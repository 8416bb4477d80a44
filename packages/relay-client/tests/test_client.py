"""RelayClient against relay-http's real app over MemoryStore, served on loopback in-process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
from relay_client import (
    ConfigurationError,
    LeaseConflictError,
    LeaseLostError,
    NoSeatError,
    PoolRejectedError,
    RelayClient,
    RelayUnavailableError,
    ResponseSignatureError,
    exits,
)
from relay_core import Relay
from relay_core.testing import FrozenClock, LicenseWriter

Serve = Callable[..., AbstractContextManager[str]]
MakeRelay = Callable[..., Relay]
Leased = Callable[..., int]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `predicate` until true or `timeout`; tests assert on the result, never on time."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_lease_claims_verifies_and_releases(
    serve: Serve, make_relay: MakeRelay, leased: Leased, writer: LicenseWriter
) -> None:
    """The three-line use: a verified license inside the block, the seat free after it."""
    relay = make_relay(pool="prod")
    with serve(relay, signing_secret="s3cret") as url:
        client = RelayClient(
            url,
            pool="prod",
            fingerprint="node-1",
            signing_secret="s3cret",
            public_key=writer.public_key,
        )
        with client.lease() as lease:
            assert lease.license_key == "KEY-0"
            assert lease.license_file.startswith(b"-----BEGIN LICENSE FILE-----")
            assert lease.license is not None
            assert lease.license.key == "KEY-0"
            assert leased(relay, "prod") == 1
            lease.check()
        assert leased(relay, "prod") == 0
        assert lease.released
        assert not lease.lost


def test_lease_is_released_when_the_block_raises(
    serve: Serve, make_relay: MakeRelay, leased: Leased
) -> None:
    """An exception in the block propagates and the seat is still given back."""
    relay = make_relay()
    with serve(relay) as url:
        client = RelayClient(url, fingerprint="node-1")
        held: list[int] = []

        def work() -> None:
            with client.lease():
                held.append(leased(relay))
                raise KeyError("boom")

        with pytest.raises(KeyError):
            work()
        assert held == [1]
        assert leased(relay) == 0


def test_heartbeats_keep_the_lease_alive(
    serve: Serve, make_relay: MakeRelay, leased: Leased, clock: FrozenClock
) -> None:
    """With a 2 s TTL the thread heartbeats, and the relay's cull never frees the seat."""
    relay = make_relay(ttl=2)
    with serve(relay) as url, RelayClient(url, fingerprint="node-1").lease() as lease:
        for _ in range(3):
            before = lease.heartbeats
            assert wait_until(lambda: lease.heartbeats > before)  # noqa: B023
            clock.advance(1)
            assert relay.cull().released == 0
        assert leased(relay) == 1
        assert not lease.lost
        lease.check()


def test_culled_lease_is_detected_as_lost(
    serve: Serve, make_relay: MakeRelay, leased: Leased, clock: FrozenClock
) -> None:
    """A lease the relay culled is lost: on_lost runs, check() raises, and no seat stays taken."""
    relay = make_relay(ttl=30)
    seen: list[LeaseLostError] = []
    with serve(relay) as url:
        client = RelayClient(url, fingerprint="node-1", heartbeat_fraction=0.01)
        with client.lease(on_lost=seen.append) as lease:
            clock.advance(31)
            assert relay.cull().released == 1
            assert wait_until(lambda: lease.lost)
            assert len(seen) == 1
            with pytest.raises(LeaseLostError, match="culled") as lost:
                lease.check()
            assert lost.value is seen[0]
            assert wait_until(lambda: leased(relay) == 0)


def test_lease_is_lost_when_no_heartbeat_succeeds_before_expiry(
    make_relay: MakeRelay, serve: Serve
) -> None:
    """When the relay vanishes, the lease is lost at its deadline with the transport error."""
    relay = make_relay(ttl=2)
    with serve(relay) as url:
        client = RelayClient(url, fingerprint="node-1", retry_base=0.05, retry_max=0.1)
        lease = client.acquire()
    assert wait_until(lambda: lease.lost)
    error = lease.lost_error
    assert error is not None
    assert "before the lease expired" in error.reason
    assert "cannot reach the relay" in error.reason
    with pytest.raises(RelayUnavailableError):
        lease.release()


def test_wait_gets_a_seat_once_another_node_releases(
    serve: Serve, make_relay: MakeRelay, leased: Leased
) -> None:
    """lease(wait=...) retries the 410 until the holder gives the seat back."""
    relay = make_relay()
    with serve(relay) as url:
        holder = RelayClient(url, fingerprint="holder").acquire()
        got: list[str] = []

        def waiter() -> None:
            client = RelayClient(url, fingerprint="waiter", retry_base=0.05, retry_max=0.2)
            with client.lease(wait=10) as lease:
                got.append(lease.license_key)

        thread = threading.Thread(target=waiter)
        thread.start()
        with pytest.raises(NoSeatError, match="after waiting"):
            RelayClient(url, fingerprint="impatient", retry_base=0.05).acquire(wait=0.2)
        assert holder.release() is True
        thread.join(timeout=15)
        assert got == ["KEY-0"]
        assert leased(relay) == 0


def test_no_wait_fails_at_once_on_410(serve: Serve, make_relay: MakeRelay) -> None:
    """Without wait a full pool is a NoSeatError that suggests waiting."""
    relay = make_relay()
    with (
        serve(relay) as url,
        RelayClient(url, fingerprint="a").lease(),
        pytest.raises(NoSeatError, match=r"lease\(wait=SECONDS\)"),
    ):
        RelayClient(url, fingerprint="b").acquire()


def test_wrong_signing_secret_fails_and_leaves_no_seat(
    serve: Serve, make_relay: MakeRelay, leased: Leased
) -> None:
    """A relay signing with another secret makes lease() fail; the seat it granted is given back."""
    relay = make_relay()
    with serve(relay, signing_secret="theirs") as url:
        client = RelayClient(url, fingerprint="a", signing_secret="ours")
        with pytest.raises(ResponseSignatureError, match="does not match"):
            client.acquire()
        assert leased(relay) == 0


def test_unsigned_relay_fails_when_a_secret_is_expected(
    serve: Serve, make_relay: MakeRelay
) -> None:
    """A client with a secret refuses a relay that does not sign."""
    relay = make_relay()
    with serve(relay) as url, pytest.raises(ResponseSignatureError, match="not signed"):
        RelayClient(url, fingerprint="a", signing_secret="ours").health()


def test_pool_errors_and_conflicts(
    serve: Serve, make_relay: MakeRelay, writer: LicenseWriter
) -> None:
    """An unknown pool is PoolRejectedError; a fingerprint leased in another pool is a conflict."""
    relay = make_relay(pool="a")
    relay.add_licenses([(writer.license(key="B-1"), "B-1")], public_key=writer.public_key, pool="b")
    with serve(relay) as url:
        with pytest.raises(PoolRejectedError, match="'nope'"):
            RelayClient(url, pool="nope", fingerprint="fp").acquire()
        with (
            RelayClient(url, pool="a", fingerprint="fp").lease(),
            pytest.raises(LeaseConflictError, match="another pool"),
        ):
            RelayClient(url, pool="b", fingerprint="fp").acquire()


def test_a_seat_left_by_a_crashed_run_is_taken_over(
    serve: Serve, make_relay: MakeRelay, leased: Leased
) -> None:
    """A fingerprint that still holds a seat (a killed earlier run) gets a fresh lease with its file."""
    relay = make_relay()
    relay.claim("node-1")
    with serve(relay) as url, RelayClient(url, fingerprint="node-1").lease() as lease:
        assert lease.license_key == "KEY-0"
        assert leased(relay) == 1


def test_one_client_holds_one_lease(serve: Serve, make_relay: MakeRelay) -> None:
    """A second lease on the same client (same fingerprint) is refused instead of stealing the seat."""
    relay = make_relay(seats=2)
    with serve(relay) as url:
        client = RelayClient(url, fingerprint="node-1")
        with client.lease(), pytest.raises(ConfigurationError, match="already holds a lease"):
            client.acquire()
        with client.lease() as again:
            assert again.license_key == "KEY-0"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_a_relay_that_stops_answering_times_out(silent_port: int) -> None:
    """A relay that accepts but never answers is RelayUnavailableError after the timeout."""
    client = RelayClient(f"http://127.0.0.1:{silent_port}", fingerprint="a", timeout=0.3)
    with pytest.raises(RelayUnavailableError, match=r"no answer within 0.3s"):
        client.acquire()


def test_a_refused_connection_names_the_relay() -> None:
    """Nothing listening: the error names the URL and suggests checking `relay serve`."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(RelayUnavailableError, match=rf"127.0.0.1:{port} \(connection refused\)"):
        RelayClient(f"http://127.0.0.1:{port}", fingerprint="a").health()


def test_exit_hooks_release_held_leases(
    serve: Serve, make_relay: MakeRelay, leased: Leased
) -> None:
    """The SIGTERM/atexit path gives back every lease still held, within its budget."""
    relay = make_relay()
    with serve(relay) as url:
        lease = RelayClient(url, fingerprint="a", release_on_signal=False).acquire()
        assert leased(relay) == 1
        exits.release_all()
        assert leased(relay) == 0
        assert lease.released


def test_options_are_checked_up_front() -> None:
    """Bad options fail at construction with the option's name."""
    with pytest.raises(ConfigurationError, match="heartbeat_fraction"):
        RelayClient("http://127.0.0.1:1", fingerprint="a", heartbeat_fraction=1.5)
    with pytest.raises(ConfigurationError, match="timeout"):
        RelayClient("http://127.0.0.1:1", fingerprint="a", timeout=0)
    with pytest.raises(ConfigurationError, match="wait"):
        RelayClient("http://127.0.0.1:1", fingerprint="a").acquire(wait=-1)


def test_on_lost_may_release_the_lease(
    serve: Serve, make_relay: MakeRelay, leased: Leased, clock: FrozenClock
) -> None:
    """An on_lost callback that calls release() (from the heartbeat thread) works and frees all."""
    relay = make_relay(ttl=30)
    released: list[bool] = []
    with serve(relay) as url:
        client = RelayClient(url, fingerprint="node-1", heartbeat_fraction=0.01)
        lease = client.acquire(on_lost=lambda _: released.append(lease.release()))
        clock.advance(31)
        relay.cull()
        assert wait_until(lambda: len(released) == 1)
        assert lease.released
        assert lease.lost
        assert leased(relay) == 0


def test_an_unusable_public_key_is_a_configuration_error() -> None:
    """A public key that is not Ed25519 hex or RSA PEM fails at construction, saying which forms work."""
    with pytest.raises(ConfigurationError, match="64 hex digits"):
        RelayClient("http://127.0.0.1:1", fingerprint="a", public_key="abc")


@pytest.mark.parametrize(
    ("url", "options", "match"),
    [
        ("http://127.0.0.1:6349", {"pool": "池"}, "Relay-Pool"),
        ("http://127.0.0.1:6349", {"pool": "x\r\nInjected: 1"}, "Relay-Pool"),
        ("http://127.0.0.1:6349", {"pool": " prod"}, "Relay-Pool"),
        ("http://127.0.0.1:6349", {"node_token": "令牌"}, "node_token"),
        ("http://127.0.0.1:6349", {"node_token": ""}, "node_token"),
        ("http://127.0.0.1:6349", {"node_token": "a b"}, "node_token"),
        ("http://[::1", {}, "not a relay URL"),
        ("http://127.0.0.1:0", {}, "bad port"),
        ("http://127.0.0.1:6349/池", {}, "not a relay URL"),
        ("http://127.0.0.1:6349", {"fingerprint": "\ud800"}, "surrogate"),
    ],
)
def test_unsendable_options_are_refused_at_construction(
    url: str, options: dict[str, str], match: str
) -> None:
    """What http.client could not send (or would send as another value) is a ConfigurationError
    at construction, not a UnicodeEncodeError or ValueError at the first request; port 0 is not 80."""
    options = {"fingerprint": "fp", **options}
    with pytest.raises(ConfigurationError, match=match):
        RelayClient(url, **options)


def test_a_pool_name_with_inner_spaces_is_sent_unchanged(
    serve: Serve, make_relay: MakeRelay
) -> None:
    """Printable ASCII pool names, inner spaces included, reach the relay as they are."""
    relay = make_relay(pool="big pool")
    with serve(relay) as url, RelayClient(url, pool="big pool", fingerprint="fp").lease() as lease:
        assert lease.license_key == "KEY-0"

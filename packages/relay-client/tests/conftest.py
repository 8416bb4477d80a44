"""Fixtures: a real relay (relay-http over MemoryStore) served on loopback in this process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from relay_core import Relay
from relay_core.testing import FrozenClock, LicenseWriter, MemoryStore
from relay_http import Server, create_app


@contextmanager
def served(
    relay: Relay, *, pool: str | None = None, signing_secret: str | None = None, port: int = 0
) -> Iterator[str]:
    """Serve `relay` on 127.0.0.1 in a thread; yield its URL; always stop it."""
    server = Server(
        create_app(relay, pool=pool, signing_secret=signing_secret),
        host="127.0.0.1",
        port=port,
        threads=4,
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        host, bound = server.address
        yield f"http://{host}:{bound}"
    finally:
        server.stop()
        thread.join(timeout=10)
        server.close()


@pytest.fixture(autouse=True)
def private_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's seat locks live in its own directory (relay_client.seatlock)."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def writer() -> LicenseWriter:
    return LicenseWriter.ed25519()


@pytest.fixture
def clock() -> FrozenClock:
    """The relay's clock: real time, frozen, so a test decides when leases age."""
    return FrozenClock(time.time())


@pytest.fixture
def serve() -> Callable[..., AbstractContextManager[str]]:
    """``with serve(relay, pool=, signing_secret=) as url:``."""
    return served


@pytest.fixture
def make_relay(writer: LicenseWriter, clock: FrozenClock) -> Callable[..., Relay]:
    """``make_relay(seats=1, pool=None, ttl=2)``: a relay with fresh licenses and a short TTL."""

    def make(*, seats: int = 1, pool: str | None = None, ttl: int = 2) -> Relay:
        relay = Relay(MemoryStore(), clock=clock, ttl=ttl)
        relay.add_licenses(
            [(writer.license(key=f"KEY-{i}"), f"KEY-{i}") for i in range(seats)],
            public_key=writer.public_key,
            pool=pool,
        )
        return relay

    return make


@pytest.fixture
def leased() -> Callable[..., int]:
    """``leased(relay, pool=None)``: how many seats the relay has handed out in `pool`."""
    return lambda relay, pool=None: sum(1 for lic in relay.list_licenses(pool) if lic.leased)

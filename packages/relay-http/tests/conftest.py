"""Fixtures: a relay over MemoryStore and FrozenClock, fresh license files, and a WSGI caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import falcon
import falcon.testing
import pytest
from falcon.testing.helpers import closed_wsgi_iterable
from relay_core import License, Relay
from relay_core.testing import FrozenClock, LicenseWriter, MemoryStore

T0 = 1764949490
"""The `t` of the spec's signature test vectors (§3.2); the tests' clock starts there."""

App = falcon.App[falcon.Request, falcon.Response]
Call = Callable[..., falcon.testing.Result]


def _call(
    app: App, method: str, path: str, headers: Mapping[str, str] | None = None
) -> falcon.testing.Result:
    """Run one request through the WSGI app.

    `falcon.testing.TestClient` wraps the app in `wsgiref.validate`, which rejects what the spec
    asks for (a 204 with `Content-Type: application/json`, a health 200 without one), so the
    tests call the app with Falcon's environ builder and start_response mock directly.
    """
    path, _, query = path.partition("?")
    env = falcon.testing.create_environ(
        path=path, query_string=query, method=method, headers=dict(headers or {})
    )
    start = falcon.testing.StartResponseMock()
    data = closed_wsgi_iterable(app(env, start))
    assert start.status is not None
    assert start.headers is not None
    return falcon.testing.Result(data, start.status, start.headers)


@pytest.fixture
def call() -> Call:
    """``call(app, method, path, headers=None) -> falcon.testing.Result``."""
    return _call


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def writer() -> LicenseWriter:
    return LicenseWriter.ed25519()


@pytest.fixture
def make_relay(clock: FrozenClock) -> Callable[..., Relay]:
    """A relay over a fresh MemoryStore and the frozen clock; keyword arguments go to `Relay`."""
    return lambda **kwargs: Relay(MemoryStore(), clock=clock, **kwargs)


@pytest.fixture
def relay(make_relay: Callable[..., Relay]) -> Relay:
    return make_relay()


@pytest.fixture
def add(relay: Relay, writer: LicenseWriter, clock: FrozenClock) -> Callable[..., License]:
    """``add(key, pool=None, into=relay)``: store a fresh license file (valid for a day)."""

    def add_license(key: str, pool: str | None = None, into: Relay | None = None) -> License:
        now = clock.now()
        raw = writer.license(key=key, issued=now - 60, expiry=now + 86400)
        return (into or relay).add_license(raw, key, public_key=writer.public_key, pool=pool)

    return add_license


@pytest.fixture
def failing_relay(clock: FrozenClock) -> Callable[[Exception], Relay]:
    """A relay whose store raises the given error from every transaction."""
    return lambda error: Relay(FailingStore(error), clock=clock)


class FailingStore(MemoryStore):
    """A store whose every transaction raises `error`: the backend failing under the relay."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        raise self.error
        yield  # pragma: no cover

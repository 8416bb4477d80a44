"""Several relay replicas behind one client: try the next on a connection error or a 5xx.

Replicas on one PostgreSQL database (relay-postgres) share every lease, so any of them can
answer any request: a claim, a heartbeat and a release may each go to a different replica and
the lease stays the same. `FailoverTransport` sends each request to the replica that answered
last, and on a transport failure or a 5xx answer tries the others in turn, in the order given.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from .errors import ConfigurationError, RelayUnavailableError
from .transport import HttpTransport
from .wire import Endpoint, Request, Response

__all__ = ["FailoverTransport", "parse_endpoints"]


def parse_endpoints(urls: str | Sequence[str]) -> list[Endpoint]:
    """The relays of a URL or a list of URLs; they must share one path prefix."""
    given = [urls] if isinstance(urls, str) else list(urls)
    if not given:
        raise ConfigurationError("no relay URL given: pass one URL or a list of them")
    endpoints = [Endpoint.parse(url) for url in given]
    if len({e.prefix for e in endpoints}) > 1:
        raise ConfigurationError(
            "the relay URLs have different paths: replicas must be served under the same path"
        )
    if len({e.url for e in endpoints}) < len(endpoints):
        raise ConfigurationError("a relay URL is listed twice")
    return endpoints


class FailoverTransport(HttpTransport):
    """An `HttpTransport` over several replicas; sticks to the one that answered last."""

    def __init__(self, endpoints: Sequence[Endpoint], *, timeout: float) -> None:
        super().__init__(endpoints[0], timeout=timeout)
        self.replicas = [HttpTransport(e, timeout=timeout) for e in endpoints]
        self._current = 0
        self._choice = threading.Lock()

    def send(self, request: Request) -> Response:
        """Send to the current replica, then to each other one while they fail.

        Returns the first answer below 500. When every replica fails, returns the last 5xx
        answer if there was one (the flows treat it as a passing failure), else raises
        `RelayUnavailableError` naming every replica.
        """
        with self._choice:
            first = self._current
        count = len(self.replicas)
        reasons: list[str] = []
        server_error: Response | None = None
        for step in range(count):
            index = (first + step) % count
            replica = self.replicas[index]
            try:
                response = replica.send(request)
            except RelayUnavailableError as exc:
                reasons.append(f"{replica.endpoint.url}: {exc.reason}")
                continue
            if response.status >= 500:
                server_error = response
                reasons.append(f"{replica.endpoint.url} answered {response.status}")
                continue
            if index != first:
                with self._choice:
                    self._current = index
            return response
        if server_error is not None:
            return server_error
        raise RelayUnavailableError(
            " or ".join(r.endpoint.url for r in self.replicas),
            "no replica answered: " + "; ".join(reasons),
        )

    def close(self) -> None:
        for replica in self.replicas:
            replica.close()

"""Blocking HTTP transport on the standard library's `http.client`, and the blocking flow driver.

Keep-alive connections are pooled so the heartbeat thread and the application's thread never
wait on each other's socket. A reused connection the relay has closed meanwhile is retried once
on a fresh one (nothing was processed); every other failure becomes `RelayUnavailableError`.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Callable
from typing import TypeVar, cast

from .engine import Flow, Sleep
from .errors import RelayUnavailableError
from .wire import Endpoint, Request, Response

__all__ = ["HttpTransport", "run_blocking"]

T = TypeVar("T")

MAX_IDLE = 4
"""Idle keep-alive connections kept per client (a lease needs at most two at once)."""

_STALE = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)


class HttpTransport:
    """Sends `Request`s to one relay over pooled keep-alive connections; thread-safe."""

    def __init__(self, endpoint: Endpoint, *, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.RLock()  # the SIGTERM handler may interrupt its holder
        self._context = ssl.create_default_context() if endpoint.scheme == "https" else None

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._context is not None:
            return http.client.HTTPSConnection(
                self.endpoint.host, self.endpoint.port, timeout=timeout, context=self._context
            )
        return http.client.HTTPConnection(self.endpoint.host, self.endpoint.port, timeout=timeout)

    def _checkout(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            return self._connect(timeout), False
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn, True

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def send(self, request: Request) -> Response:
        """Send one request and read the whole response; raise `RelayUnavailableError`.

        Connecting and sending take at most `timeout`; only the answer may take
        `request.read_timeout` (a claim queued at the relay), each read at most that long.
        """
        timeout = request.timeout if request.timeout is not None else self.timeout
        read_timeout = request.read_timeout if request.read_timeout is not None else timeout
        conn, reused = self._checkout(timeout)
        sent = [False]
        try:
            try:
                response, will_close = _exchange(conn, request, read_timeout, sent)
            except _STALE:
                if not reused:
                    raise
                conn.close()
                conn = self._connect(timeout)
                response, will_close = _exchange(conn, request, read_timeout, sent)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            waited = read_timeout if sent[0] else timeout
            raise RelayUnavailableError(self.endpoint.url, _reason(exc, waited)) from exc
        if will_close:
            conn.close()
        else:
            self._checkin(conn)
        return response

    def close(self) -> None:
        """Close idle connections (busy ones close when their request ends)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _exchange(
    conn: http.client.HTTPConnection, request: Request, read_timeout: float, sent: list[bool]
) -> tuple[Response, bool]:
    sent[0] = False
    conn.request(request.method, request.target, headers=dict(request.headers))
    sent[0] = True
    if conn.sock is not None:
        conn.sock.settimeout(read_timeout)
    reply = conn.getresponse()
    body = reply.read()
    headers = {name.lower(): value for name, value in reply.getheaders()}
    return Response(reply.status, headers, body), reply.will_close


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError):
        return "the connection was closed before an answer"
    if isinstance(exc, http.client.HTTPException):
        return f"not an HTTP answer: {type(exc).__name__}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def run_blocking(
    flow: Flow[T], send: Callable[[Request], Response], sleep: Callable[[float], None]
) -> T:
    """Drive `flow` to its result, sending its requests and sleeping its sleeps."""
    try:
        step = next(flow)
        while True:
            if isinstance(step, Sleep):
                sleep(step.seconds)
                step = flow.send(None)
                continue
            try:
                response = send(step)
            except RelayUnavailableError as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(response)
    except StopIteration as stop:
        return cast(T, stop.value)

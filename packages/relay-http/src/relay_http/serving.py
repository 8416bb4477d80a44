"""Serving the app with waitress, with the cull loop and a graceful stop on SIGTERM/SIGINT.

`Server.stop()` only sets a flag and writes one byte to waitress's wake-up pipe, so it is safe
from a signal handler and from any thread. The loop thread then stops accepting connections,
closes idle keep-alive connections, lets in-flight requests finish and flush their responses
(for at most `DRAIN_SECONDS`), stops the worker threads and the cull loop, and returns.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

import falcon
import waitress
from relay_core import Relay, RelayError
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask

from .app import create_app
from .reaper import Reaper
from .waiting import DEFAULT_MAX_WAITING, WaitRoom, WorkerHandoff

if TYPE_CHECKING:
    import cattrs
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from .access import NodeAccess
    from .metrics import Metrics

__all__ = ["DRAIN_SECONDS", "WAITRESS_SETTINGS", "ServeError", "Server", "serve"]

logger = logging.getLogger("relay")

DRAIN_SECONDS = 3.0
"""How long a stop waits for in-flight requests before closing their connections anyway."""

WAITRESS_SETTINGS: dict[str, Any] = {
    "asyncore_use_poll": True,  # select() stops at 1,024 descriptors
    "channel_timeout": 30,  # an idle or stalled connection is closed after 30 s
    "cleanup_interval": 10,
    "max_request_header_size": 64 * 1024,  # a 1024-byte fingerprint, percent-encoded, is ~3 KB
    "max_request_body_size": 64 * 1024,  # bodies are ignored
    "ident": "relay",
}
"""waitress adjustments used by `serve` (threads and connection_limit are its arguments)."""


class ChannelTask(WSGITask):  # type: ignore[misc]  # waitress is untyped
    """waitress's WSGI task, with its channel in the environ (``relay.channel``), so that a
    parked claim can ask the I/O loop to watch its connection (`QuietChannel.parked`), and
    with keep-alive after a response that has no body.

    waitress 3 closes an HTTP/1.1 connection after any response without a Content-Length,
    204 included, though a 204 (like 1xx and 304) has no body to delimit (RFC 9112 6.3). Every
    release (204) then cost its node a new connection: under wrk's claim+release churn, one
    connect and accept per cycle.
    """

    _bodiless_keep_alive = False

    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        environ["relay.channel"] = self.channel
        return environ

    def build_response_header(self) -> bytes:
        self._bodiless_keep_alive = (
            not self.has_body
            and self.version == "1.1"
            and self.request.headers.get("CONNECTION", "").lower() != "close"
        )
        try:
            header: bytes = super().build_response_header()
        finally:
            self._bodiless_keep_alive = False
        return header

    def set_close_on_finish(self) -> None:
        # On HTTP/1.1, waitress's header builder only closes for a request's `Connection:
        # close` (excluded above) or for want of a Content-Length, which a bodiless
        # response does not need.
        if not self._bodiless_keep_alive:
            super().set_close_on_finish()


class QuietChannel(HTTPChannel):  # type: ignore[misc]  # waitress is untyped
    """waitress's connection, without the I/O loop spinning while a worker writes a response.

    waitress's worker threads send their own output (`send_bytes` is 1), yet `writable()` is
    true as soon as a worker has queued bytes, so the I/O loop polls a socket that is always
    writable, fails to take the buffer lock the worker holds, and polls again. We measured about
    26 such wake-ups per request under load, each holding the GIL the worker needs to finish.
    While a request is in service the loop now leaves the output to the worker, which pulls
    waitress's trigger when the request ends; the loop then flushes whatever is left.
    """

    task_class = ChannelTask
    parked = False
    """True while this connection's request waits for a seat: then, and only then, the loop
    reads the connection during a request (`channel_request_lookahead`), so that a hang-up
    closes the channel and `waitress.client_disconnected()` turns true. Other requests keep
    waitress's default: a client that half-closes after its request still gets the answer."""

    def writable(self) -> bool:
        if self.will_close or self.close_when_flushed:
            return True
        return bool(self.total_outbufs_len) and not self.requests

    def readable(self) -> bool:
        if self.requests and not self.parked:
            return False
        return bool(super().readable())


class ServeError(RelayError):
    """Raised when the server cannot listen on the requested address."""


def _bind_error(host: str, port: int, exc: Exception) -> ServeError:
    """One line in Go's words, e.g. ``listen tcp 127.0.0.1:6349: bind: address already in use``."""
    address = f"{host}:{port}"
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, socket.gaierror):
        return ServeError(f"listen tcp {address}: bind: {exc.strerror.lower()}")
    # waitress reports a host that does not resolve as ValueError("Invalid host/port specified.")
    return ServeError(f"listen tcp {address}: lookup {host}: no such host")


class Server:
    """A bound waitress server and the optional cull loop; `run()` serves until `stop()`."""

    def __init__(
        self,
        app: falcon.App[falcon.Request, falcon.Response],
        *,
        host: str,
        port: int,
        threads: int = 16,
        connection_limit: int = 1000,
        reaper: Reaper | None = None,
        waiting: WaitRoom | None = None,
        **adjustments: Any,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ServeError(f"listen tcp {host}:{port}: invalid port")
        settings = {**WAITRESS_SETTINGS, **adjustments}
        if waiting is not None:
            # Lets a parked request's connection be read (see `QuietChannel.parked`).
            settings.setdefault("channel_request_lookahead", 1)
        bind_host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        self._map: dict[int, Any] = {}
        try:
            self._wsgi = waitress.create_server(
                app,
                map=self._map,
                host=bind_host,
                port=port,
                threads=threads,
                connection_limit=connection_limit,
                **settings,
            )
        except (OSError, ValueError) as exc:
            wasyncore.close_all(self._map)
            raise _bind_error(host, port, exc) from None
        for dispatcher in list(self._map.values()):
            if isinstance(dispatcher, BaseWSGIServer):
                dispatcher.channel_class = QuietChannel
        self._reaper = reaper
        self._waiting = waiting
        self._handoff: WorkerHandoff | None = None
        if waiting is not None:
            self._handoff = WorkerHandoff(self._wsgi.task_dispatcher, threads)
            waiting.handoff = self._handoff
        self._stop_requested = False
        self._closed = False
        # waitress warns on every burst of queued requests; that is load, not an operator problem.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually listened on; the port is real even when 0 was asked for."""
        listen = getattr(self._wsgi, "effective_listen", None) or [
            (self._wsgi.effective_host, self._wsgi.effective_port)
        ]
        host, port = listen[0]
        return str(host), int(port)

    def stop(self) -> None:
        """Request a graceful stop; safe from signal handlers and other threads."""
        self._stop_requested = True
        for dispatcher in list(self._map.values()):
            if isinstance(dispatcher, BaseWSGIServer):
                with contextlib.suppress(OSError):  # already closed: the loop has ended
                    dispatcher.trigger.pull_trigger()

    def run(self) -> None:
        """Serve until `stop()`, then drain and close; always leaves everything closed."""
        try:
            if self._reaper is not None:
                self._reaper.start()
            while not self._stop_requested:
                wasyncore.loop(timeout=1.0, map=self._map, use_poll=True, count=1)
            self._drain()
        finally:
            self.close()

    def _drain(self) -> None:
        if self._waiting is not None:
            self._waiting.close()  # parked claims answer now rather than hold up the stop
        for dispatcher in list(self._map.values()):
            if isinstance(dispatcher, BaseWSGIServer):
                # Stop accepting; the wake-up pipe stays open until close().
                wasyncore.dispatcher.close(dispatcher)
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            busy = False
            for channel in list(self._map.values()):
                if not isinstance(channel, HTTPChannel):
                    continue
                if channel.requests or channel.total_outbufs_len:
                    busy = True
                else:
                    channel.will_close = True
            # One pass writes the pending output and closes the channels marked above.
            wasyncore.loop(timeout=0.05, map=self._map, use_poll=True, count=1)
            if not busy and not any(isinstance(c, HTTPChannel) for c in self._map.values()):
                break

    def close(self) -> None:
        """Stop the cull loop and worker threads and close every socket (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._reaper is not None:
            self._reaper.stop()
        if self._waiting is not None:
            self._waiting.close()
        if self._handoff is not None:
            self._handoff.close()
        self._wsgi.task_dispatcher.shutdown(cancel_pending=True, timeout=DRAIN_SECONDS)
        wasyncore.close_all(self._map)


_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DENIAL_FLUSH_SECONDS = 15.0
"""How often the counts of refused claims are written when there is no cull loop to do it."""


def reload_on_signal(access: NodeAccess | None) -> Callable[[int, FrameType | None], None]:
    """A SIGHUP handler that re-reads the access files on a thread (no I/O in the handler)."""

    def on_hup(signum: int, frame: FrameType | None) -> None:
        if access is not None:
            threading.Thread(target=access.reload, name="relay-reload", daemon=True).start()

    return on_hup


def serve(
    relay: Relay,
    *,
    host: str,
    port: int,
    pool: str | None = None,
    signing_secret: str | None = None,
    cull_interval: float | None = None,
    threads: int = 16,
    connection_limit: int = 1000,
    ready: Callable[[str, int], None] | None = None,
    signing_key: Ed25519PrivateKey | None = None,
    access: NodeAccess | None = None,
    admin_token: str | None = None,
    metrics: Metrics | None = None,
    converter: cattrs.Converter | None = None,
    max_wait: int = 0,
    max_waiting: int = DEFAULT_MAX_WAITING,
) -> None:
    """Serve the node API on host:port until SIGTERM/SIGINT, then stop gracefully and return.

    `admin_token`, `metrics` and `converter` are `create_app`'s. Runs `relay.cull()` every
    `cull_interval` seconds when it is not None; the same loop writes the counts of refused
    claims (every 15 s without culling), and once more on stopping. With `max_wait` > 0
    (seconds) and a `relay.queue`, claims with ``Prefer: wait=N`` wait for a seat, at most
    `max_waiting` at a time. Raises `ServeError` when the address cannot be bound. Closing
    `relay.store` is the caller's job. SIGHUP re-reads the token file and allow-list of
    `access` (and does nothing else).
    """
    waiting = None
    if max_wait > 0 and relay.queue is not None:
        waiting = WaitRoom(relay, max_wait=max_wait, max_waiting=max_waiting)
        if metrics is not None:
            waiting.on_waited = metrics.observe_wait
    app = create_app(
        relay,
        pool=pool,
        signing_secret=signing_secret,
        signing_key=signing_key,
        access=access,
        admin_token=admin_token,
        metrics=metrics,
        converter=converter,
        waiting=waiting,
    )
    reaper = Reaper(relay, cull_interval or DENIAL_FLUSH_SECONDS, cull=cull_interval is not None)
    server = Server(
        app,
        host=host,
        port=port,
        threads=threads,
        connection_limit=connection_limit,
        reaper=reaper,
        waiting=waiting,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in _SIGNALS:
            previous[signum] = signal.signal(signum, on_signal)
        if hasattr(signal, "SIGHUP"):  # never the default action, which ends the process
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, reload_on_signal(access))
    try:
        if ready is not None:
            ready(*server.address)
        server.run()
    finally:
        server.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)

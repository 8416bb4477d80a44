"""Serving the app with waitress, with the cull loop and a graceful stop on SIGTERM/SIGINT.

`Server.stop()` only sets a flag and writes one byte to waitress's wake-up pipe, so it is safe
from a signal handler and from any thread. The loop thread then stops accepting connections,
closes idle keep-alive connections and lets in-flight requests finish and flush their
responses, for at most `DRAIN_SECONDS` in all. A request still running then (a claim stuck
behind another process's database lock) is answered 503 with ``Retry-After: 1`` by the loop
thread, its connection closed, and whatever its worker does later is neither sent nor logged
(`ChannelTask.abandon`). The worker threads and the cull loop stop, and `run()` returns.

Answers waitress writes itself, for requests it cannot parse (400, 413, 431, 501), go through
`RelayErrorTask`: a JSON body, ``Relay-Clock``, ``Relay-Signature`` when signing, HTTP/1.1,
and an ``HTTP request`` log line, like every answer of the app.
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
from relay_core import Relay, RelayError, SystemClock
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import RequestHeaderFieldsTooLarge

from .app import create_app
from .errors import (
    ServerStoppingError,
    body_for,
    log_error,
    log_path,
    out_of_band_error,
    rule_for,
    wsgi_text,
)
from .middleware import ClockSigning, log_request
from .reaper import Reaper
from .waiting import DEFAULT_MAX_WAITING, WaitRoom, WorkerHandoff
from .wire import JSON

if TYPE_CHECKING:
    import cattrs
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from .access import NodeAccess
    from .metrics import Metrics

__all__ = [
    "DRAIN_SECONDS",
    "WAITRESS_SETTINGS",
    "Answers",
    "RelayErrorTask",
    "ServeError",
    "Server",
    "serve",
]

logger = logging.getLogger("relay")

DRAIN_SECONDS = 3.0
"""How long a stop waits for in-flight requests before answering them 503 itself."""

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
    abandoned = False
    """Set when a stop answered for this task: its own answer is dropped, its logs too."""

    def __init__(self, channel: Any, request: Any) -> None:
        super().__init__(channel, request)
        self._answer_lock = threading.Lock()
        self.thread_id: int | None = None

    def service(self) -> None:
        self.thread_id = threading.get_ident()
        self.channel.relay_task = self
        try:
            super().service()
        finally:
            self.channel.relay_task = None
            if self.abandoned:
                _SILENCED.forget(self.thread_id)

    def abandon(self) -> bool:
        """Take this request's answer away from its worker; False if it has begun answering."""
        if not self._answer_lock.acquire(timeout=0.1):
            return False  # the worker is writing its answer now
        try:
            if self.wrote_header:
                return False
            self.abandoned = True
            self.close_on_finish = True
            if self.thread_id is not None:
                _SILENCED.add(self.thread_id)
            return True
        finally:
            self._answer_lock.release()

    def write(self, data: bytes) -> None:
        with self._answer_lock:
            if not self.abandoned:
                super().write(data)

    def finish(self) -> None:
        if not self.abandoned:
            super().finish()

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


class _Silenced(logging.Filter):
    """Drops the log records of worker threads whose request a stop has answered: the process
    says "server stopped" and nothing of theirs may follow."""

    def __init__(self) -> None:
        super().__init__()
        self._threads: set[int] = set()
        self._installed = False
        self._lock = threading.Lock()

    def add(self, thread_id: int) -> None:
        with self._lock:
            self._threads.add(thread_id)
            if not self._installed:
                self._installed = True
                for name in ("relay", "waitress"):
                    source = logging.getLogger(name)
                    source.addFilter(self)
                    for handler in source.handlers:  # records of child loggers, too
                        handler.addFilter(self)

    def forget(self, thread_id: int | None) -> None:
        with self._lock:
            if thread_id is not None:
                self._threads.discard(thread_id)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread not in self._threads


_SILENCED = _Silenced()


class Answers:
    """Answers written by the server rather than the app: JSON, with `Relay-Clock`, the
    signature when signing, and an ``HTTP request`` log line."""

    def __init__(self, signing: ClockSigning) -> None:
        self.signing = signing

    def write(
        self,
        task: Any,
        status: str,
        body: bytes,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Fill in and send `task`'s response; the connection closes after it."""
        task.status = status
        task.response_headers.extend([("Content-Type", JSON), *self.signing.stamp(body), *extra])
        task.set_close_on_finish()
        task.content_length = len(body)
        ErrorTask.write(task, body)

    @staticmethod
    def log(task: Any, status: str, started: float | None = None) -> None:
        """The ``HTTP request`` line; `started` is the request's `time.time()` at its start."""
        if not logger.isEnabledFor(logging.INFO):
            return
        request = task.request
        headers = getattr(request, "headers", None) or {}
        addr = getattr(task.channel, "addr", None)
        log_request(
            wsgi_text(request.command or "") if getattr(request, "command", None) else "",
            wsgi_text(request.path or "") if getattr(request, "path", None) else "",
            int(status[:3]),
            remote_addr=addr[0] if isinstance(addr, tuple) and addr else None,
            user_agent=wsgi_text(headers.get("USER_AGENT", "")),
            seconds=time.time() - (started or task.start_time),
        )


class RelayErrorTask(ErrorTask):  # type: ignore[misc]  # waitress is untyped
    """waitress's answer to a request it cannot parse or take (a bad start line or header,
    431, 413, 501), in Relay's shape (`Answers`) and always as HTTP/1.1: the version the
    server speaks (RFC 9110 §2.5), whatever the unparsed request line said."""

    def __init__(self, channel: Any, request: Any) -> None:
        super().__init__(channel, request)
        self.version = "1.1"

    def execute(self) -> None:
        answers: Answers | None = getattr(self.channel.server, "relay_answers", None)
        if answers is None:  # pragma: no cover - every Server sets it
            super().execute()
            return
        error = self.request.error
        status, body = out_of_band_error(error.code, error.reason)
        answers.write(self, status, body)
        self.close_on_finish = True
        if isinstance(error, RequestHeaderFieldsTooLarge):
            self.request.command = self.request.path = None  # waitress's stand-in "GET /"
        Answers.log(self, status)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("refused an unparsable request status=%s error=%s", error.code, error.body)


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
    error_task_class = RelayErrorTask
    relay_task: ChannelTask | None = None
    """The request in service on a worker thread (set by `ChannelTask.service`)."""
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
        signing: ClockSigning | None = None,
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
        # The answers written without the app: stamped like the app's (`create_app`'s signing
        # settings, given by `serve`; a bare Server only sets Relay-Clock).
        self._answers = Answers(signing or ClockSigning(SystemClock(), None))
        for dispatcher in list(self._map.values()):
            if isinstance(dispatcher, BaseWSGIServer):
                dispatcher.channel_class = QuietChannel
                dispatcher.relay_answers = self._answers
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
        deadline = time.monotonic() + DRAIN_SECONDS - _ANSWER_SECONDS
        while True:
            busy = False
            for channel in list(self._map.values()):
                if not isinstance(channel, HTTPChannel):
                    continue
                if channel.requests or channel.total_outbufs_len:
                    busy = True
                else:
                    channel.will_close = True
            if not busy and not any(isinstance(c, HTTPChannel) for c in self._map.values()):
                return
            if time.monotonic() >= deadline:
                break
            # One pass writes the pending output and closes the channels marked above.
            wasyncore.loop(timeout=0.05, map=self._map, use_poll=True, count=1)
        self._answer_the_rest()

    def _answer_the_rest(self) -> None:
        """The grace period is over: answer every request still running 503, close the rest."""
        answered = 0
        for channel in list(self._map.values()):
            if not isinstance(channel, HTTPChannel):
                continue
            task = getattr(channel, "relay_task", None)
            if channel.requests and isinstance(task, ChannelTask) and task.abandon():
                answered += 1
                self._answer_stopping(channel, task)
            elif channel.requests or channel.total_outbufs_len:
                with channel.requests_lock:  # a worker may be writing: let its answer out first
                    channel.close_when_flushed = True
            else:
                channel.will_close = True
        if answered:
            logger.warning(
                "answered 503 to requests still running after the grace period count=%d grace=%ss",
                answered,
                DRAIN_SECONDS,
            )
        end = time.monotonic() + _ANSWER_SECONDS
        while time.monotonic() < end and any(
            isinstance(c, HTTPChannel) and c.total_outbufs_len for c in self._map.values()
        ):
            wasyncore.loop(timeout=0.05, map=self._map, use_poll=True, count=1)

    def _answer_stopping(self, channel: Any, abandoned: ChannelTask) -> None:
        rule = rule_for(ServerStoppingError)
        environ = abandoned.environ or {}
        method = wsgi_text(environ.get("REQUEST_METHOD", ""))
        path = log_path(environ)
        task = ErrorTask(channel, abandoned.request)
        task.start()
        try:
            self._answers.write(
                task,
                rule.status,
                body_for(rule, method),
                (("Retry-After", str(rule.retry_after)),),
            )
            task.finish()
        except OSError:  # the client is gone (ClientDisconnected is one)
            pass
        with channel.requests_lock:
            channel.close_when_flushed = True
        log_error(rule, ServerStoppingError(), method, path)
        Answers.log(task, rule.status, getattr(abandoned, "start_time", None))

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
        # Workers still busy were answered for (`_answer_the_rest`); do not wait for them.
        dispatcher = self._wsgi.task_dispatcher
        dispatcher.logger = _QUIET
        dispatcher.shutdown(cancel_pending=True, timeout=_ANSWER_SECONDS)
        wasyncore.close_all(self._map)


_ANSWER_SECONDS = 0.2
"""Of `DRAIN_SECONDS`, kept to answer what is still running and to let idle workers exit."""

_QUIET = logging.getLogger("relay.waitress")
_QUIET.disabled = True  # waitress's "N thread(s) still running": `_answer_the_rest` said it


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
        signing=ClockSigning(relay.clock, signing_secret, signing_key),
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

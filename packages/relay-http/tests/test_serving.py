"""`serve()` and `Server`: real sockets on loopback, the cull loop, and the graceful stop."""

from __future__ import annotations

import http.client
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import falcon
import pytest
from relay_core import CullReport, License, Relay
from relay_core.testing import FrozenClock
from relay_http import ServeError, Server, serve
from relay_http.reaper import Reaper

AddLicense = Callable[..., License]


def _request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def _serve_in_main_thread(
    relay: Relay, client: Callable[[int], None], **kwargs: object
) -> list[BaseException]:
    """Run `serve()` here; `client(port)` runs on a thread, then SIGTERM stops the server."""
    errors: list[BaseException] = []

    def ready(host: str, port: int) -> None:
        def run_client() -> None:
            try:
                client(port)
            except BaseException as exc:
                errors.append(exc)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=run_client, daemon=True).start()

    serve(relay, host="127.0.0.1", port=0, ready=ready, **kwargs)  # type: ignore[arg-type]
    return errors


def test_serve_answers_on_loopback_and_stops_on_sigterm(
    relay: Relay, add: AddLicense, clock: FrozenClock
) -> None:
    """serve() answers real HTTP requests, returns on SIGTERM and restores the old handler."""
    lic = add("KEY-1")
    seen: list[tuple[int, bytes, dict[str, str]]] = []
    before = signal.getsignal(signal.SIGTERM)

    def client(port: int) -> None:
        seen.append(_request(port, "GET", "/v1/health"))
        seen.append(_request(port, "PUT", "/v1/nodes/abc%20def"))
        seen.append(_request(port, "PUT", "/v1/nodes/abc%20def"))

    errors = _serve_in_main_thread(relay, client, signing_secret="hunter2")
    assert errors == []
    assert [status for status, _, _ in seen] == [200, 201, 202]
    assert all(headers["relay-clock"] == str(int(clock.now())) for _, _, headers in seen)
    assert all("relay-signature" in headers for _, _, headers in seen)
    assert relay.get_license(lic.guid).node_id is not None
    assert signal.getsignal(signal.SIGTERM) == before


def test_serve_runs_the_cull_loop(relay: Relay, add: AddLicense, clock: FrozenClock) -> None:
    """With cull_interval set, a lease whose node stopped heartbeating is freed by the loop."""
    lic = add("KEY-1")

    def client(port: int) -> None:
        assert _request(port, "PUT", "/v1/nodes/n")[0] == 201
        clock.advance(61)
        deadline = time.monotonic() + 5
        while relay.get_license(lic.guid).node_id is not None:
            assert time.monotonic() < deadline, "the cull loop never freed the lease"
            time.sleep(0.02)

    assert _serve_in_main_thread(relay, client, cull_interval=0.05) == []
    assert relay.get_license(lic.guid).node_id is None


def test_taken_port_raises_serve_error(relay: Relay) -> None:
    """Binding a port another socket listens on raises ServeError with Go's one-line text."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError) as info:
            serve(relay, host="127.0.0.1", port=port)
    assert str(info.value) == f"listen tcp 127.0.0.1:{port}: bind: address already in use"


def test_unknown_host_raises_serve_error(relay: Relay) -> None:
    """A host name that does not resolve raises ServeError naming the address."""
    with pytest.raises(ServeError) as info:
        serve(relay, host="no-such-host.invalid", port=6349)
    assert str(info.value) == (
        "listen tcp no-such-host.invalid:6349: lookup no-such-host.invalid: no such host"
    )


def test_port_out_of_range_raises_serve_error(relay: Relay) -> None:
    """A port above 65535 is refused rather than wrapped around by the socket layer."""
    with pytest.raises(ServeError) as info:
        serve(relay, host="127.0.0.1", port=99999)
    assert str(info.value) == "listen tcp 127.0.0.1:99999: invalid port"


# -- graceful stop -----------------------------------------------------------------------------


class Slow:
    """A resource that blocks until the test lets it finish."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.entered.set()
        assert self.release.wait(10)
        resp.data = b"finished"


@contextmanager
def running(server: Server) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        server.stop()
        thread.join(10)


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def test_stop_lets_in_flight_request_finish() -> None:
    """After stop() new connections are refused, the in-flight request completes, run() returns."""
    slow = Slow()
    app = falcon.App()
    app.add_route("/slow", slow)
    server = Server(app, host="127.0.0.1", port=0, threads=2)
    port = server.address[1]
    result: list[tuple[int, bytes, dict[str, str]]] = []
    with running(server) as thread:
        client = threading.Thread(target=lambda: result.append(_request(port, "GET", "/slow")))
        client.start()
        assert slow.entered.wait(5)
        server.stop()
        deadline = time.monotonic() + 5
        while not _refused(port):
            assert time.monotonic() < deadline, "still accepting after stop()"
            time.sleep(0.02)
        slow.release.set()
        client.join(5)
        thread.join(5)
        assert not thread.is_alive()
    assert result[0][:2] == (200, b"finished")


def test_stop_closes_idle_keepalive_connections(relay: Relay) -> None:
    """An idle keep-alive connection does not hold the stop up."""
    from relay_http import create_app

    server = Server(create_app(relay), host="127.0.0.1", port=0)
    port = server.address[1]
    with running(server) as thread:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/v1/health")
        assert conn.getresponse().read() == b""
        started = time.monotonic()
        server.stop()
        thread.join(5)
        assert not thread.is_alive()
        assert time.monotonic() - started < 3
        conn.close()


# -- the cull loop -----------------------------------------------------------------------------


class CheckpointStore:
    """Wraps a store and counts checkpoint() calls, like the SQLite store's WAL checkpoint."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.checkpoints = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def checkpoint(self) -> None:
        self.checkpoints += 1


def test_reaper_culls_and_logs(
    relay: Relay, add: AddLicense, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """One pass frees expired leases and logs at DEBUG; an idle pass says nothing to cull."""
    lic = add("KEY-1")
    relay.claim("n")
    reaper = Reaper(relay, 1.0)
    with caplog.at_level(logging.DEBUG, logger="relay"):
        reaper.run_once()
        clock.advance(61)
        reaper.run_once()
    assert relay.get_license(lic.guid).node_id is None
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "reaper has nothing to cull"
    assert messages[1].startswith("reaper successfully culled dead nodes count=1")


def test_reaper_logs_failures_and_checkpoints(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing cull is logged as an error (and retried next tick); checkpoint() still runs."""
    store = CheckpointStore(relay.store)

    class Broken(Relay):
        def cull(self) -> CullReport:
            raise RuntimeError("database disk image is malformed")

    broken = Broken(store, clock=relay.clock)  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG, logger="relay"):
        Reaper(broken, 1.0).run_once()
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert caplog.records[0].getMessage().startswith("reaper failed to cull dead nodes")
    assert store.checkpoints == 1


def test_reaper_rejects_non_positive_interval(relay: Relay) -> None:
    """A zero interval is refused instead of spinning."""
    with pytest.raises(ValueError, match="positive"):
        Reaper(relay, 0)


def test_access_log(relay: Relay, call, caplog: pytest.LogCaptureFixture) -> None:
    """Each request is logged at INFO as ``HTTP request`` with method, path and status."""
    from relay_http import create_app

    with caplog.at_level(logging.INFO, logger="relay"):
        call(create_app(relay), "GET", "/v1/health")
    (record,) = [r for r in caplog.records if r.getMessage().startswith("HTTP request")]
    assert record.levelno == logging.INFO
    assert "method=GET path=/v1/health status=200" in record.getMessage()


class Big:
    """Answers with a body far larger than a loopback socket's send buffer."""

    body = bytes(range(256)) * (16 * 1024)  # 4 MiB

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self.body


def test_response_larger_than_socket_buffer_arrives_whole_on_keepalive() -> None:
    """A 4 MiB body sent to a client that reads late arrives complete, twice on one connection."""
    app = falcon.App()
    app.add_route("/big", Big())
    server = Server(app, host="127.0.0.1", port=0, threads=2)
    port = server.address[1]
    with running(server):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for _ in range(2):
                conn.request("GET", "/big")
                time.sleep(0.3)  # the worker fills the socket buffer and finishes meanwhile
                resp = conn.getresponse()
                assert (resp.status, resp.read()) == (200, Big.body)
        finally:
            conn.close()


class Stuck:
    """A claim stuck behind another process's database lock: blocks, then logs and answers."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()

    def on_put(self, req: falcon.Request, resp: falcon.Response, fingerprint: str) -> None:
        self.entered.set()
        self.release.wait(10)
        logging.getLogger("relay").warning("late line from the stuck request")
        resp.data = b"too late"
        self.done.set()


def test_stop_answers_503_to_a_request_still_running_after_the_grace_period(
    relay: Relay, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """operations.md: after the grace period a request still running gets 503 with Retry-After
    (JSON, Relay-Clock), run() returns at once, and the stuck worker's later lines are not logged."""
    from relay_http import create_app, serving

    monkeypatch.setattr(serving, "DRAIN_SECONDS", 0.5)
    stuck = Stuck()
    app = create_app(relay)
    app.add_route("/stuck/{fingerprint}", stuck)
    server = Server(app, host="127.0.0.1", port=0, threads=2)
    port = server.address[1]
    result: list[tuple[int, bytes, dict[str, str]]] = []
    try:
        with caplog.at_level(logging.INFO, logger="relay"), running(server) as thread:
            client = threading.Thread(
                target=lambda: result.append(_request(port, "PUT", "/stuck/x"))
            )
            client.start()
            assert stuck.entered.wait(5)
            server.stop()
            thread.join(5)
            assert not thread.is_alive()  # returned while the request is still stuck
            client.join(5)
            stuck.release.set()
            assert stuck.done.wait(5)
    finally:
        stuck.release.set()
    status, body, headers = result[0]
    assert (status, body) == (503, b'{"error":"failed to claim license"}\n')
    assert headers["retry-after"] == "1"
    assert headers["content-type"] == "application/json"
    assert headers["relay-clock"].isdigit()
    messages = [r.getMessage() for r in caplog.records]
    assert any("status=503" in m for m in messages)
    assert not any("late line" in m for m in messages)


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("request_bytes", "status", "error"),
    [
        (b"PUT /v1/nodes/a b HTTP/1.1\r\nHost: x\r\n\r\n", b"400 Bad Request", "bad request"),
        (b"put /v1/nodes/a HTTP/1.1\r\nHost: x\r\n\r\n", b"400 Bad Request", "bad request"),
        (b"GET /v1/health HTTP/1.1\r\nX-A: \x1b\r\n\r\n", b"400 Bad Request", "bad request"),
        (  # exactly the limit, unterminated: all of it is read, so the close is no reset
            (b"GET /v1/health HTTP/1.1\r\nX-A: " + b"a" * 65_536)[:65_536],
            b"431 Request Header Fields Too Large",
            "request header fields too large",
        ),
        (
            b"PUT /v1/nodes/a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"501 Not Implemented",
            "not implemented",
        ),
    ],
    ids=["start-line", "lowercase-method", "control-char", "431", "501"],
)
def test_waitress_refusals_are_json_signed_http11_and_logged(
    relay: Relay,
    caplog: pytest.LogCaptureFixture,
    request_bytes: bytes,
    status: bytes,
    error: str,
) -> None:
    """Requests waitress refuses before the app runs are answered like the app's errors
    (docs/api.md): HTTP/1.1, JSON body, Relay-Clock and Relay-Signature, and a log line."""
    from relay_http import create_app
    from relay_http.middleware import ClockSigning

    signing = ClockSigning(relay.clock, "hunter2")
    server = Server(
        create_app(relay, signing_secret="hunter2"), host="127.0.0.1", port=0, signing=signing
    )
    port = server.address[1]
    with caplog.at_level(logging.INFO, logger="relay"), running(server):
        answer = _raw(port, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 " + status.decode()
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
    assert body == f'{{"error":"{error}"}}\n'.encode()
    assert headers["content-type"] == "application/json"
    assert headers["relay-signature"] == signing.signature(int(headers["relay-clock"]), body)
    assert any(f"status={status[:3].decode()}" in r.getMessage() for r in caplog.records)

"""The http.client transport: keep-alive reuse, and a connection the server closed is re-opened."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from relay_client import RelayUnavailableError
from relay_client.transport import HttpTransport
from relay_client.wire import Endpoint, Request

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def _read_request(conn: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return False
        data += chunk
    return True


@pytest.fixture
def two_per_connection() -> Iterator[tuple[int, list[int]]]:
    """A server answering two requests per connection, then closing it without notice."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()
    served: list[int] = []  # requests answered, one entry per connection

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                count = 0
                while count < 2 and _read_request(conn):
                    conn.sendall(OK)
                    count += 1
                served.append(count)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], served
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_keep_alive_is_reused_and_a_closed_connection_reopened(
    two_per_connection: tuple[int, list[int]],
) -> None:
    """Three requests use two connections: two share one, the third survives its close."""
    port, served = two_per_connection
    transport = HttpTransport(Endpoint.parse(f"http://127.0.0.1:{port}"), timeout=2)
    request = Request("GET", "/v1/health", {})
    assert [transport.send(request).status for _ in range(3)] == [200, 200, 200]
    transport.close()
    assert served[:1] == [2]


def test_connecting_keeps_the_client_timeout_when_the_answer_may_take_longer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A queued claim's long read timeout never applies to the connect: a blackholed relay
    fails within `timeout`, not within the wait asked for."""
    seen: list[float] = []

    def blackhole(address: object, timeout: float, *args: object) -> socket.socket:
        seen.append(timeout)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", blackhole)
    transport = HttpTransport(Endpoint.parse("http://127.0.0.1:9"), timeout=0.3)
    with pytest.raises(RelayUnavailableError, match=r"no answer within 0.3s"):
        transport.send(Request("PUT", "/v1/nodes/fp", {}, read_timeout=3610.0))
    assert seen == [0.3]


def test_the_answer_may_take_the_read_timeout(silent_server: int) -> None:
    """Once sent, the wait for the answer is the request's read timeout, not the client's."""
    transport = HttpTransport(Endpoint.parse(f"http://127.0.0.1:{silent_server}"), timeout=30.0)
    with pytest.raises(RelayUnavailableError, match=r"no answer within 0.2s"):
        transport.send(Request("PUT", "/v1/nodes/fp", {}, read_timeout=0.2))


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]

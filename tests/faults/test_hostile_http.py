"""Hostile HTTP: odd fingerprints, broken and oversized requests, slow clients, random noise.

Throughout each test a `HealthProbe` times `GET /v1/health` from its own thread: every probe
must get 200 within 1 s. Requests go over raw sockets, so nothing is cleaned up by a client
library on the way. Shortened from the issue: the random flood is 3,000 requests (the issue
says "thousands"), and the idle connections are watched for `channel_timeout` (30 s) plus
waitress's cleanup interval (10 s), once.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections import Counter
from urllib.parse import quote

import pytest

from .conftest import FaultServer, HealthProbe, Workspace, add_licenses, start_server, violations

HEALTH_LIMIT = 1.0


def raw(port: int, request: bytes, *, timeout: float = 10) -> tuple[int | None, bytes]:
    """Send `request` on a new connection; (status, whole answer), status None if none came."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may answer (431, 413) and close before it has read everything.
        with contextlib.suppress(OSError):
            sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    head = answer.split(b"\r\n", 1)[0].split(b" ")
    status = int(head[1]) if len(head) > 1 and head[0].startswith(b"HTTP/") else None
    return status, answer


def request(method: str, target: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: relay", *headers, "Connection: close"]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def _assert_healthy(probe: HealthProbe, server: FaultServer) -> None:
    assert probe.failures == []
    assert probe.latencies, "the health probe never ran"
    assert probe.slowest < HEALTH_LIMIT, f"slowest /v1/health took {probe.slowest:.3f} s"
    assert server.process.poll() is None, "the server died"


FINGERPRINTS = {
    "unicode": quote("ノード-☃-😀-\u202eevil"),
    "combining": quote("e\u0301\u200d"),
    "nul": "a%00b",
    "controls": "%01%02%1B%7F",
    "newline": "a%0D%0Ab",
    "literal percent": "a%25b",
    "encoded %2F literal": "a%252Fb",
    "space and plus": "a%20b+c",
    "reserved": quote(";,=@$!*'()", safe=";,=@$!*'()"),
    "1024 bytes": "f" * 1024,
    "1024 bytes of emoji": quote("😀" * 256),
    "dots": "...",
    "dot dot (not cleaned: one segment)": "..",
}
REFUSED = {
    "1025 bytes": ("f" * 1025, {400}),
    "1028 bytes of emoji": (quote("😀" * 257), {400}),
    "60 KB": ("f" * 60_000, {400}),
    "100 KB": ("f" * 100_000, {431}),
    "empty": ("", {404}),
    "slash": ("a%2Fb", {404}),
    "raw non-ASCII": ("\u00ff\u00fe", {400}),
    # Not one UTF-8 string: decoded leniently, these would merge distinct nodes into one.
    "encoded surrogate": ("%ED%A0%80", {400}),
    "invalid utf-8": ("%FF%FE%C0%AF", {400}),
    "bad escape": ("%zz%", {400}),
}


def test_odd_fingerprints(ws: Workspace) -> None:
    """Odd but acceptable fingerprints claim (201), extend (202) and release (204) as one node
    each; too long, empty, slashed, raw non-ASCII or non-UTF-8 ones get a 4xx; never a 5xx."""
    add_licenses(ws, len(FINGERPRINTS) + 2)
    server = start_server(ws)
    outcomes: dict[str, list[int | None]] = {}
    with HealthProbe(server.port) as probe:
        for name, segment in FINGERPRINTS.items():
            target = f"/v1/nodes/{segment}"
            outcomes[name] = [
                raw(server.port, request("PUT", target))[0],
                raw(server.port, request("PUT", target))[0],
                raw(server.port, request("DELETE", target))[0],
                raw(server.port, request("DELETE", target))[0],
            ]
        for name, (segment, expected) in REFUSED.items():
            status = raw(server.port, request("PUT", f"/v1/nodes/{segment}"))[0]
            assert status in expected, f"{name}: {status}"
    _assert_healthy(probe, server)
    assert outcomes == {name: [201, 202, 204, 404] for name in FINGERPRINTS}
    code, _, err = server.stop()
    assert code == 0, err
    assert violations(ws.db) == []


MALFORMED = [
    request("PUT", "/v1/nodes/x", "X-Big: " + "h" * 70_000),
    request("PUT", "/v1/nodes/x", *(f"X-Many-{i}: v" for i in range(2_000))),
    request("PUT", "/v1/nodes/x", "Relay-Pool: " + "p" * 60_000),
    request("PUT", "/v1/nodes/x", "Relay-Pool: \u00ff\u00fe"),
    request("PUT", "/v1/nodes/x", "Relay-Pool: %00"),
    request("PUT", "/v1/nodes/x", "Relay-Pool: prod", "Relay-Pool: other"),
    request("PUT", "/v1/nodes/x", "no colon here"),
    request("PUT", "/v1/nodes/x", " leading: space"),
    request("PUT", "/v1/nodes/x", "Bad Name: v"),
    request("PUT", "/v1/nodes/x", "Host: \x00"),
    request("PUT", "/v1/nodes/x", "Content-Length: abc"),
    request("PUT", "/v1/nodes/x", "Content-Length: -1"),
    request("PUT", "/v1/nodes/x", "Content-Length: 99999999999"),
    request("PUT", "/v1/nodes/x", "Content-Length: 1", "Content-Length: 2", body=b"ab"),
    request("PUT", "/v1/nodes/x", "Transfer-Encoding: chunked", body=b"zz\r\n"),
    request("PUT", "/v1/nodes/x", "Content-Length: 70000", body=b"b" * 70_000),
    request("PUT", "/v1/nodes/x", "Expect: 100-continue", "Content-Length: 3", body=b"abc"),
    request("PUT", "http://elsewhere/v1/nodes/x"),
    request("PUT", "*"),
    request("PUT", "/v1/nodes/x?%zz&a=" + "q" * 10_000),
    b"PUT /v1/nodes/x HTTP/9.9\r\nConnection: close\r\n\r\n",
    b"PUT /v1/nodes/x HTTP/1.0\r\n\r\n",
    b"PUT /v1/nodes/x\r\n\r\n",
    b"PUT  /v1/nodes/x  HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"put /v1/nodes/x HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n",
    b"PUT /v1/nodes/x HTTP/1.1\nConnection: close\n\n",
    b"PUT /v1/nodes/x HTTP/1.1\r\nConnection: close\r\n\r\n" * 50,
]


UNKNOWN_CODING = request(
    "PUT", "/v1/nodes/x", "Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"
)


def test_unknown_transfer_coding_is_501(ws: Workspace) -> None:
    """The one 5xx a client can provoke: a transfer coding other than chunked gets waitress's
    501 Not Implemented (RFC 9112 section 6.1 says so), before Relay sees the request, in
    Relay's JSON error shape."""
    server = start_server(ws)
    status, answer = raw(server.port, UNKNOWN_CODING)
    assert status == 501
    assert answer.endswith(b'{"error":"not implemented"}\n')
    assert server.request("GET", "/v1/health").status == 200
    code, _, err = server.stop()
    assert code == 0, err


def test_malformed_and_oversized_requests(ws: Workspace) -> None:
    """Oversized, duplicated, unparsable and TLS-looking requests: each gets a 4xx (or an
    ordinary answer) or a closed connection, never a 5xx; the server stays up and healthy."""
    add_licenses(ws, 2)
    add_licenses(ws, 1, pool="prod")
    server = start_server(ws)
    statuses: list[int | None] = []
    with HealthProbe(server.port) as probe:
        for payload in MALFORMED:
            # Answers come at once; a request the server is still waiting to complete (bare LF
            # line ends) counts as no answer after 2 s.
            status, answer = raw(server.port, payload, timeout=2)
            statuses.append(status)
            assert status is None or status < 500, answer[:300]
    _assert_healthy(probe, server)
    assert any(s in (400, 413, 431) for s in statuses)
    code, _, err = server.stop()
    assert code == 0, err
    assert violations(ws.db) == []


METHODS = ["GET", "PUT", "DELETE", "POST", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT"]
METHODS += ["get", "PUTT", "M-SEARCH", "X" * 300, "DEL\tETE"]


def _random_target(rng: random.Random) -> str:
    """Half the time one node's path with a random segment, else any random path."""
    if rng.random() < 0.5:
        prefix, count = "/v1/nodes/", 1
    else:
        prefix = rng.choice(["/v1/nodes/", "/v1/health", "/v1/", "/", "//", "/v2/nodes/", ""])
        count = rng.randrange(0, 4)
    pieces = []
    for _ in range(count):
        kind = rng.randrange(5)
        if kind == 0:
            pieces.append("".join(rng.choice("abc-_.~") for _ in range(rng.randrange(1, 20))))
        elif kind == 1:
            pieces.append("".join(f"%{rng.randrange(256):02X}" for _ in range(rng.randrange(1, 8))))
        elif kind == 2:
            pieces.append(rng.choice(["..", ".", "", "%2F", "%2E%2E", "?", "#", ";x", "?a=1&b"]))
        elif kind == 3:
            pieces.append("f" * rng.choice([1, 1023, 1024, 1025, 5000]))
        else:
            pieces.append(
                quote(chr(rng.randrange(0x80, 0x110000)), safe="", errors="surrogatepass")
            )
    return prefix + "/".join(pieces)


def test_slow_clients_and_random_requests(ws: Workspace) -> None:
    """200 idle and 100 dribbling connections held open while 3,000 requests with random
    methods, paths and pools arrive: no 5xx, health answers within 1 s throughout, and the idle
    connections are closed by the server (waitress channel_timeout) rather than kept forever."""
    seed = random.randrange(2**32)
    print(f"random request seed {seed}")
    add_licenses(ws, 5)
    add_licenses(ws, 5, pool="prod")
    server = start_server(ws)
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
    opened = time.monotonic()
    dribblers = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
    stop = threading.Event()

    def dribble() -> None:
        line = b"PUT /v1/nodes/slow HTTP/1.1\r\nX-Slow: "
        sent = 0
        while not stop.wait(0.5):
            for sock in dribblers:
                with contextlib.suppress(OSError):
                    sock.send(line[sent : sent + 1] if sent < len(line) else b"s")
            sent += 1

    statuses: Counter[int | None] = Counter()
    bad: list[str] = []

    def flood(worker: int) -> None:
        rng = random.Random(seed + worker)
        for _ in range(750):
            method = rng.choice(["PUT", "DELETE"] if rng.random() < 0.5 else METHODS)
            headers = []
            if rng.random() < 0.3:
                headers.append(f"Relay-Pool: {rng.choice(['prod', 'none', '', 'PROD', 'x' * 500])}")
            payload = request(method, _random_target(rng), *headers)
            try:
                status, answer = raw(server.port, payload)
            except OSError as exc:
                bad.append(f"{payload[:200]!r} -> {exc!r}")
                continue
            statuses[status] += 1
            if status is not None and status >= 500:
                bad.append(f"{payload[:200]!r} -> {answer[:200]!r}")

    dribbling = threading.Thread(target=dribble, daemon=True)
    try:
        with HealthProbe(server.port) as probe:
            dribbling.start()
            workers = [threading.Thread(target=flood, args=(n,), daemon=True) for n in range(4)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(timeout=300)
            # Real nodes are still served while all those connections are held.
            add_licenses(ws, 1, pool="reserved")  # the flood took the others
            assert server.claim("real-node", pool="reserved").status == 201
            assert server.release("real-node", pool="reserved").status == 204
            closed = _wait_closed(idle, deadline=opened + 30 + 10 + 5)
    finally:
        stop.set()
        dribbling.join(timeout=10)
        for sock in idle + dribblers:
            sock.close()

    assert bad == [], f"seed {seed}"
    assert sum(statuses.values()) == 3_000
    _assert_healthy(probe, server)
    assert closed == len(idle), "idle connections were not closed by channel_timeout"
    code, _, err = server.stop()
    assert code == 0, err
    assert violations(ws.db) == []


def _wait_closed(sockets: list[socket.socket], *, deadline: float) -> int:
    """How many of `sockets` the server closed (EOF or reset) before `deadline`."""
    closed: set[int] = set()
    while len(closed) < len(sockets) and time.monotonic() < deadline:
        for index, sock in enumerate(sockets):
            if index in closed:
                continue
            sock.settimeout(0.001)
            try:
                if sock.recv(1) == b"":
                    closed.add(index)
            except (TimeoutError, BlockingIOError):
                pass
            except OSError:
                closed.add(index)
        time.sleep(0.5)
    return len(closed)


@pytest.mark.parametrize("count", [300])
def test_connections_beyond_the_threads_do_not_starve_health(ws: Workspace, count: int) -> None:
    """`count` connections each holding a finished keep-alive exchange open: health still
    answers within 1 s (connections cost the server a socket, not a worker thread)."""
    add_licenses(ws, 1)
    server = start_server(ws)
    held = []
    with HealthProbe(server.port) as probe:
        for n in range(count):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(f"GET /v1/health HTTP/1.1\r\nHost: r\r\nX-N: {n}\r\n\r\n".encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            held.append(sock)
        time.sleep(1)
    for sock in held:
        sock.close()
    _assert_healthy(probe, server)
    code, _, err = server.stop()
    assert code == 0, err

"""Waiting for a seat (``Prefer: wait=N``) against real `relay serve` processes."""

from __future__ import annotations

import http.client
import queue
import signal
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager

import attrs

from .conftest import Response, Server, ServerFactory, Workspace


@attrs.frozen
class Answer:
    fingerprint: str
    status: int
    headers: Mapping[str, str]


def put(
    server: Server, fingerprint: str, *, prefer: str | None = None, timeout: float = 40
) -> Response:
    """One PUT on its own connection, with an optional ``Prefer`` header."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.request(
            "PUT", f"/v1/nodes/{fingerprint}", headers={"Prefer": prefer} if prefer else {}
        )
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@contextmanager
def waiters(server: Server) -> Iterator[tuple[queue.Queue[Answer], list[threading.Thread]]]:
    """Start waiting PUTs with `start(fp, wait)`; answers arrive on the queue in answer order."""
    answers: queue.Queue[Answer] = queue.Queue()
    threads: list[threading.Thread] = []
    try:
        yield answers, threads
    finally:
        for thread in threads:
            thread.join(timeout=45)


def start(
    server: Server,
    answers: queue.Queue[Answer],
    threads: list[threading.Thread],
    fingerprint: str,
    wait: int,
) -> None:
    def run() -> None:
        try:
            resp = put(server, fingerprint, prefer=f"wait={wait}")
        except OSError:
            answers.put(Answer(fingerprint, 0, {}))
        else:
            answers.put(Answer(fingerprint, resp.status, resp.headers))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    threads.append(thread)


def held_by(ws: Workspace) -> list[str]:
    """Fingerprints of the nodes holding a license, from the database."""
    rows = ws.query(
        "SELECT nodes.fingerprint FROM licenses JOIN nodes ON nodes.id = licenses.node_id"
    )
    return [str(row[0]) for row in rows]


def test_seats_go_to_waiters_in_arrival_order(ws: Workspace, serve: ServerFactory) -> None:
    """20 nodes wait 50 ms apart; 20 releases in turn hand the seat out in exactly that order."""
    ws.add(ws.license("only"))
    server = serve()
    assert server.claim("holder").status == 201
    names = [f"waiter-{n:02d}" for n in range(20)]
    with waiters(server) as (answers, threads):
        for name in names:
            start(server, answers, threads, name, 30)
            time.sleep(0.05)
        time.sleep(0.2)
        order = []
        holder = "holder"
        for _ in names:
            assert server.release(holder).status == 204
            got = answers.get(timeout=35)
            assert got.status == 201, got
            assert got.headers["preference-applied"] == "wait=30"
            order.append(got.fingerprint)
            holder = got.fingerprint
            time.sleep(0.1)
    assert order == names
    assert held_by(ws) == [names[-1]]


def test_health_heartbeats_and_releases_answer_while_200_wait(
    ws: Workspace, serve: ServerFactory
) -> None:
    """With the default 16 threads and 200 parked claims, health, heartbeats and releases answer."""
    ws.add(ws.license("only"))
    server = serve("--max-waiting", "200")
    assert server.claim("holder").status == 201
    with waiters(server) as (answers, threads):
        for n in range(201):
            start(server, answers, threads, f"w-{n:03d}", 60)
        # One of the 201 is refused at once (410 + Retry-After): the other 200 are parked.
        refused = answers.get(timeout=60)
        assert refused.status == 410
        assert "retry-after" in refused.headers
        for _ in range(20):
            assert server.request("GET", "/v1/health").status == 200
        assert server.claim("holder").status == 202
        assert server.release("holder").status == 204
        first = answers.get(timeout=30)
        assert first.status == 201
        assert answers.empty()
        code, _, _ = server.stop()
        assert code == 0
        rest = [answers.get(timeout=30) for _ in range(199)]
    assert {a.status for a in rest} == {410}
    assert held_by(ws) == [first.fingerprint]


def test_disconnected_waiter_never_gets_a_seat(ws: Workspace, serve: ServerFactory) -> None:
    """A waiter that hangs up leaves the line: the seat goes to the one behind it."""
    ws.add(ws.license("only"))
    server = serve()
    assert server.claim("holder").status == 201
    gone = socket.create_connection((server.host, server.port))
    with closing(gone):
        gone.sendall(
            b"PUT /v1/nodes/gone HTTP/1.1\r\nHost: relay\r\nPrefer: wait=30\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        time.sleep(0.3)
        with waiters(server) as (answers, threads):
            start(server, answers, threads, "next", 30)
            time.sleep(0.3)
            gone.close()
            time.sleep(0.3)
            assert server.release("holder").status == 204
            got = answers.get(timeout=35)
    assert (got.fingerprint, got.status) == ("next", 201)
    assert held_by(ws) == ["next"]
    assert ws.query("SELECT count(*) FROM nodes WHERE fingerprint = 'gone'") == [(0,)]


def waiting_gauge(server: Server) -> float:
    """``relay_waiting{pool=""}`` from ``/metrics``: the claims parked in the global pool."""
    from prometheus_client.parser import text_string_to_metric_families

    text = server.request("GET", "/metrics").body.decode()
    for family in text_string_to_metric_families(text):
        if family.name == "relay_waiting":
            for sample in family.samples:
                if sample.labels.get("pool") == "":
                    return sample.value
    return 0.0


def test_sixth_waiter_beyond_max_waiting_is_refused_at_once(
    ws: Workspace, serve: ServerFactory
) -> None:
    """With --max-waiting 5, the sixth waiter gets 410 with Retry-After without waiting."""
    ws.add(ws.license("only"))
    server = serve("--max-waiting", "5")
    assert server.claim("holder").status == 201
    with waiters(server) as (answers, threads):
        for n in range(5):
            start(server, answers, threads, f"w{n}", 30)
        # The relay_waiting gauge says when the five are parked (a probe that itself waited
        # would hold a place and could turn a late waiter away).
        deadline = time.monotonic() + 30
        while waiting_gauge(server) != 5:
            assert time.monotonic() < deadline, "the five waiters never all parked"
            time.sleep(0.1)
        # A client timeout well under the requested wait: a parked sixth would time out.
        sixth = put(server, "sixth", prefer="wait=30", timeout=10)
        assert sixth.status == 410
        assert sixth.headers["retry-after"] == "1"
        assert "preference-applied" not in sixth.headers
        assert sixth.body == b'{"error":"no licenses available"}\n'
        assert answers.empty()
        server.stop()


def test_plain_put_does_not_take_a_seat_owed_to_a_waiter(
    ws: Workspace, serve: ServerFactory
) -> None:
    """A license added by `relay add` while a node waits goes to the waiter, not to a plain PUT."""
    ws.add(ws.license("first"))
    server = serve()
    assert server.claim("holder").status == 201
    with waiters(server) as (answers, threads):
        start(server, answers, threads, "waiter", 30)
        time.sleep(0.3)
        ws.add(ws.license("second"))  # another process: the server notices within a second
        assert server.claim("plain").status == 410
        got = answers.get(timeout=10)
        assert (got.fingerprint, got.status) == ("waiter", 201)
        assert server.claim("plain").status == 410
    assert sorted(held_by(ws)) == ["holder", "waiter"]


def test_release_races_go_to_the_waiter(ws: Workspace, serve: ServerFactory) -> None:
    """Plain PUTs hammering during a release never beat the waiting node to the seat."""
    ws.add(ws.license("only"))
    server = serve()
    assert server.claim("holder").status == 201
    stop = threading.Event()
    plain: list[int] = []

    def hammer(n: int) -> None:
        while not stop.is_set():
            plain.append(put(server, f"plain-{n}").status)

    with waiters(server) as (answers, threads):
        start(server, answers, threads, "waiter", 30)
        time.sleep(0.3)
        hammers = [threading.Thread(target=hammer, args=(n,), daemon=True) for n in range(4)]
        for thread in hammers:
            thread.start()
        time.sleep(0.2)
        assert server.release("holder").status == 204
        got = answers.get(timeout=10)
        time.sleep(0.2)
        stop.set()
        for thread in hammers:
            thread.join(timeout=15)
    assert (got.fingerprint, got.status) == ("waiter", 201)
    assert plain
    assert set(plain) == {410}


def test_wait_is_capped_and_a_bad_wait_is_ignored(ws: Workspace, serve: ServerFactory) -> None:
    """--max-wait caps the wait (and says so); ``wait=abc`` answers as without the header."""
    ws.add(ws.license("only"))
    server = serve("--max-wait", "1")
    ok = put(server, "first", prefer="wait=30")
    assert ok.status == 201
    assert ok.headers["preference-applied"] == "wait=1"
    capped = put(server, "capped", prefer="wait=3600", timeout=15)
    assert capped.status == 410
    assert capped.headers["preference-applied"] == "wait=1"
    assert "retry-after" not in capped.headers
    ignored = put(server, "ignored", prefer="wait=abc")
    assert ignored.status == 410
    assert "preference-applied" not in ignored.headers
    assert ignored.body == b'{"error":"no licenses available"}\n'


def test_max_wait_zero_disables_waiting(ws: Workspace, serve: ServerFactory) -> None:
    """RELAY_MAX_WAIT=0: ``Prefer: wait`` is ignored and a plain 410 comes at once."""
    ws.add(ws.license("only"))
    server = serve(env={"RELAY_MAX_WAIT": "0"})
    assert server.claim("holder").status == 201
    resp = put(server, "other", prefer="wait=30", timeout=10)
    assert resp.status == 410
    assert "preference-applied" not in resp.headers


def test_killed_server_leaves_no_queue_state(ws: Workspace, serve: ServerFactory) -> None:
    """After SIGKILL with nodes waiting, a restarted server hands the freed seat to a plain PUT."""
    ws.add(ws.license("only"))
    schema = [line for line in ws.snapshot() if line.startswith("CREATE")]
    server = serve()
    assert server.claim("holder").status == 201
    with waiters(server) as (answers, threads):
        for n in range(3):
            start(server, answers, threads, f"w{n}", 30)
        time.sleep(0.5)
        server.stop(signal.SIGKILL)
        assert {answers.get(timeout=10).status for _ in range(3)} == {0}
    again = serve()
    assert again.release("holder").status == 204
    assert again.claim("fresh").status == 201
    assert held_by(ws) == ["fresh"]
    assert ws.query("SELECT count(*) FROM nodes WHERE fingerprint LIKE 'w_'") == [(0,)]
    assert [line for line in ws.snapshot() if line.startswith("CREATE")] == schema


def test_half_closed_plain_claim_still_gets_its_answer(ws: Workspace, serve: ServerFactory) -> None:
    """Only waiting claims are watched for hang-ups: a client that half-closes after a plain PUT
    (as some scripts do) still reads its 201."""
    ws.add(ws.license("only"))
    server = serve()
    with closing(socket.create_connection((server.host, server.port), timeout=10)) as sock:
        sock.sendall(b"PUT /v1/nodes/half HTTP/1.1\r\nHost: relay\r\nContent-Length: 0\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 201 ")

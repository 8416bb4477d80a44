"""Acceptance of issue 15: `pg_ctl stop` then `start` under load, against real replicas."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from relay_postgres.testing import PostgresServer, start_server

from .conftest import Workspace, add_licenses, replica, request


@pytest.fixture
def own_server(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A server of this test's own, so stopping it disturbs no other test."""
    if not postgres_server.owned:
        pytest.fail("the outage test needs a server it can stop: unset RELAY_TEST_POSTGRES_URL")
    server = start_server()
    try:
        yield server
    finally:
        server.close()


def test_database_stop_and_start_under_load(ws: Workspace, own_server: PostgresServer) -> None:
    """503s (JSON, within 10 s) while the database is down, health 503 too, then 201/202
    again within 5 s of its return, from the same replica processes."""
    db = own_server.create_database()
    add_licenses(ws, db, 8)
    replicas = [replica(ws, db, "--ttl", "30s") for _ in range(2)]
    pids = [server.process.pid for server in replicas]
    log: list[tuple[float, float, int, bytes]] = []  # (sent, answered, status, body)
    lock = threading.Lock()
    stop = threading.Event()

    def node(n: int) -> None:
        server = replicas[n % 2]
        while not stop.is_set():
            sent = time.time()
            status, body = request(server.port, "PUT", f"/v1/nodes/load-{n}", timeout=20)
            with lock:
                log.append((sent, time.time(), status, body))
            stop.wait(0.1)

    threads = [threading.Thread(target=node, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        down_at = time.time()
        own_server.stop()
        down = time.time()  # from here to `start`, the database is certainly down
        time.sleep(4)
        health = [request(server.port, "GET", "/v1/health") for server in replicas]
        starting = time.time()
        own_server.start()
        up_at = time.time()
        time.sleep(6)
    finally:
        stop.set()
        for t in threads:
            t.join(30)

    before = [status for sent, _, status, _ in log if sent < down_at]
    assert before
    assert set(before) <= {201, 202}, Counter(before)
    during = [
        (sent, done, status, body)
        for sent, done, status, body in log
        if sent >= down and done <= starting
    ]
    assert during, "no request was sent while the database was down"
    assert {status for _, _, status, _ in during} == {503}, Counter(s for _, _, s, _ in during)
    assert all(b'"error":' in body for _, _, _, body in during)
    assert max(done - sent for sent, done, _, _ in during) < 10
    assert [status for status, _ in health] == [503, 503]
    assert all(body == b'{"error":"database unavailable"}\n' for _, body in health)
    recovered = [done for sent, done, status, _ in log if sent >= up_at and status in (201, 202)]
    assert recovered, "no 201/202 after the database came back"
    assert min(recovered) - up_at <= 5, f"first 201/202 {min(recovered) - up_at:.1f}s after return"
    late = [status for sent, _, status, _ in log if sent >= up_at + 5]
    assert late
    assert set(late) <= {201, 202}, Counter(late)
    for server, pid in zip(replicas, pids, strict=True):
        assert server.process.poll() is None
        assert server.process.pid == pid
        assert request(server.port, "GET", "/v1/health")[0] == 200

"""`relay serve` end to end: every server script of spec §8.1, plus culling, signals and ports."""

from __future__ import annotations

import base64
import http.client
import json
import signal
import socket
import threading
import time
from contextlib import closing

import pytest
from relay_core.signing import verify

from .conftest import Response, ServerFactory, Workspace, free_port


def body(resp: Response) -> dict[str, object]:
    assert resp.body.endswith(b"\n")
    data = json.loads(resp.body)
    assert isinstance(data, dict)
    return data


def test_claim_license_success(ws: Workspace, serve: ServerFactory) -> None:
    """PUT gives 201 with the stored file (base64), the key, and expires_in 60."""
    lic = ws.license("license")
    ws.add(lic)
    server = serve()
    resp = server.claim("node-1")
    data = body(resp)
    assert resp.status == 201
    assert base64.b64decode(str(data["license_file"])) == lic.path.read_bytes()
    assert data["license_key"] == lic.key
    assert data["expires_in"] == 60
    assert b'"expires_in":60' in resp.body
    assert "relay-clock" in resp.headers
    assert "relay-signature" not in resp.headers


def test_claim_license_extended(ws: Workspace, serve: ServerFactory) -> None:
    """With --ttl 2m a second PUT from the same node extends: 202 and expires_in 120."""
    ws.add(ws.license("license"))
    server = serve("--ttl", "2m")
    assert server.claim("node-1").status == 201
    resp = server.claim("node-1")
    assert resp.status == 202
    assert b'"expires_in":120' in resp.body


@pytest.mark.parametrize("flag", [("--no-heartbeats",), ()])
def test_claim_license_conflict(ws: Workspace, serve: ServerFactory, flag: tuple[str, ...]) -> None:
    """With heartbeats off (flag or RELAY_NO_HEARTBEATS), a repeated PUT is 409 with the exact body."""
    ws.add(ws.license("license"))
    env = {} if flag else {"RELAY_NO_HEARTBEATS": "1"}
    server = serve(*flag, env=env)
    assert server.claim("node-1").status == 201
    resp = server.claim("node-1")
    assert resp.status == 409
    assert resp.body == b'{"error":"failed to claim license due to conflict"}\n'


def test_claim_license_lifo_strategy(ws: Workspace, serve: ServerFactory) -> None:
    """--strategy lifo hands out the license added last."""
    first, second = ws.license("license"), ws.license("license_2")
    ws.add(first)
    ws.add(second)
    server = serve("--strategy", "lifo")
    assert body(server.claim("node-1"))["license_key"] == second.key


def test_claim_fifo_is_the_default(ws: Workspace, serve: ServerFactory) -> None:
    """Without --strategy the license added first is handed out first."""
    first, second = ws.license("license"), ws.license("license_2")
    ws.add(first)
    ws.add(second)
    server = serve()
    assert body(server.claim("node-1"))["license_key"] == first.key


def test_claim_no_licenses_available(ws: Workspace, serve: ServerFactory) -> None:
    """An empty database answers 410 `no licenses available`."""
    server = serve()
    resp = server.claim("node-1")
    assert resp.status == 410
    assert "no licenses available" in resp.text


def test_claim_pooled_license_success(ws: Workspace, serve: ServerFactory) -> None:
    """`Relay-Pool: prod` leases prod's license."""
    lic = ws.license("license")
    ws.add(lic, pool="prod")
    server = serve()
    resp = server.claim("node-1", pool="prod")
    data = body(resp)
    assert resp.status == 201
    assert data["license_key"] == lic.key
    assert "license_file" in data


def test_claim_invalid_pool(ws: Workspace, serve: ServerFactory) -> None:
    """An unknown Relay-Pool is 400 `invalid pool`."""
    ws.add(ws.license("license"), pool="prod")
    server = serve()
    resp = server.claim("node-1", pool="nonexistent")
    assert resp.status == 400
    assert "invalid pool" in resp.text


def test_claim_pool_header_conflict(ws: Workspace, serve: ServerFactory) -> None:
    """`serve --pool prod` rejects a dev header, and accepts prod or no header."""
    ws.add(ws.license("prod1"), ws.license("prod2"), pool="prod")
    ws.add(ws.license("dev"), pool="dev")
    server = serve("--pool", "prod")
    resp = server.claim("node-1", pool="dev")
    assert resp.status == 400
    assert "unsupported pool header" in resp.text
    assert server.claim("node-1", pool="prod").status == 201
    assert server.release("node-1", pool="prod").status == 204
    assert server.claim("node-2").status == 201
    assert server.release("node-2").status == 204


def test_claim_empty_pool(ws: Workspace, serve: ServerFactory) -> None:
    """With one dev license, a second dev node gets 410 even though prod has a free one."""
    ws.add(ws.license("prod"), pool="prod")
    ws.add(ws.license("dev"), pool="dev")
    server = serve()
    assert server.claim("node-1", pool="dev").status == 201
    resp = server.claim("node-2", pool="dev")
    assert resp.status == 410
    assert '"error"' in resp.text
    assert "no licenses available" in resp.text


def test_cross_pool_claim_conflicts(ws: Workspace, serve: ServerFactory) -> None:
    """A node holding a prod lease gets 409 asking in dev while dev has a free license."""
    ws.add(ws.license("prod"), pool="prod")
    ws.add(ws.license("dev"), pool="dev")
    server = serve()
    assert server.claim("node-1", pool="prod").status == 201
    assert server.claim("node-1", pool="dev").status == 409


def test_release_license_success_and_reactivation(ws: Workspace, serve: ServerFactory) -> None:
    """PUT 201, DELETE 204 with no body, and the same node can claim again (201)."""
    ws.add(ws.license("license"))
    server = serve()
    assert server.claim("node-1").status == 201
    resp = server.release("node-1")
    assert (resp.status, resp.body) == (204, b"")
    assert server.claim("node-1").status == 201


def test_a_release_keeps_the_connection_open(ws: Workspace, serve: ServerFactory) -> None:
    """A 204 has no body to delimit, so the node's connection survives it (HTTP/1.1
    keep-alive); a request that says `Connection: close` still gets its close."""
    ws.add(ws.license("license"))
    server = serve()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        for _ in range(2):
            conn.request("PUT", "/v1/nodes/node-1")
            claimed = conn.getresponse()
            assert (claimed.status, claimed.getheader("Connection")) == (201, None)
            claimed.read()
            sock = conn.sock
            conn.request("DELETE", "/v1/nodes/node-1")
            released = conn.getresponse()
            assert (released.status, released.read()) == (204, b"")
            assert released.getheader("Connection") is None
            assert conn.sock is sock is not None  # the same socket, still open
        conn.request("PUT", "/v1/nodes/node-1")
        conn.getresponse().read()
        conn.request("DELETE", "/v1/nodes/node-1", headers={"Connection": "close"})
        closed = conn.getresponse()
        assert (closed.status, closed.getheader("Connection")) == (204, "close")
        closed.read()
        assert conn.sock is None
    finally:
        conn.close()


def test_release_license_not_found(ws: Workspace, serve: ServerFactory) -> None:
    """DELETE of an unknown node is 404 with the exact body."""
    server = serve()
    resp = server.release("nobody")
    assert resp.status == 404
    assert resp.body == b'{"error":"claim not found"}\n'


def test_release_pooled_license_success(ws: Workspace, serve: ServerFactory) -> None:
    """A prod claim is released with the prod header."""
    ws.add(ws.license("license"), pool="prod")
    server = serve()
    resp = server.claim("node-1", pool="prod")
    assert resp.status == 201
    assert {"license_file", "license_key"} <= set(body(resp))
    assert server.release("node-1", pool="prod").status == 204


def test_release_wrong_pool(ws: Workspace, serve: ServerFactory) -> None:
    """Releasing a prod claim under dev is 404 `claim not found`; under prod it is 204."""
    ws.add(ws.license("prod"), pool="prod")
    ws.add(ws.license("dev"), pool="dev")
    server = serve()
    assert server.claim("node-1", pool="prod").status == 201
    resp = server.release("node-1", pool="dev")
    assert resp.status == 404
    assert "claim not found" in resp.text
    assert server.release("node-1", pool="prod").status == 204


def test_bind_address(ws: Workspace, serve: ServerFactory) -> None:
    """`--bind 127.0.0.42` listens there only: 127.0.0.1 on the same port is refused."""
    ws.add(ws.license("license"))
    server = serve(host="127.0.0.42")
    with pytest.raises(ConnectionRefusedError):
        server.request("GET", "/v1/health", host="127.0.0.1")
    assert "license_file" in body(server.claim("node-1"))


def test_custom_database(ws: Workspace, serve: ServerFactory) -> None:
    """`add --database custom_relay.sqlite` creates that file, and `serve --database` serves it."""
    ws.add(ws.license("license"), database="custom_relay.sqlite")
    assert (ws.root / "custom_relay.sqlite").exists()
    assert not ws.db.exists()
    server = serve("--database", "custom_relay.sqlite")
    assert server.claim("node-1").status == 201


def test_database_from_environment(ws: Workspace, serve: ServerFactory) -> None:
    """RELAY_DATABASE points both add and serve at the same file."""
    lic = ws.license("license")
    run = ws.relay(
        "add",
        "--file",
        "license.lic",
        "--key",
        lic.key,
        "--public-key",
        ws.public_key,
        env={"RELAY_DATABASE": "env.sqlite"},
    )
    assert run.code == 0
    server = serve(env={"RELAY_DATABASE": "env.sqlite"})
    assert server.claim("node-1").status == 201


def test_signing_secret_across_a_restart(ws: Workspace, serve: ServerFactory) -> None:
    """Unsigned 201; after a restart with --signing-secret the lease persists (202, signed)."""
    ws.add(ws.license("license"))
    first = serve()
    resp = first.claim("node-1")
    assert resp.status == 201
    assert "relay-signature" not in resp.headers
    assert first.stop()[0] == 0
    second = serve("--signing-secret", "hunter2", "-vvvv")
    resp = second.claim("node-1")
    assert resp.status == 202
    verify(resp.headers["relay-signature"], resp.body, "hunter2", now=time.time())


def test_signatures_verify_on_every_status(ws: Workspace, serve: ServerFactory) -> None:
    """With a secret, 201, 202, 204, 400, 404, 405, 409 and 410 bodies all carry a valid signature."""
    ws.add(ws.license("license"), pool="prod")
    server = serve("--signing-secret", "s3cret", env={"RELAY_NO_HEARTBEATS": "0"})
    responses = [
        server.claim("node-1", pool="prod"),  # 201
        server.claim("node-1", pool="prod"),  # 202
        server.claim("node-2", pool="nope"),  # 400
        server.claim("node-2", pool="prod"),  # 410
        server.release("node-1", pool="prod"),  # 204
        server.release("node-1"),  # 404
        server.request("POST", "/v1/nodes/x"),  # 405
        server.request("GET", "/v1/nowhere"),  # 404
    ]
    assert [r.status for r in responses] == [201, 202, 400, 410, 204, 404, 405, 404]
    for resp in responses:
        assert "relay-clock" in resp.headers
        verify(resp.headers["relay-signature"], resp.body, "s3cret", now=time.time())


def test_health_and_unknown_routes(ws: Workspace, serve: ServerFactory) -> None:
    """GET /v1/health is 200; other paths 404 and wrong methods 405 with Allow, all JSON."""
    server = serve()
    assert server.request("GET", "/v1/health").status == 200
    missing = server.request("GET", "/nope")
    assert missing.status == 404
    assert "error" in body(missing)
    wrong = server.request("POST", "/v1/health")
    assert wrong.status == 405
    assert "allow" in wrong.headers


def test_audit_rows_for_claim_and_release(ws: Workspace, serve: ServerFactory) -> None:
    """A pooled claim and release write node.activated, license.leased, node.heartbeat_ping,
    license.released, node.deactivated, all with the pool id; `relay logs` names them."""
    lic = ws.license("license")
    ws.add(lic, pool="prod")
    server = serve()
    assert server.claim("node-1", pool="prod").status == 201
    assert server.release("node-1", pool="prod").status == 204
    rows = ws.query(
        "SELECT e.name, a.pool_id FROM audit_logs a JOIN event_types e ON e.id = a.event_type_id "
        "WHERE a.id > 2 ORDER BY a.id"
    )
    assert [name for name, _ in rows] == [
        "node.activated",
        "license.leased",
        "node.heartbeat_ping",
        "license.released",
        "node.deactivated",
    ]
    assert {pool for _, pool in rows} == {1}
    logged = json.loads(ws.relay("logs", "--json", "--limit", "5").out)
    assert [(r["event"], r["entity"], r["pool"]) for r in logged] == [
        ("node.deactivated", "node-1", "prod"),
        ("license.released", lic.guid, "prod"),
        ("node.heartbeat_ping", "node-1", "prod"),
        ("license.leased", lic.guid, "prod"),
        ("node.activated", "node-1", "prod"),
    ]


def test_cli_works_while_the_server_runs(ws: Workspace, serve: ServerFactory) -> None:
    """`relay add`, `ls` and `del` run against the database a server is using."""
    server = serve()
    assert server.claim("node-1").status == 410
    lic = ws.license("late")
    ws.add(lic)
    assert server.claim("node-1").status == 201
    listed = json.loads(ws.relay("ls", "--json").out)
    assert listed[0]["node_id"] is not None
    assert ws.relay("del", "--license", lic.guid).code == 0
    assert server.release("node-1").status == 404


def test_sigterm_exits_zero_and_prints_the_start_line(ws: Workspace, serve: ServerFactory) -> None:
    """SIGTERM stops the server gracefully: exit 0, `the server is starting` on stdout only."""
    server = serve()
    code, out, err = server.stop(signal.SIGTERM, timeout=5)
    assert (code, out) == (0, "the server is starting\n")
    assert "Traceback" not in err


def test_sigint_during_requests_exits_zero(ws: Workspace, serve: ServerFactory) -> None:
    """SIGINT while nodes claim and release: exit 0, no lease is left on an inactive node, and a
    new server on the same database serves again."""
    ws.add(*(ws.license(f"l{i}") for i in range(5)))
    server = serve()
    stop = threading.Event()

    def churn(n: int) -> None:
        while not stop.is_set():
            try:
                server.claim(f"node-{n}")
                server.release(f"node-{n}")
            except (OSError, http.client.HTTPException):
                return

    workers = [threading.Thread(target=churn, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    time.sleep(0.5)
    code, _, err = server.stop(signal.SIGINT, timeout=5)
    stop.set()
    for worker in workers:
        worker.join(timeout=10)
    assert code == 0, err
    orphaned = ws.query(
        "SELECT count(*) FROM licenses l JOIN nodes n ON n.id = l.node_id WHERE n.deactivated_at IS NOT NULL"
    )
    assert orphaned == [(0,)]
    again = serve()
    assert again.claim("after-restart").status in (201, 410)
    assert again.request("GET", "/v1/health").status == 200


def test_taken_port_is_one_line_and_exit_1(ws: Workspace) -> None:
    """A port already in use: one `error: listen tcp ...: bind: address already in use` line."""
    port = free_port()
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        run = ws.relay("serve", "--bind", "127.0.0.1", "--port", str(port), timeout=30)
    assert run.code == 1
    assert run.err_lines == [f"error: listen tcp 127.0.0.1:{port}: bind: address already in use"]


def test_culling_frees_a_silent_lease(ws: Workspace, serve: ServerFactory) -> None:
    """--ttl 30s --cull-interval 1s: a lease not heartbeated is free again within ~32 s, `ls`
    shows last_released_at, and the audit log has lease_expired and node.culled with the pool."""
    lic = ws.license("license")
    ws.add(lic, pool="prod")
    server = serve("--ttl", "30s", "--cull-interval", "1s")
    assert server.claim("node-1", pool="prod").status == 201
    claimed_at = time.monotonic()
    row: dict[str, object] = {}
    while time.monotonic() - claimed_at < 40:
        time.sleep(1)
        row = json.loads(ws.relay("ls", "--json").out)[0]
        if row["node_id"] is None:
            break
    assert row["node_id"] is None, "the lease was not culled within 40 s"
    assert row["last_released_at"] is not None
    events = json.loads(
        ws.relay("logs", "--json", "--event", "license.lease_expired,node.culled").out
    )
    assert [(e["event"], e["entity"], e["pool"]) for e in events] == [
        ("node.culled", "node-1", "prod"),
        ("license.lease_expired", lic.guid, "prod"),
    ]
    assert server.claim("node-2", pool="prod").status == 201


def test_sigterm_answers_a_request_stuck_on_the_database_503(
    ws: Workspace, serve: ServerFactory
) -> None:
    """operations.md: a claim still waiting for another process's lock when the 3 s grace
    period ends is answered 503 with Retry-After while the lock is still held (not dropped
    unanswered), nothing is logged after ``server stopped``, and the exit status is 0."""
    import sqlite3

    ws.add(ws.license("l0"))
    server = serve("-vvv", "--no-color", "--pragma", "busy_timeout=30000")
    holder = sqlite3.connect(ws.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    answers: list[Response | BaseException] = []

    def claim() -> None:
        try:
            answers.append(server.claim("inflight"))
        except (OSError, http.client.HTTPException) as exc:
            answers.append(exc)

    client = threading.Thread(target=claim)
    client.start()
    try:
        time.sleep(0.3)  # let the claim reach the database
        server.process.send_signal(signal.SIGTERM)
        client.join(20)
        assert answers, "no answer while the database was still locked"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    code, _, err = server.stop(timeout=40)
    (answer,) = answers
    assert isinstance(answer, Response), answer
    assert (answer.status, answer.body) == (503, b'{"error":"failed to claim license"}\n')
    assert answer.headers["retry-after"] == "1"
    assert code == 0, err
    lines = err.splitlines()
    assert "answered 503 to requests still running after the grace period count=1" in err
    assert lines[-1].endswith("INF server stopped"), lines[-3:]


def test_client_values_cannot_forge_log_lines(ws: Workspace, serve: ServerFactory) -> None:
    """A percent-encoded CR/LF, NUL or bad byte in the path, and a UTF-8 user agent, stay
    inside one quoted field of one line (docs/operations.md)."""
    import re

    server = serve("-vvv", "--no-color")
    forged = "/v1/nodes/x%0A2026-12-03%2014:10:00%20ERR%20forged%0D%00"
    assert server.request("PUT", forged, pool="nope").status == 400
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.putrequest("GET", "/v1/health")
        conn.putheader("User-Agent", "agent é/1 x=y".encode())
        conn.endheaders()
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    _, _, err = server.stop()
    lines = err.splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DBG|INF|WRN|ERR) ", x) for x in lines)
    assert not any(line.startswith("2026-12-03 14:10:00 ERR forged") for line in lines)
    claimed = [line for line in lines if "HTTP request method=PUT" in line]
    assert claimed
    assert (
        claimed[0]
        .split(" INF ")[1]
        .startswith(
            'HTTP request method=PUT path="/v1/nodes/x\\n2026-12-03 14:10:00 ERR forged\\r\\u0000" '
            "status=400 "
        )
    )
    assert any('user_agent="agent é/1 x=y"' in line for line in lines)

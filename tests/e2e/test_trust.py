"""Issue 19's acceptance, black-box: signatures, nonces, node tokens, allow-list, new-node limit.

Each test starts `relay serve` as a subprocess and checks only what a node sees on the wire
(and the SQLite file). Signatures are checked with the functions docs/api.md documents.
"""

from __future__ import annotations

import http.client
import secrets
import signal
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from relay_core.signing import load_public_key, verify, verify_ed25519

from .conftest import Response, Server, ServerFactory, Workspace

SECRET = "hunter2"


def new_key(ws: Workspace) -> str:
    """`relay signing-key new`: the key file name; the public key hex it printed is returned."""
    run = ws.relay("signing-key", "new", "--out", "key.pem")
    assert run.code == 0, run.err
    return run.out.splitlines()[0]


def send(
    server: Server,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    *,
    conn: http.client.HTTPConnection | None = None,
) -> Response:
    own = conn is None
    conn = conn or http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(method, path, headers=dict(headers or {}))
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        if own:
            conn.close()


def seats(ws: Workspace) -> int:
    return int(ws.query("SELECT COUNT(*) FROM licenses WHERE node_id IS NOT NULL")[0][0])


def test_every_status_is_signed_with_ed25519_and_v1_still_verifies(
    ws: Workspace, serve: ServerFactory
) -> None:
    public = load_public_key(new_key(ws))
    ws.add(ws.license("g1"))
    ws.add(ws.license("p1"), pool="p")
    Path(ws.root / "tokens").write_text("t0k3n\n")
    Path(ws.root / "allow").write_text("ok-*\n")
    server = serve(
        "--signing-key-file",
        "key.pem",
        "--signing-secret",
        SECRET,
        "--node-token-file",
        "tokens",
        "--allow-fingerprints",
        "allow",
        "--max-new-nodes-per-minute",
        "2",
    )
    auth = {"Authorization": "Bearer t0k3n"}
    pool_p = {**auth, "Relay-Pool": "p"}
    cases = [
        (201, "PUT", "/v1/nodes/ok-a", pool_p),
        (202, "PUT", "/v1/nodes/ok-a", pool_p),
        (409, "PUT", "/v1/nodes/ok-a", auth),  # holds a seat in p, a global one is free
        (201, "PUT", "/v1/nodes/ok-b", auth),
        (410, "PUT", "/v1/nodes/ok-c", auth),
        (204, "DELETE", "/v1/nodes/ok-b", auth),
        (429, "PUT", "/v1/nodes/ok-c", auth),  # a third new seat this minute
        (404, "DELETE", "/v1/nodes/ok-zzz", auth),
        (400, "PUT", "/v1/nodes/ok-a", {**auth, "Relay-Pool": "nope"}),
        (401, "PUT", "/v1/nodes/ok-a", {}),
        (403, "PUT", "/v1/nodes/other", auth),
        (405, "POST", "/v1/health", {}),
        (404, "GET", "/v1/unknown", {}),
        (200, "GET", "/v1/health", {}),
    ]
    now = time.time()
    seen = []
    for status, method, path, headers in cases:
        resp = send(server, method, path, headers)
        assert resp.status == status, (method, path, resp.status, resp.body)
        value = resp.headers["relay-signature"]
        assert value.startswith("t=")
        assert value.split(",")[1].startswith("v1=")  # v1 stays where Keygen's clients find it
        # Keygen Relay's README: split on "," and each part on "=" (one "=" per pair, no padding).
        naive = dict(part.split("=") for part in value.split(","))
        assert set(naive) == {"t", "v1", "ed25519"}
        verify_ed25519(value, resp.body, public, now=now, tolerance=60)
        verify(value, resp.body, SECRET, now=now, tolerance=60)
        seen.append(resp.status)
    assert sorted(set(seen)) == [200, 201, 202, 204, 400, 401, 403, 404, 405, 409, 410, 429]


def test_a_response_is_bound_to_its_request_by_the_nonce(
    ws: Workspace, serve: ServerFactory
) -> None:
    public = load_public_key(new_key(ws))
    ws.add(ws.license("g1"))
    server = serve("--signing-key-file", "key.pem")
    resp = send(server, "PUT", "/v1/nodes/a", {"Relay-Nonce": "X"})
    assert resp.status == 201
    assert resp.headers["relay-nonce"] == "X"
    value, now = resp.headers["relay-signature"], time.time()
    assert "v1=" not in value  # no secret, no HMAC
    verify_ed25519(value, resp.body, public, nonce="X", method="PUT", path="/v1/nodes/a", now=now)
    for nonce, path in [("X", "/v1/nodes/b"), ("Y", "/v1/nodes/a")]:
        with pytest.raises(Exception, match="another request"):
            verify_ed25519(value, resp.body, public, nonce=nonce, method="PUT", path=path, now=now)
    bad = send(server, "PUT", "/v1/nodes/c", {"Relay-Nonce": "x" * 129})
    assert bad.status == 400
    assert bad.body == b'{"error":"invalid nonce header"}\n'


def test_node_tokens_two_at_a_time(ws: Workspace, serve: ServerFactory) -> None:
    ws.add(ws.license("g1"), ws.license("g2"))
    (ws.root / "tokens").write_text("# current and next\nold-token\nnew-token\n")
    server = serve("--node-token-file", "tokens")
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "old-token"}]:
        resp = send(server, "PUT", "/v1/nodes/a", headers)
        assert resp.status == 401
        assert resp.body == b'{"error":"missing or invalid node token"}\n'
    assert seats(ws) == 0
    assert send(server, "PUT", "/v1/nodes/a", {"Authorization": "Bearer old-token"}).status == 201
    assert send(server, "PUT", "/v1/nodes/b", {"Authorization": "Bearer new-token"}).status == 201
    assert send(server, "GET", "/v1/health").status == 200  # health stays open
    # Rotation: drop the old token; the file is re-read without a restart.
    (ws.root / "tokens").write_text("new-token\n")
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status = send(server, "PUT", "/v1/nodes/a", {"Authorization": "Bearer old-token"}).status
        if status == 401:
            break
        time.sleep(0.1)
    assert status == 401
    assert send(server, "PUT", "/v1/nodes/a", {"Authorization": "Bearer new-token"}).status == 202


def test_allow_list_is_reloaded_without_a_restart(ws: Workspace, serve: ServerFactory) -> None:
    ws.add(ws.license("g1"), ws.license("g2"))
    allow = ws.root / "allow"
    allow.write_text("node-1\n")
    server = serve("--allow-fingerprints", "allow", env={"DEBUG": "1"})
    assert send(server, "PUT", "/v1/nodes/node-1").status == 201
    refused = send(server, "PUT", "/v1/nodes/node-2")
    assert refused.status == 403
    assert refused.body == b'{"error":"fingerprint is not allowed"}\n'
    assert seats(ws) == 1
    assert ws.query("SELECT COUNT(*) FROM nodes WHERE fingerprint = 'node-2'") == [(0,)]

    allow.write_text("node-1\nnode-2\n")
    deadline = time.monotonic() + 5
    status = 0
    while time.monotonic() < deadline and status != 201:
        status = send(server, "PUT", "/v1/nodes/node-2").status
        time.sleep(0.1)
    assert status == 201
    assert seats(ws) == 2
    code, _, err = server.stop()
    assert code == 0
    assert "reloaded allow-list" in err


def test_new_node_limit_per_address(ws: Workspace, serve: ServerFactory) -> None:
    """500 fresh fingerprints from 127.0.0.1 take at most 60 seats; 127.0.0.2 is unaffected."""
    ws.add(*(ws.license(f"l{n}") for n in range(80)))
    server = serve("--max-new-nodes-per-minute", "60")
    started = time.monotonic()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    statuses: dict[int, int] = {}
    granted: list[str] = []
    try:
        for n in range(500):
            fingerprint = f"flood-{n}-{secrets.token_hex(4)}"
            resp = send(server, "PUT", f"/v1/nodes/{fingerprint}", conn=conn)
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
            if resp.status == 201:
                granted.append(fingerprint)
            elif resp.status == 429:
                assert 1 <= int(resp.headers["retry-after"]) <= 60
        elapsed = time.monotonic() - started
        # Heartbeats and releases of the admitted nodes are never limited.
        assert {send(server, "PUT", f"/v1/nodes/{fp}", conn=conn).status for fp in granted} == {202}
        assert send(server, "DELETE", f"/v1/nodes/{granted[0]}", conn=conn).status == 204
    finally:
        conn.close()
    assert elapsed < 60, "the flood must fit in one window for the count below to hold"
    assert statuses == {201: 60, 429: 440}
    assert seats(ws) == 59

    other = http.client.HTTPConnection(
        server.host, server.port, timeout=10, source_address=("127.0.0.2", 0)
    )
    try:
        for n in range(5):
            assert send(server, "PUT", f"/v1/nodes/other-{n}", conn=other).status == 201
    finally:
        other.close()
    assert seats(ws) == 64


def test_sighup_without_access_files_keeps_serving(ws: Workspace, serve: ServerFactory) -> None:
    """`systemctl reload relay` on a plain relay must not end it (SIGHUP's default action)."""
    server = serve()
    server.process.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert server.process.poll() is None
    assert send(server, "GET", "/v1/health").status == 200

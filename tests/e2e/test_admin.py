"""The operator's tools end to end: the admin API of a live `relay serve`, and `relay leases`
/ `relay release` run against the database that server is using."""

from __future__ import annotations

import http.client
import json
import time

import pytest
from relay_core.signing import verify

from .conftest import Response, Server, ServerFactory, Workspace

TOKEN = "admin-e2e-token"
ADMIN_ROUTES = [
    ("GET", "/v1/admin/leases"),
    ("DELETE", "/v1/admin/leases/node-1"),
    ("GET", "/v1/admin/pools"),
    ("GET", "/v1/admin/licenses"),
]


def call(server: Server, method: str, path: str, token: str | None = None) -> Response:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def test_without_an_admin_token_the_admin_routes_are_404(
    ws: Workspace, serve: ServerFactory
) -> None:
    server = serve()
    for method, path in ADMIN_ROUTES:
        assert call(server, method, path, TOKEN).status == 404, path


@pytest.mark.parametrize("how", ["flag", "env", "file"])
def test_admin_api_needs_the_token_on_every_route(
    ws: Workspace, serve: ServerFactory, how: str
) -> None:
    (ws.root / "token").write_text(TOKEN + "\n")
    args: tuple[str, ...] = {
        "flag": ("--admin-token", TOKEN),
        "env": (),
        "file": ("--admin-token-file", "token"),
    }[how]
    env = {"RELAY_ADMIN_TOKEN": TOKEN} if how == "env" else {}
    server = serve(*args, "--signing-secret", "sig", env=env)
    for method, path in ADMIN_ROUTES:
        for token in (None, "wrong", TOKEN + "x"):
            resp = call(server, method, path, token)
            assert resp.status == 401, (method, path, token)
            assert json.loads(resp.body) == {"error": "missing or invalid admin token"}
            verify(resp.headers["relay-signature"], resp.body, "sig", now=time.time())
    assert call(server, "GET", "/v1/admin/pools", TOKEN).status == 200
    _, out, err = server.stop()
    assert TOKEN not in out + err


def test_lease_list_force_release_and_audit(ws: Workspace, serve: ServerFactory) -> None:
    licenses = [ws.license(f"lic{n}") for n in range(2)]
    ws.add(*licenses)
    server = serve("--admin-token", TOKEN, "--signing-secret", "sig", "-vvvv")
    assert server.claim("node-1").status == 201
    assert server.claim("node-2").status == 201
    assert server.claim("node-3").status == 410
    resp = call(server, "GET", "/v1/admin/leases", TOKEN)
    assert resp.status == 200
    verify(resp.headers["relay-signature"], resp.body, "sig", now=time.time())
    leases = json.loads(resp.body)
    assert [(lease["fingerprint"], lease["license"]) for lease in leases] == [
        ("node-1", licenses[0].guid),
        ("node-2", licenses[1].guid),
    ]
    for lease in leases:
        assert lease["expires_at"] == lease["last_heartbeat_at"] + 60
        assert lease["pool"] is None
    pools = json.loads(call(server, "GET", "/v1/admin/pools", TOKEN).body)
    assert pools == [
        {
            "pool": None,
            "licenses": 2,
            "leased": 2,
            "free": 0,
            "expired": 0,
            "nodes_active": 2,
            "waiting": 0,
        }
    ]
    listed = json.loads(call(server, "GET", "/v1/admin/licenses", TOKEN).body)
    assert listed == json.loads(ws.relay("ls", "--json").out)

    gone = call(server, "DELETE", "/v1/admin/leases/node-1", TOKEN)
    assert (gone.status, gone.body) == (204, b"")
    assert server.claim("node-3").status == 201  # the seat was free at once
    assert server.claim("node-1").status == 410  # and node-1 lost it
    missing = call(server, "DELETE", "/v1/admin/leases/node-1", TOKEN)
    assert (missing.status, json.loads(missing.body)) == (404, {"error": "lease not found"})
    logs = ws.relay("logs", "--json", "--event", "license.released,node.deactivated")
    rows = json.loads(logs.out)
    assert [(r["event"], r["entity"]) for r in rows] == [
        ("node.deactivated", "node-1"),
        ("license.released", licenses[0].guid),
    ]
    _, out, err = server.stop()
    assert TOKEN not in out + err


def test_leases_and_release_commands_beside_a_running_server(
    ws: Workspace, serve: ServerFactory
) -> None:
    lic = ws.license("lic")
    ws.add(lic, pool="prod")
    server = serve("--pool", "prod")
    assert server.claim("node-1").status == 201
    assert server.claim("node-1").status == 202  # answered from the server's lease cache
    run = ws.relay("leases", "--json")
    assert run.code == 0, run.err
    [lease] = json.loads(run.out)
    assert (lease["fingerprint"], lease["license"], lease["pool"]) == ("node-1", lic.guid, "prod")
    plain = ws.relay("leases", "--plain", "--pool", "prod")
    assert plain.out.splitlines()[0].split("|")[1].strip() == "fingerprint"
    assert "node-1" in plain.out

    wrong = ws.relay("release", "--fingerprint", "node-1", "--pool", "dev")
    assert (wrong.code, wrong.err) == (1, "error: pool not found\n")
    done = ws.relay("release", "--fingerprint", "node-1")
    assert done.code == 0, done.err
    assert done.out == f"lease released successfully: {lic.guid} (node node-1)\n"
    again = ws.relay("release", "--fingerprint", "node-1")
    assert (again.code, again.err) == (1, "error: no lease held by node node-1\n")

    # The server sees the release: the node's heartbeat is refused, a new node gets the seat.
    assert server.release("node-1").status == 404
    assert server.claim("node-2").status == 201
    assert json.loads(ws.relay("leases", "--json").out)[0]["fingerprint"] == "node-2"
    assert ws.relay("leases").out == ws.relay("leases", "--plain").out  # no TTY: plain
    rows = json.loads(ws.relay("logs", "--json", "--event", "license.released").out)
    assert len(rows) == 1


def test_release_needs_a_fingerprint(ws: Workspace) -> None:
    run = ws.relay("release")
    assert (run.code, run.err) == (1, 'Error: required flag(s) "fingerprint" not set\n')

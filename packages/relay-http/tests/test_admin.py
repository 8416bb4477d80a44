"""The admin API in process: the token gate, each route's body, force-release, signing."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from relay_core import License, Relay
from relay_core.signing import verify
from relay_core.testing import FrozenClock
from relay_http import create_app

from .conftest import T0, Call

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUTES = [
    ("GET", "/v1/admin/leases"),
    ("GET", "/v1/admin/leases?pool=p"),
    ("DELETE", "/v1/admin/leases/node-1"),
    ("GET", "/v1/admin/pools"),
    ("GET", "/v1/admin/licenses"),
    ("GET", "/v1/admin/nothing-here"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_without_a_configured_token_admin_routes_do_not_exist(
    relay: Relay, call: Call, method: str, path: str
) -> None:
    resp = call(create_app(relay), method, path, AUTH)
    assert resp.status_code == 404
    assert json.loads(resp.content) == {"error": "not found"}


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", f"bearer{TOKEN}"],
)
def test_a_missing_or_wrong_token_is_401_on_every_admin_route(
    relay: Relay, call: Call, method: str, path: str, header: str | None
) -> None:
    app = create_app(relay, admin_token=TOKEN, signing_secret="sig")
    resp = call(app, method, path, {"Authorization": header} if header else {})
    assert resp.status_code == 401
    assert json.loads(resp.content) == {"error": "missing or invalid admin token"}
    assert resp.headers["www-authenticate"] == "Bearer"
    verify(resp.headers["relay-signature"], resp.content, "sig", now=T0)


def test_the_token_does_not_open_the_node_api_or_change_it(
    relay: Relay, call: Call, add: Callable[..., License]
) -> None:
    add("K1")
    app = create_app(relay, admin_token=TOKEN)
    assert call(app, "PUT", "/v1/nodes/a").status_code == 201
    assert call(app, "GET", "/v1/health").status_code == 200


def test_leases_pools_and_licenses(
    relay: Relay, call: Call, add: Callable[..., License], clock: FrozenClock
) -> None:
    first = add("K1")
    pooled = add("K2", pool="p")
    add("K3", pool="p")
    app = create_app(relay, admin_token=TOKEN, signing_secret="sig")
    assert call(app, "PUT", "/v1/nodes/a").status_code == 201
    clock.advance(5)
    assert call(app, "PUT", "/v1/nodes/b", {"Relay-Pool": "p"}).status_code == 201
    resp = call(app, "GET", "/v1/admin/leases", AUTH)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    verify(resp.headers["relay-signature"], resp.content, "sig", now=T0 + 5)
    node_a, node_b = (relay.list_leases()[i].node_id for i in (0, 1))
    assert json.loads(resp.content) == [
        {
            "fingerprint": "a",
            "node_id": node_a,
            "license": first.guid,
            "pool": None,
            "claimed_at": T0,
            "last_heartbeat_at": T0,
            "expires_at": T0 + 60,
        },
        {
            "fingerprint": "b",
            "node_id": node_b,
            "license": pooled.guid,
            "pool": "p",
            "claimed_at": T0 + 5,
            "last_heartbeat_at": T0 + 5,
            "expires_at": T0 + 65,
        },
    ]
    only_p = json.loads(call(app, "GET", "/v1/admin/leases?pool=p", AUTH).content)
    assert [lease["fingerprint"] for lease in only_p] == ["b"]
    missing = call(app, "GET", "/v1/admin/leases?pool=nope", AUTH)
    assert (missing.status_code, json.loads(missing.content)) == (404, {"error": "pool not found"})

    pools = json.loads(call(app, "GET", "/v1/admin/pools", AUTH).content)
    assert pools == [
        {
            "pool": None,
            "licenses": 1,
            "leased": 1,
            "free": 0,
            "expired": 0,
            "nodes_active": 1,
            "waiting": None,
        },
        {
            "pool": "p",
            "licenses": 2,
            "leased": 1,
            "free": 1,
            "expired": 0,
            "nodes_active": 1,
            "waiting": None,
        },
    ]
    licenses = json.loads(call(app, "GET", "/v1/admin/licenses?pool=p", AUTH).content)
    assert [row["id"] for row in licenses] == [pooled.guid, licenses[1]["id"]]
    assert licenses[0] == {
        "id": pooled.guid,
        "pool": "p",
        "claims": 1,
        "node_id": node_b,
        "last_claimed_at": "2025-12-05T15:44:55Z",
        "last_released_at": None,
        "file_expires_at": "2025-12-06T15:44:50Z",
    }


def test_force_release_frees_the_seat(
    relay: Relay, call: Call, add: Callable[..., License]
) -> None:
    add("K1")
    app = create_app(relay, admin_token=TOKEN)
    assert call(app, "PUT", "/v1/nodes/a").status_code == 201
    assert call(app, "PUT", "/v1/nodes/b").status_code == 410
    wrong_pool = call(app, "DELETE", "/v1/admin/leases/a?pool=nope", AUTH)
    assert wrong_pool.status_code == 404
    resp = call(app, "DELETE", "/v1/admin/leases/a", AUTH)
    assert (resp.status_code, resp.content) == (204, b"")
    assert call(app, "PUT", "/v1/nodes/b").status_code == 201
    again = call(app, "DELETE", "/v1/admin/leases/a", AUTH)
    assert (again.status_code, json.loads(again.content)) == (404, {"error": "lease not found"})
    rows = relay.audit_log(limit=5)[3:]
    assert [(r.event.label, r.entity_label) for r in rows] == [
        ("node.deactivated", "a"),
        ("license.released", relay.list_licenses()[0].guid),
    ]


# -- usage -------------------------------------------------------------------------------------


def _usage(relay: Relay, call: Call, query: str) -> tuple[int, object]:
    resp = call(create_app(relay, admin_token=TOKEN), "GET", f"/v1/admin/usage?{query}", AUTH)
    return resp.status_code, json.loads(resp.text)


def test_usage_never_starts_before_0(relay: Relay, call: Call) -> None:
    """``until=0``'s default window would start at -86400; it starts at 0 instead, and a
    window that is then empty is refused."""
    status, body = _usage(relay, call, "until=60")
    assert status == 200
    assert isinstance(body, list)
    assert {(row["start"], row["end"]) for row in body} <= {(0, 60)}
    assert _usage(relay, call, "until=0") == (400, {"error": "since must be before until"})


def test_usage_does_not_count_the_future(
    relay: Relay, call: Call, add: Callable[..., License], clock: FrozenClock
) -> None:
    """A lease held now is not held in periods after now: `until` is cut to now, and a range
    wholly in the future is refused."""
    add("KEY-1")
    relay.claim("node-1")
    clock.advance(3600)
    status, body = _usage(relay, call, "until=253402300799")
    assert status == 200
    assert isinstance(body, list)
    (row,) = body
    assert row["end"] == T0 + 3600 + 1
    assert row["seat_hours"] == pytest.approx((3600 + 1) / 3600)
    assert _usage(relay, call, "since=253402300798&until=253402300799") == (
        400,
        {"error": "since must not be in the future"},
    )


@pytest.mark.parametrize("every", ["-60", "abc", "1.5"])
def test_usage_every_error_names_a_duration(relay: Relay, call: Call, every: str) -> None:
    """`every` is a duration, not a time: its error says so."""
    assert _usage(relay, call, f"every={every}") == (
        400,
        {"error": "every must be a whole number of seconds, at least 60"},
    )

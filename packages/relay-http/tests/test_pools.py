"""The Relay-Pool header against the configured pool (spec §3.4), on PUT and DELETE."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from relay_core import License, Relay
from relay_http import create_app

AddLicense = Callable[..., License]


def test_pool_header_selects_pool(relay: Relay, add: AddLicense, call) -> None:
    """Without a configured pool the header picks the pool the license comes from."""
    add("GLOBAL")
    add("PROD", pool="prod")
    resp = call(create_app(relay), "PUT", "/v1/nodes/n", {"Relay-Pool": "prod"})
    assert resp.status_code == 201
    assert resp.json["license_key"] == "PROD"


def test_no_header_uses_global_pool(relay: Relay, add: AddLicense, call) -> None:
    """Without header or configured pool, only the global pool's licenses are handed out."""
    add("PROD", pool="prod")
    app = create_app(relay)
    assert call(app, "PUT", "/v1/nodes/n").status_code == 410
    add("GLOBAL")
    assert call(app, "PUT", "/v1/nodes/n").json["license_key"] == "GLOBAL"


def test_empty_header_counts_as_absent(relay: Relay, add: AddLicense, call) -> None:
    """An empty Relay-Pool value is the same as no header."""
    add("GLOBAL")
    resp = call(create_app(relay), "PUT", "/v1/nodes/n", {"Relay-Pool": ""})
    assert resp.status_code == 201
    assert resp.json["license_key"] == "GLOBAL"


def test_header_name_is_case_insensitive(relay: Relay, add: AddLicense, call) -> None:
    """The header name may be written in any case."""
    add("PROD", pool="prod")
    resp = call(create_app(relay), "PUT", "/v1/nodes/n", {"relay-pool": "prod"})
    assert resp.status_code == 201


def test_unknown_pool_header_is_400(relay: Relay, add: AddLicense, call) -> None:
    """A header naming a pool that does not exist is 400 invalid pool header."""
    add("PROD", pool="prod")
    resp = call(create_app(relay), "PUT", "/v1/nodes/n", {"Relay-Pool": "nonexistent"})
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/json"
    assert resp.text == '{"error":"invalid pool header"}\n'


def test_pool_value_is_case_sensitive(relay: Relay, add: AddLicense, call) -> None:
    """``Prod`` is not the pool ``prod``."""
    add("PROD", pool="prod")
    resp = call(create_app(relay), "PUT", "/v1/nodes/n", {"Relay-Pool": "Prod"})
    assert resp.status_code == 400


def test_header_conflicting_with_configured_pool_is_400(
    relay: Relay, add: AddLicense, call
) -> None:
    """With a configured pool, another pool in the header is 400 unsupported pool header."""
    lic = add("PROD", pool="prod")
    add("DEV", pool="dev")
    app = create_app(relay, pool="prod")
    for method in ("PUT", "DELETE"):
        resp = call(app, method, "/v1/nodes/n", {"Relay-Pool": "dev"})
        assert resp.status_code == 400
        assert resp.text == '{"error":"unsupported pool header"}\n'
    assert relay.get_license(lic.guid).node_id is None


def test_configured_pool_with_matching_or_no_header(relay: Relay, add: AddLicense, call) -> None:
    """With a configured pool, the same name or no header both claim and release in it."""
    add("PROD", pool="prod")
    add("GLOBAL")
    app = create_app(relay, pool="prod")
    for headers in ({"Relay-Pool": "prod"}, {}):
        resp = call(app, "PUT", "/v1/nodes/n", headers)
        assert resp.status_code == 201
        assert resp.json["license_key"] == "PROD"
        assert call(app, "DELETE", "/v1/nodes/n", headers).status_code == 204


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_unknown_configured_pool_is_400(relay: Relay, add: AddLicense, call, method: str) -> None:
    """A configured pool that does not exist answers invalid pool header (DELETE: for a holder)."""
    add("GLOBAL")
    assert call(create_app(relay), "PUT", "/v1/nodes/n").status_code == 201
    resp = call(create_app(relay, pool="missing"), method, "/v1/nodes/n")
    assert resp.status_code == 400
    assert resp.text == '{"error":"invalid pool header"}\n'


def test_empty_configured_pool_means_none(relay: Relay, add: AddLicense, call) -> None:
    """``pool=""`` is the same as no configured pool."""
    add("GLOBAL")
    add("PROD", pool="prod")
    app = create_app(relay, pool="")
    assert call(app, "PUT", "/v1/nodes/a").json["license_key"] == "GLOBAL"
    assert call(app, "PUT", "/v1/nodes/b", {"Relay-Pool": "prod"}).json["license_key"] == "PROD"


def test_empty_pool_is_gone(relay: Relay, add: AddLicense, call) -> None:
    """A pool whose licenses are all leased answers 410 to the next node."""
    add("DEV", pool="dev")
    add("PROD", pool="prod")
    app = create_app(relay)
    assert call(app, "PUT", "/v1/nodes/a", {"Relay-Pool": "dev"}).status_code == 201
    resp = call(app, "PUT", "/v1/nodes/b", {"Relay-Pool": "dev"})
    assert resp.status_code == 410
    assert resp.text == '{"error":"no licenses available"}\n'

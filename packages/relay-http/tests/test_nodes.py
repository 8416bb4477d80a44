"""PUT and DELETE /v1/nodes/{fingerprint}: statuses, exact bodies and headers (spec §3.5, §3.6)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from relay_core import License, Relay, StorageBusyError, StorageError
from relay_core.testing import FrozenClock
from relay_http import create_app

T0 = 1764949490
AddLicense = Callable[..., License]


def _holder(relay: Relay, guid: str) -> str | None:
    """The fingerprint of the node holding the license, or None when it is free."""
    node_id = relay.get_license(guid).node_id
    if node_id is None:
        return None
    node = relay.get_node(node_id)
    assert node is not None
    return node.fingerprint


# -- PUT: claim or extend ----------------------------------------------------------------------


def test_claim_creates_lease_with_exact_body(relay: Relay, add: AddLicense, call) -> None:
    """A new node gets 201 with the stored file in base64, the key and the expiry, in order."""
    lic = add("KEY-1")
    resp = call(create_app(relay), "PUT", "/v1/nodes/node-1")
    assert resp.status_code == 201
    assert resp.headers["content-type"] == "application/json"
    file_b64 = base64.b64encode(lic.file).decode()
    assert resp.text == (
        f'{{"license_file":"{file_b64}","license_key":"KEY-1",'
        f'"expires_at":{T0 + 60},"expires_in":60}}\n'
    )
    assert base64.b64decode(resp.json["license_file"]) == lic.file
    assert _holder(relay, lic.guid) == "node-1"


def test_claim_again_extends_with_ttl(
    make_relay, add: AddLicense, clock: FrozenClock, call
) -> None:
    """The same node claiming again gets 202 with expires_at = now + TTL and expires_in = TTL."""
    relay = make_relay(ttl=15)
    add("KEY-1", into=relay)
    app = create_app(relay)
    assert call(app, "PUT", "/v1/nodes/n").status_code == 201
    clock.advance(5)
    resp = call(app, "PUT", "/v1/nodes/n")
    assert resp.status_code == 202
    assert resp.headers["content-type"] == "application/json"
    assert resp.text == f'{{"expires_at":{T0 + 5 + 15},"expires_in":15}}\n'
    node_id = relay.list_licenses()[0].node_id
    node = relay.get_node(node_id or 0)
    assert node is not None
    assert node.last_heartbeat_at == T0 + 5


def test_claim_again_without_heartbeats_conflicts(make_relay, add: AddLicense, call) -> None:
    """With heartbeats off a second claim by the holder is 409 with the reference's body."""
    relay = make_relay(heartbeats=False)
    add("KEY-1", into=relay)
    app = create_app(relay)
    assert call(app, "PUT", "/v1/nodes/n").status_code == 201
    resp = call(app, "PUT", "/v1/nodes/n")
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/json"
    assert resp.text == '{"error":"failed to claim license due to conflict"}\n'


def test_claim_with_no_free_license_is_gone(relay: Relay, add: AddLicense, call) -> None:
    """When the pool has no free license the answer is 410 and no node is activated."""
    lic = add("KEY-1")
    app = create_app(relay)
    assert call(app, "PUT", "/v1/nodes/first").status_code == 201
    resp = call(app, "PUT", "/v1/nodes/second")
    assert resp.status_code == 410
    assert resp.text == '{"error":"no licenses available"}\n'
    assert _holder(relay, lic.guid) == "first"


def test_claim_in_empty_database_is_gone(relay: Relay, call) -> None:
    """An empty database answers 410."""
    resp = call(create_app(relay), "PUT", "/v1/nodes/n")
    assert resp.status_code == 410
    assert resp.json == {"error": "no licenses available"}


def test_cross_pool_claim_conflicts(relay: Relay, add: AddLicense, call) -> None:
    """A node holding a lease in one pool gets 409 claiming in another pool with a free license."""
    add("KEY-P", pool="prod")
    add("KEY-D", pool="dev")
    app = create_app(relay)
    assert call(app, "PUT", "/v1/nodes/n", {"Relay-Pool": "prod"}).status_code == 201
    resp = call(app, "PUT", "/v1/nodes/n", {"Relay-Pool": "dev"})
    assert resp.status_code == 409
    assert resp.text == '{"error":"failed to claim license due to conflict"}\n'


def test_lifo_claim_gets_newest_license(
    make_relay, add: AddLicense, clock: FrozenClock, call
) -> None:
    """With the lifo strategy the license added last is leased first."""
    relay = make_relay(strategy="lifo")
    add("OLD", into=relay)
    clock.advance(1)
    add("NEW", into=relay)
    resp = call(create_app(relay), "PUT", "/v1/nodes/n")
    assert resp.status_code == 201
    assert resp.json["license_key"] == "NEW"


def test_storage_failure_on_claim_is_500(failing_relay, call) -> None:
    """A store failure during a claim is 500 with the reference's body."""
    resp = call(create_app(failing_relay(StorageError("disk I/O error"))), "PUT", "/v1/nodes/n")
    assert resp.status_code == 500
    assert resp.headers["content-type"] == "application/json"
    assert resp.text == '{"error":"failed to claim license"}\n'


def test_unexpected_exception_is_500(failing_relay, call) -> None:
    """A bug (a non-Relay exception) is answered 500 with the JSON body, not a traceback."""
    resp = call(create_app(failing_relay(RuntimeError("boom"))), "DELETE", "/v1/nodes/n")
    assert resp.status_code == 500
    assert resp.text == '{"error":"failed to release license"}\n'


def test_busy_store_is_503_with_retry_after(failing_relay, call) -> None:
    """A store locked beyond its busy timeout is 503 with Retry-After, so clients back off."""
    app = create_app(failing_relay(StorageBusyError("database is locked")))
    resp = call(app, "PUT", "/v1/nodes/n")
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "1"
    assert resp.text == '{"error":"failed to claim license"}\n'


# -- DELETE: release ---------------------------------------------------------------------------


def test_release_frees_license_with_empty_204(relay: Relay, add: AddLicense, call) -> None:
    """Releasing a held lease is 204 with no body but a JSON Content-Type, and frees the license."""
    lic = add("KEY-1")
    app = create_app(relay)
    assert call(app, "PUT", "/v1/nodes/n").status_code == 201
    resp = call(app, "DELETE", "/v1/nodes/n")
    assert resp.status_code == 204
    assert resp.content == b""
    assert resp.headers["content-type"] == "application/json"
    assert _holder(relay, lic.guid) is None


def test_release_unknown_node_is_404(relay: Relay, call) -> None:
    """Releasing for a node that holds nothing is 404 with the exact body."""
    resp = call(create_app(relay), "DELETE", "/v1/nodes/nobody")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    assert resp.text == '{"error":"claim not found"}\n'


def test_release_in_wrong_pool_is_404_and_keeps_lease(relay: Relay, add: AddLicense, call) -> None:
    """A release naming another pool is 404 and the lease stays; the right pool then frees it."""
    lic = add("KEY-P", pool="prod")
    add("KEY-D", pool="dev")
    app = create_app(relay)
    assert call(app, "PUT", "/v1/nodes/n", {"Relay-Pool": "prod"}).status_code == 201
    resp = call(app, "DELETE", "/v1/nodes/n", {"Relay-Pool": "dev"})
    assert resp.text == '{"error":"claim not found"}\n'
    assert resp.status_code == 404
    assert _holder(relay, lic.guid) == "n"
    assert call(app, "DELETE", "/v1/nodes/n", {"Relay-Pool": "prod"}).status_code == 204
    assert _holder(relay, lic.guid) is None


def test_release_checks_node_before_pool(relay: Relay, add: AddLicense, call) -> None:
    """An unknown node with a bogus pool header gets 404; a known node with it gets 400."""
    add("KEY-1")
    app = create_app(relay)
    assert call(app, "DELETE", "/v1/nodes/ghost", {"Relay-Pool": "bogus"}).status_code == 404
    assert call(app, "PUT", "/v1/nodes/n").status_code == 201
    resp = call(app, "DELETE", "/v1/nodes/n", {"Relay-Pool": "bogus"})
    assert resp.status_code == 400
    assert resp.text == '{"error":"invalid pool header"}\n'


def test_storage_failure_on_release_is_500(failing_relay, call) -> None:
    """A store failure during a release is 500 with the reference's body."""
    resp = call(create_app(failing_relay(StorageError("disk I/O error"))), "DELETE", "/v1/nodes/n")
    assert resp.status_code == 500
    assert resp.text == '{"error":"failed to release license"}\n'


def test_released_node_claims_again(relay: Relay, add: AddLicense, call) -> None:
    """A node that released its lease gets a new one (201) on its next claim."""
    add("KEY-1")
    app = create_app(relay)
    assert call(app, "PUT", "/v1/nodes/n").status_code == 201
    assert call(app, "DELETE", "/v1/nodes/n").status_code == 204
    assert call(app, "PUT", "/v1/nodes/n").status_code == 201


# -- fingerprints ------------------------------------------------------------------------------


def test_percent_encoded_fingerprint_is_decoded(relay: Relay, add: AddLicense, call) -> None:
    """``abc%20def`` in the path is the fingerprint ``abc def``."""
    lic = add("KEY-1")
    app = create_app(relay)
    assert call(app, "PUT", "/v1/nodes/abc%20def").status_code == 201
    assert _holder(relay, lic.guid) == "abc def"
    assert call(app, "DELETE", "/v1/nodes/abc def").status_code == 204


def test_encoded_slash_matches_no_route(relay: Relay, call) -> None:
    """``a%2Fb`` decodes to a path with another segment, so no route matches (404)."""
    resp = call(create_app(relay), "PUT", "/v1/nodes/a%2Fb")
    assert resp.status_code == 404
    assert resp.json == {"error": "not found"}


def test_empty_fingerprint_matches_no_route(relay: Relay, call) -> None:
    """``/v1/nodes/`` is 404 for every method: a fingerprint is at least one character."""
    app = create_app(relay)
    for method in ("PUT", "DELETE", "GET"):
        resp = call(app, method, "/v1/nodes/")
        assert resp.status_code == 404
        assert resp.json == {"error": "not found"}


@pytest.mark.parametrize(
    ("fingerprint", "status"),
    [
        ("a" * 1024, 201),
        ("a" * 1025, 400),
        ("\u00e9" * 512, 201),  # 1024 bytes in UTF-8
        ("\u00e9" * 512 + "a", 400),
        ("\U0001f600" * 257, 400),  # 257 characters, 1028 bytes
    ],
)
def test_fingerprint_limit_is_1024_utf8_bytes(
    relay: Relay, add: AddLicense, call, fingerprint: str, status: int
) -> None:
    """Fingerprints up to 1024 UTF-8 bytes are accepted; longer ones get 400 on PUT and DELETE."""
    add("KEY-1")
    app = create_app(relay)
    resp = call(app, "PUT", "/v1/nodes/" + fingerprint)
    assert resp.status_code == status
    if status == 400:
        assert resp.text == '{"error":"fingerprint is longer than 1024 bytes"}\n'
        assert relay.list_licenses()[0].node_id is None
        assert call(app, "DELETE", "/v1/nodes/" + fingerprint).status_code == 400

"""The OpenAPI document: valid 3.1, identical to docs/openapi.json, served as shipped, and
naming every route the app has."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import falcon.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from relay_core import Relay, StorageUnavailableError, WaitQueue
from relay_core.testing import LicenseWriter, MemoryStore
from relay_http import WaitRoom, create_app
from relay_http.access import NewNodeLimit, NodeAccess, WatchedFile, read_allow_list, read_tokens
from relay_http.metrics import Metrics
from relay_http.openapi import openapi_document
from relay_http.wire import JSON

from .conftest import T0, Call

DOCS = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_the_shipped_document_is_the_docs_one_and_valid() -> None:
    shipped = openapi_document()
    assert shipped == DOCS.read_bytes(), "docs/openapi.json and relay_http/openapi.json differ"
    validate(json.loads(shipped))


def test_the_server_serves_it(relay: Relay, call: Call) -> None:
    resp = call(create_app(relay), "GET", "/v1/openapi.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.content == DOCS.read_bytes()
    assert "relay-clock" in resp.headers


def test_every_route_of_the_app_is_documented(relay: Relay) -> None:
    app = create_app(relay, admin_token="t", metrics=Metrics())
    routes = set()

    def walk(nodes: list) -> None:  # type: ignore[type-arg]
        for node in nodes:
            if node.resource is not None:
                routes.add(node.uri_template.replace("{fingerprint:fp}", "{fingerprint}"))
            walk(node.children)

    walk(app._router._roots)
    documented = set(json.loads(openapi_document())["paths"])
    assert routes == documented


def _resolve(node: Any, document: dict[str, Any]) -> Any:
    """`node` with every ``$ref`` inlined (the document has no recursive references)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _resolve(target, document)
        return {key: _resolve(value, document) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(value, document) for value in node]
    return node


def _conforms(method: str, template: str, resp: falcon.testing.Result) -> None:
    """The answer's status is documented for the operation, with its required headers, every
    documented header it carries matches its schema, and so does the body."""
    document = json.loads(openapi_document())
    operation = _resolve(document["paths"][template][method.lower()], document)
    assert resp.status[:3] in operation["responses"], f"{method} {template}: {resp.status}"
    answer = operation["responses"][resp.status[:3]]
    for name, header in answer.get("headers", {}).items():
        value = resp.headers.get(name.lower())
        if value is None:
            assert not header.get("required"), f"{name} missing from {resp.status}"
            continue
        Draft202012Validator(header["schema"]).validate(value)
    media = resp.headers.get("content-type")
    if media is None:
        assert "content" not in answer
        return
    schema = answer["content"][media]["schema"]
    Draft202012Validator(schema).validate(resp.json if media == JSON else resp.text)


class _Unreachable(MemoryStore):
    def check(self) -> None:
        raise StorageUnavailableError("connection refused")


NODE = "/v1/nodes/{fingerprint}"


def test_the_new_answers_are_documented(
    make_relay: Callable[..., Relay], writer: LicenseWriter, call: Call, tmp_path: Path
) -> None:
    """Answers of the waiting, trust, dashboard and usage features, and the health check's 503,
    driven in process, each conform to the document (status, headers, body)."""
    relay = make_relay(queue=WaitQueue())
    relay.add_licenses(
        [(writer.license(key=f"K{n}", issued=T0 - 60), f"K{n}") for n in range(2)],  # type: ignore[misc]
        public_key=writer.public_key,
    )
    tokens = tmp_path / "tokens"
    tokens.write_text("node-token\n")
    allow = tmp_path / "allow"
    allow.write_text("node-*\n")
    access = NodeAccess(
        tokens=WatchedFile(tokens, read_tokens, what="token file"),
        allow=WatchedFile(allow, read_allow_list, what="allow-list"),
        limit=NewNodeLimit(1),
    )
    app = create_app(
        relay,
        signing_secret="sig",
        signing_key=Ed25519PrivateKey.from_private_bytes(bytes(range(32))),
        access=access,
        admin_token="admin",
        waiting=WaitRoom(relay, max_wait=1),
    )
    node = {"Authorization": "Bearer node-token", "Relay-Nonce": "n0nce"}
    basic = "Basic " + base64.b64encode(b"admin:admin").decode()
    for method, template, path, headers, status in [
        ("PUT", NODE, "/v1/nodes/node-a", {**node, "Prefer": "wait=5"}, "201"),
        ("PUT", NODE, "/v1/nodes/node-a", node, "202"),
        ("PUT", NODE, "/v1/nodes/node-b", {"Relay-Nonce": "x"}, "401"),
        ("DELETE", NODE, "/v1/nodes/node-b", {}, "401"),
        ("PUT", NODE, "/v1/nodes/other", node, "403"),
        ("PUT", NODE, "/v1/nodes/node-b", {**node, "Prefer": "wait=0"}, "429"),
        ("PUT", NODE, "/v1/nodes/node-a", {**node, "Relay-Nonce": "a b"}, "400"),
        ("GET", "/v1/admin/pools", "/v1/admin/pools", {"Authorization": basic}, "200"),
        ("GET", "/v1/admin/usage", "/v1/admin/usage?every=60", {"Authorization": basic}, "200"),
        ("GET", "/v1/admin/usage", "/v1/admin/usage?since=x", {"Authorization": basic}, "400"),
        ("GET", "/v1/admin/usage", "/v1/admin/usage?pool=nope", {"Authorization": basic}, "404"),
        ("GET", "/v1/admin/usage", "/v1/admin/usage", {"Authorization": "Bearer no"}, "401"),
        ("GET", "/dashboard", "/dashboard", {"Authorization": basic}, "200"),
        ("GET", "/dashboard", "/dashboard", {"Authorization": "Bearer admin"}, "401"),
    ]:
        resp = call(app, method, path, headers)
        assert resp.status[:3] == status, (method, path, resp.status, resp.text)
        _conforms(method, template, resp)
        if status == "201":
            assert resp.headers["preference-applied"] == "wait=1"
            assert resp.headers["relay-nonce"] == "n0nce"
            assert ",v2=" in resp.headers["relay-signature"]
            assert ",ed25519=" in resp.headers["relay-signature"]
        if status == "200" and path == "/v1/admin/pools":
            assert resp.json[0]["waiting"] == 0
        if path.endswith("every=60"):
            assert resp.json, "no usage rows to check"

    # A full pool: a claim that asked not to wait is refused at once, saying so.
    relay.claim("node-z", None)
    full = create_app(relay, waiting=WaitRoom(relay, max_wait=1))
    resp = call(full, "PUT", "/v1/nodes/node-c", {"Prefer": "wait=0"})
    assert resp.status[:3] == "410"
    assert resp.headers["preference-applied"] == "wait=0"
    _conforms("PUT", NODE, resp)
    # Every waiting place taken: 410 with Retry-After.
    no_room = create_app(relay, waiting=WaitRoom(relay, max_wait=1, max_waiting=0))
    resp = call(no_room, "PUT", "/v1/nodes/node-c", {"Prefer": "wait=1"})
    assert resp.status[:3] == "410"
    assert resp.headers["retry-after"] == "1"
    _conforms("PUT", NODE, resp)

    down = Relay(_Unreachable(), clock=relay.clock)
    resp = call(create_app(down), "GET", "/v1/health")
    assert resp.status[:3] == "503"
    assert resp.json == {"error": "database unavailable"}
    _conforms("GET", "/v1/health", resp)

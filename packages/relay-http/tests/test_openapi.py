"""The OpenAPI document: valid 3.1, identical to docs/openapi.json, served as shipped, and
naming every route the app has."""

from __future__ import annotations

import json
from pathlib import Path

from openapi_spec_validator import validate
from relay_core import Relay
from relay_http import create_app
from relay_http.metrics import Metrics
from relay_http.openapi import openapi_document

from .conftest import Call

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

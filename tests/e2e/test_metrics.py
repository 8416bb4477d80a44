"""`GET /metrics` of a live `relay serve`, parsed with prometheus_client's parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from .conftest import ServerFactory, Workspace


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_after_five_claims_two_releases_and_a_410(
    ws: Workspace, serve: ServerFactory
) -> None:
    ws.add(*[ws.license(f"lic{n}") for n in range(5)])
    server = serve()
    for n in range(5):
        assert server.claim(f"node-{n}").status == 201
    assert server.claim("node-5").status == 410
    for n in range(2):
        assert server.release(f"node-{n}").status == 204
    resp = server.request("GET", "/metrics")
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = samples(resp.text)
    claims = {
        dict(labels)["result"]: value
        for (name, labels), value in got.items()
        if name == "relay_claims_total"
    }
    assert claims == {"created": 5, "exhausted": 1}
    releases = {
        dict(labels)["result"]: value
        for (name, labels), value in got.items()
        if name == "relay_releases_total"
    }
    assert releases == {"released": 2}
    pool = (("pool", ""),)
    assert got[("relay_licenses", pool)] == 5
    assert got[("relay_licenses_leased", pool)] == 3
    assert got[("relay_licenses_expired", pool)] == 0
    assert got[("relay_nodes_active", pool)] == 3
    assert got[("relay_culled_total", ())] == 0
    by_status = {
        dict(labels)["status"]: value
        for (name, labels), value in got.items()
        if name == "relay_request_duration_seconds_count" and dict(labels)["method"] == "PUT"
    }
    assert by_status == {"201": 5, "410": 1}


def test_no_metrics_turns_the_route_off(ws: Workspace, serve: ServerFactory) -> None:
    assert serve("--no-metrics").request("GET", "/metrics").status == 404
    assert serve(env={"RELAY_NO_METRICS": "1"}).request("GET", "/metrics").status == 404

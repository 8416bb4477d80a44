"""/metrics in process: parsed back with prometheus_client's own parser."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families
from relay_core import License, Relay
from relay_core.testing import FrozenClock
from relay_http import create_app
from relay_http.metrics import MAX_POOL_LABELS, Metrics

from .conftest import Call

NODE_ROUTE = "/v1/nodes/{fingerprint:fp}"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_and_gauges_after_claims_releases_and_a_410(
    make_relay: Callable[..., Relay], add: Callable[..., License], call: Call, clock: FrozenClock
) -> None:
    metrics = Metrics()
    relay = make_relay(events=metrics)
    for n in range(5):
        add(f"K{n}", into=relay)
    add("P0", pool="p", into=relay)
    app = create_app(relay, metrics=metrics)
    for n in range(5):
        assert call(app, "PUT", f"/v1/nodes/n{n}").status_code == 201
    assert call(app, "PUT", "/v1/nodes/n5").status_code == 410
    for n in range(2):
        assert call(app, "DELETE", f"/v1/nodes/n{n}").status_code == 204
    resp = call(app, "GET", "/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    got = samples(resp.text)
    pool = (("pool", ""),)
    assert got[("relay_claims_total", (("pool", ""), ("result", "created")))] == 5
    assert got[("relay_claims_total", (("pool", ""), ("result", "exhausted")))] == 1
    assert got[("relay_releases_total", (("pool", ""), ("result", "released")))] == 2
    assert got[("relay_culled_total", ())] == 0
    assert got[("relay_licenses", pool)] == 5
    assert got[("relay_licenses_leased", pool)] == 3
    assert got[("relay_licenses_free", pool)] == 2
    assert got[("relay_licenses_expired", pool)] == 0
    assert got[("relay_nodes_active", pool)] == 3
    assert got[("relay_licenses", (("pool", "p"),))] == 1
    assert got[("relay_licenses_leased", (("pool", "p"),))] == 0
    count = "relay_request_duration_seconds_count"
    route = (("method", "PUT"), ("route", NODE_ROUTE))
    assert got[(count, (*route, ("status", "201")))] == 5
    assert got[(count, (*route, ("status", "410")))] == 1
    assert got[(count, (("method", "DELETE"), ("route", NODE_ROUTE), ("status", "204")))] == 2
    assert not any(
        name == "relay_claims_total" and dict(labels).get("result") == "extended"
        for name, labels in got
    )

    clock.advance(61)
    relay.cull()
    after = samples(call(app, "GET", "/metrics").text)
    assert after[("relay_culled_total", ())] == 3
    assert after[("relay_licenses_leased", pool)] == 0
    assert after[(count, (("method", "GET"), ("route", "/metrics"), ("status", "200")))] == 1


def test_two_apps_in_one_process_count_apart(
    make_relay: Callable[..., Relay], add: Callable[..., License], call: Call
) -> None:
    first, second = Metrics(), Metrics()
    relay_a, relay_b = make_relay(events=first), make_relay(events=second)
    add("A", into=relay_a)
    app_a = create_app(relay_a, metrics=first)
    app_b = create_app(relay_b, metrics=second)
    assert call(app_a, "PUT", "/v1/nodes/x").status_code == 201
    created = ("relay_claims_total", (("pool", ""), ("result", "created")))
    assert samples(call(app_a, "GET", "/metrics").text)[created] == 1
    assert created not in samples(call(app_b, "GET", "/metrics").text)


def test_without_metrics_there_is_no_route(relay: Relay, call: Call) -> None:
    assert call(create_app(relay), "GET", "/metrics").status_code == 404


def test_unmatched_paths_share_one_label(relay: Relay, call: Call) -> None:
    metrics = Metrics()
    app = create_app(relay, metrics=metrics)
    for n in range(3):
        assert call(app, "GET", f"/random/{n}").status_code == 404
    got = samples(call(app, "GET", "/metrics").text)
    key = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert got[("relay_request_duration_seconds_count", key)] == 3


def test_the_pool_label_takes_a_bounded_number_of_values() -> None:
    """A node may name any pool in Relay-Pool; past MAX_POOL_LABELS names count as <other>."""
    from relay_core import ReleaseResult

    metrics = Metrics()
    for n in range(MAX_POOL_LABELS + 5):
        metrics.on_release(f"pool-{n}", ReleaseResult.NOT_FOUND)
    text = metrics.render().decode()
    got = samples(text)
    pools = {dict(labels)["pool"] for name, labels in got if name == "relay_releases_total"}
    assert len(pools) == MAX_POOL_LABELS + 1
    assert got[("relay_releases_total", (("pool", "<other>"), ("result", "not_found")))] == 5


def test_waiting_gauge_and_wait_histogram(
    make_relay: Callable[..., Relay], add: Callable[..., License], call: Call
) -> None:
    """With a wait queue, relay_waiting{pool} reads its line and relay_wait_seconds counts
    each parked claim by outcome."""
    from relay_core import WaitQueue

    metrics = Metrics()
    queue = WaitQueue()
    relay = make_relay(events=metrics, queue=queue)
    add("K0", into=relay)
    app = create_app(relay, metrics=metrics)
    got = samples(call(app, "GET", "/metrics").text)
    assert got[("relay_waiting", (("pool", ""),))] == 0
    ticket = queue.join(None, "waiter", deadline=relay.clock.now() + 30)
    queue.join(None, "later", deadline=relay.clock.now() + 30)
    got = samples(call(app, "GET", "/metrics").text)
    assert got[("relay_waiting", (("pool", ""),))] == 2
    queue.leave(ticket)
    metrics.observe_wait(None, 2.0, True)
    metrics.observe_wait(None, 30.0, False)
    metrics.observe_wait(None, 0.3, True)
    got = samples(call(app, "GET", "/metrics").text)
    assert got[("relay_waiting", (("pool", ""),))] == 1
    granted = (("pool", ""), ("result", "granted"))
    assert got[("relay_wait_seconds_count", granted)] == 2
    assert got[("relay_wait_seconds_sum", granted)] == 2.3
    assert got[("relay_wait_seconds_count", (("pool", ""), ("result", "refused")))] == 1
    assert got[("relay_wait_seconds_bucket", (("le", "0.5"), *granted))] == 1


def test_no_waiting_gauge_without_a_queue(relay: Relay, call: Call) -> None:
    metrics = Metrics()
    app = create_app(relay, metrics=metrics)
    assert not any(
        name == "relay_waiting" for name, _ in samples(call(app, "GET", "/metrics").text)
    )


def test_made_up_methods_share_one_label(relay: Relay, call: Call) -> None:
    """Each made-up method once added a label set; they now all count as ``other``, so a
    client cannot grow the histogram without bound."""
    metrics = Metrics()
    app = create_app(relay, metrics=metrics)
    for n in range(3):
        assert call(app, f"ZZMETHOD{n}", "/v1/health").status_code == 405
        assert call(app, f"ZZMETHOD{n}", f"/nothing/{n}").status_code == 404
    got = samples(call(app, "GET", "/metrics").text)
    methods = {dict(key)["method"] for name, key in got if name.startswith("relay_request")}
    assert methods == {"other"}
    health = (("method", "other"), ("route", "/v1/health"), ("status", "405"))
    assert got[("relay_request_duration_seconds_count", health)] == 3

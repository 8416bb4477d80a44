"""Prometheus metrics for one app: counters fed by Relay's domain events, gauges read from the
store at scrape time, and a request-duration histogram.

Everything lives on a `CollectorRegistry` of its own (never prometheus-client's global one), so
two apps in one process, and tests, never share a counter. The composition root makes one
`Metrics`, passes it to `Relay(events=...)` and to `create_app(metrics=...)`.

Cost on the request path: one dictionary lookup and one `inc`/`observe` per request; the label
children are cached, and the pool label takes at most `MAX_POOL_LABELS` values (a request names
any pool it likes; later names count under ``pool="<other>"``). The request histogram's labels
are bounded too: the route template (``unmatched`` for any other path), the method (a made-up
one counts as ``other``) and the status. The global pool is the empty
label value, which Prometheus shows as no label.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import falcon
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from relay_core import ClaimResult, Relay, ReleaseResult

from .middleware import method_label

__all__ = ["CONTENT_TYPE", "MAX_POOL_LABELS", "Metrics", "MetricsResource", "RequestMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text format `generate_latest` writes."""

MAX_POOL_LABELS = 1000
OTHER_POOL = "<other>"

_GAUGES = (
    ("relay_licenses", "Licenses in the pool.", "licenses"),
    ("relay_licenses_leased", "Licenses leased to a node.", "leased"),
    ("relay_licenses_free", "Licenses that can be leased now.", "free"),
    ("relay_licenses_expired", "Licenses whose file has expired.", "expired"),
    ("relay_nodes_active", "Active nodes holding a license of the pool.", "nodes_active"),
)


_WAITING = ("relay_waiting", "Claims waiting for a seat (Prefer: wait) in this process.")


class PoolGauges(Collector):
    """The pool gauges, read from the store (one grouped query) each time they are collected."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def describe(self) -> list[Metric]:
        families: list[Metric] = [
            GaugeMetricFamily(name, text, labels=["pool"]) for name, text, _ in _GAUGES
        ]
        if self._relay.queue is not None:
            families.append(GaugeMetricFamily(*_WAITING, labels=["pool"]))
        return families

    def collect(self) -> Iterator[Metric]:
        stats = self._relay.pool_stats()
        for name, text, field in _GAUGES:
            family = GaugeMetricFamily(name, text, labels=["pool"])
            for s in stats:
                family.add_metric([s.pool or ""], getattr(s, field))
            yield family
        queue = self._relay.queue
        if queue is not None:
            # Every pool, so a pool whose line emptied reads 0 rather than vanishing.
            counts = queue.counts()
            family = GaugeMetricFamily(*_WAITING, labels=["pool"])
            for pool in {s.pool for s in stats} | set(counts):
                family.add_metric([pool or ""], counts.get(pool, 0))
            yield family


class Metrics:
    """The app's registry and collectors; also the `relay_core.RelayEvents` observer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._claims = Counter(
            "relay_claims",
            "Claims by outcome: created, extended, conflict (409), exhausted (410).",
            ["pool", "result"],
            registry=self.registry,
        )
        self._releases = Counter(
            "relay_releases",
            "Releases by outcome: released, not_found (404), forced (by an operator).",
            ["pool", "result"],
            registry=self.registry,
        )
        self._culled = Counter(
            "relay_culled", "Nodes culled after missing heartbeats.", registry=self.registry
        )
        self._duration = Histogram(
            "relay_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self._waited = Histogram(
            "relay_wait_seconds",
            "How long claims with Prefer: wait waited, by outcome: granted, or refused (410 at "
            "the deadline, a hang-up or a stop).",
            ["pool", "result"],
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
            registry=self.registry,
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._pools: set[str] = set()
        self._mutex = threading.Lock()
        self._gauges: PoolGauges | None = None

    def watch(self, relay: Relay) -> None:
        """Collect the pool gauges of `relay` (once; an app does it when it is created)."""
        if self._gauges is None:
            self._gauges = PoolGauges(relay)
            self.registry.register(self._gauges)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            with self._mutex:
                child = self._children.get(key)
                if child is None:
                    child = self._children[key] = metric.labels(*labels)
        return child

    def _pool(self, pool: str | None) -> str:
        name = pool or ""
        if name in self._pools:
            return name
        with self._mutex:
            if len(self._pools) >= MAX_POOL_LABELS:
                return OTHER_POOL
            self._pools.add(name)
        return name

    # RelayEvents
    def on_claim(self, pool: str | None, result: ClaimResult) -> None:
        self._child(self._claims, self._pool(pool), result.value).inc()

    def on_release(self, pool: str | None, result: ReleaseResult) -> None:
        self._child(self._releases, self._pool(pool), result.value).inc()

    def on_cull(self, culled: int, released: int) -> None:
        if culled:
            self._culled.inc(culled)

    # the wait queue (relay_http.waiting.WaitRoom.on_waited)
    def observe_wait(self, pool: str | None, seconds: float, granted: bool) -> None:
        result = "granted" if granted else "refused"
        self._child(self._waited, self._pool(pool), result).observe(max(0.0, seconds))

    # the request histogram
    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self._child(self._duration, route, method, str(status)).observe(seconds)


class RequestMetrics:
    """Middleware timing every request into the histogram, labelled by route template."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.metrics_started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        started = req.context.get("metrics_started")
        if started is None:
            return
        route = req.uri_template if resource is not None else "unmatched"
        self._metrics.observe(
            route or "unmatched",
            method_label(req.method),
            resp.status_code,
            time.perf_counter() - started,
        )


class MetricsResource:
    """``GET /metrics``: the Prometheus text format."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE
        resp.data = self._metrics.render()

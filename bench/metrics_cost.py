"""CPU the Prometheus metrics add to one heartbeat, measured in isolation.

    .venv/bin/python bench/metrics_cost.py

Runs what `relay serve` does for metrics on each heartbeat (the request-histogram middleware and
the claim counter fed by `Relay`'s events) 50,000 times and prints the CPU time per heartbeat
(`time.process_time`, so other load on the machine does not count). Compare it with the server's
CPU per heartbeat from `bench/http.py` (``relay heartbeat cpu us/req``).
"""

from __future__ import annotations

import sys

# bench/http.py would shadow the standard library's `http`, which falcon imports.
if sys.path and sys.path[0] == __file__.rpartition("/")[0]:
    sys.path.append(sys.path.pop(0))

import statistics
import time

import falcon
import falcon.testing
from relay_core import ClaimResult
from relay_http.metrics import Metrics, RequestMetrics

N = 50_000


def once(metrics: Metrics, middleware: RequestMetrics, req: falcon.Request) -> float:
    resp = falcon.Response()
    resp.status = 202
    resource = object()
    started = time.process_time()
    for _ in range(N):
        middleware.process_request(req, resp)
        metrics.on_claim(None, ClaimResult.EXTENDED)
        middleware.process_response(req, resp, resource, True)
    return (time.process_time() - started) / N * 1e6


def main() -> None:
    metrics = Metrics()
    middleware = RequestMetrics(metrics)
    req = falcon.Request(falcon.testing.create_environ(path="/v1/nodes/n1", method="PUT"))
    req.uri_template = "/v1/nodes/{fingerprint:fp}"
    runs = [once(metrics, middleware, req) for _ in range(7)]
    print(
        f"metrics work per heartbeat: {statistics.median(runs):.2f} us "
        f"(median of 7 runs of {N}; min {min(runs):.2f}, max {max(runs):.2f})"
    )


if __name__ == "__main__":
    main()

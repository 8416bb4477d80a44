"""The WSGI app factory: routes, resources and the wiring of middleware and error handlers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import falcon
from falcon.routing import BaseConverter
from relay_core import ClaimStatus, Relay, StorageError

from .errors import (
    MAX_FINGERPRINT_BYTES,
    FingerprintTooLongError,
    PoolHeaderConflictError,
    install_error_handlers,
)
from .middleware import AccessLog, ClockSigning, Methods, PathCheck
from .waiting import WaitRoom
from .wire import JSON, error_body, lease_body

if TYPE_CHECKING:
    import cattrs
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from .access import NodeAccess
    from .metrics import Metrics

__all__ = ["Fingerprint", "Health", "Nodes", "create_app"]


class Fingerprint(BaseConverter):
    """Route converter for ``{fingerprint:fp}``: an empty segment (``/v1/nodes/``) matches no route."""

    def convert(self, value: str) -> str | None:
        return value or None


_CLAIM_STATUS = {ClaimStatus.CREATED: falcon.HTTP_201, ClaimStatus.EXTENDED: falcon.HTTP_202}


class Health:
    """``GET /v1/health``: 200 with an empty body.

    A store with a ``check()`` method (a database server, which can go away) is asked first;
    if it raises `StorageError`, the answer is 503 with a JSON error, so a load balancer stops
    sending nodes to a replica that cannot reach its database. SQLite is not asked.
    """

    def __init__(self, store: object = None) -> None:
        check = getattr(store, "check", None)
        self._check: Callable[[], object] | None = check if callable(check) else None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._check is not None:
            try:
                self._check()
            except StorageError:
                resp.status = falcon.HTTP_503
                resp.content_type = JSON
                resp.set_header("Retry-After", "1")
                resp.data = error_body("database unavailable")
                return
        resp.data = b""


class Nodes:
    """``/v1/nodes/{fingerprint}``: PUT claims or extends a lease, DELETE releases it."""

    def __init__(self, relay: Relay, pool: str | None, waiting: WaitRoom | None = None) -> None:
        self._relay = relay
        self._pool = pool or None
        self._waiting = waiting

    def _effective_pool(self, req: falcon.Request, fingerprint: str) -> str | None:
        """Checks the fingerprint's size and applies the Relay-Pool rules of spec §3.4."""
        if len(fingerprint) > MAX_FINGERPRINT_BYTES // 4 and (
            len(fingerprint.encode("utf-8", "surrogatepass")) > MAX_FINGERPRINT_BYTES
        ):
            raise FingerprintTooLongError()
        header = req.get_header("Relay-Pool") or None
        if header is None:
            return self._pool
        if self._pool is not None and header != self._pool:
            raise PoolHeaderConflictError(header, self._pool)
        return header

    def on_put(self, req: falcon.Request, resp: falcon.Response, fingerprint: str) -> None:
        pool = self._effective_pool(req, fingerprint)
        admit = req.context.get("admit_new_node")
        waiting = self._waiting
        wait = None if waiting is None else waiting.applied_wait(req.get_header("Prefer"))
        if waiting is None or wait is None:
            lease = self._relay.claim(fingerprint, pool, admit=admit)
        else:
            lease = waiting.claim(
                fingerprint,
                pool,
                wait,
                disconnected=req.env.get("waitress.client_disconnected"),
                environ=req.env,
                applied=lambda: resp.set_header("Preference-Applied", f"wait={wait}"),
                admit=admit,
            )
        resp.status = _CLAIM_STATUS[lease.status]
        resp.content_type = JSON
        resp.data = lease_body(lease)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, fingerprint: str) -> None:
        self._relay.release(fingerprint, self._effective_pool(req, fingerprint))
        resp.status = falcon.HTTP_204
        resp.content_type = JSON


def create_app(
    relay: Relay,
    *,
    pool: str | None = None,
    signing_secret: str | None = None,
    signing_key: Ed25519PrivateKey | None = None,
    access: NodeAccess | None = None,
    admin_token: str | None = None,
    metrics: Metrics | None = None,
    converter: cattrs.Converter | None = None,
    waiting: WaitRoom | None = None,
) -> falcon.App[falcon.Request, falcon.Response]:
    """The node API over `relay`, serving licenses from `pool` (None or "" = the global pool).

    With a non-empty `signing_secret` or a `signing_key` every response carries
    `Relay-Signature`; `access` checks node tokens, the fingerprint allow-list and the new-node
    rate limit. With an `admin_token`, the admin API is mounted under ``/v1/admin``
    (`relay_http.admin`); with `metrics` (also passed to `Relay(events=...)` for the counters),
    ``GET /metrics``. JSON bodies of the admin API go through `converter` (default:
    `relay_core.convert`'s). With `waiting`, a claim with ``Prefer: wait=N`` waits for a seat.
    Reads no environment, so it can be mounted in any WSGI stack.
    """
    # The log and the timer start first: any later `process_request` may raise, and Falcon
    # still runs every `process_response` (see relay_http.middleware).
    signing = ClockSigning(relay.clock, signing_secret, signing_key)
    middleware: list[Any] = [AccessLog()]
    if metrics is not None:
        from .metrics import RequestMetrics

        middleware.append(RequestMetrics(metrics))
    middleware += [signing, PathCheck()]
    if access is not None:
        middleware.append(access)
    if admin_token:
        from .admin import AdminAuth

        middleware.append(AdminAuth(admin_token))
    middleware.append(Methods())
    app: falcon.App[falcon.Request, falcon.Response] = falcon.App(middleware=middleware)
    # Only node responses are JSON; the health check has no Content-Type (spec §3.3).
    app.resp_options.default_media_type = None  # type: ignore[assignment]
    app.req_options.strip_url_path_trailing_slash = False
    app.add_route("/v1/health", Health(relay.store))
    app.router_options.converters["fp"] = Fingerprint
    app.add_route("/v1/nodes/{fingerprint:fp}", Nodes(relay, pool, waiting))
    from .openapi import OpenApi

    app.add_route("/v1/openapi.json", OpenApi())
    if admin_token:
        from relay_core.convert import make_converter

        from .admin import add_admin_routes
        from .dashboard import add_dashboard_routes

        admin_converter = converter or make_converter()
        add_admin_routes(app, relay, admin_converter)
        add_dashboard_routes(app, relay, admin_converter, admin_token)
    if metrics is not None:
        from .metrics import MetricsResource

        metrics.watch(relay)
        app.add_route("/metrics", MetricsResource(metrics))
    install_error_handlers(app)
    return app

"""The operator's dashboard: one page served by the relay, fed by the admin API.

``GET /dashboard`` asks the browser for HTTP Basic credentials (user ``admin``, the admin token
as password) and serves `dashboard.html`: plain HTML, CSS and a little JavaScript, with no
asset from anywhere (the networks Relay runs in are air-gapped). The page then reads
``/v1/admin/pools``, ``/v1/admin/leases`` and ``/v1/admin/usage`` with the same credentials
(`AdminAuth` takes Basic as well as Bearer) and refreshes itself every few seconds.

A Content-Security-Policy allows exactly the page's own inline style and script (by hash) and
requests to this origin, so nothing injected into a fingerprint can run or call out.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources
from typing import Any

import cattrs
import falcon
from relay_core import PoolNotFoundError, Relay

from .admin import ADMIN_PREFIX, AdminPoolNotFoundError, basic_credentials_match
from .wire import JSON, go_json

__all__ = ["MAX_PERIODS", "MAX_TIME", "AdminUsage", "DashboardPage", "add_dashboard_routes", "page"]

MAX_TIME = 253_402_300_799
"""9999-12-31T23:59:59Z: the latest `since`/`until` (SQLite stores 64-bit integers)."""
MAX_PERIODS = 10_000
"""Periods one usage request may ask for (per pool): a chart, not a bulk export."""
_REALM = 'Basic realm="relay", charset="UTF-8"'


def page() -> tuple[bytes, str]:
    """The page's bytes and its Content-Security-Policy (hashes of its one style and script)."""
    html = resources.files(__package__).joinpath("dashboard.html").read_text("utf-8")

    def digest(tag: str) -> str:
        match = re.search(f"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
        if match is None:  # pragma: no cover - the page ships with both
            raise RuntimeError(f"dashboard.html has no <{tag}>")
        return base64.b64encode(hashlib.sha256(match.group(1).encode()).digest()).decode()

    policy = (
        "default-src 'none'; connect-src 'self'; img-src 'self'; "
        f"style-src 'sha256-{digest('style')}'; script-src 'sha256-{digest('script')}'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html.encode("utf-8"), policy


class DashboardPage:
    """``GET /dashboard``: the page, to a browser that sends the admin's Basic credentials."""

    def __init__(self, token: str) -> None:
        self._digest = hashlib.sha256(token.encode("utf-8")).digest()
        self._html, self._policy = page()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not basic_credentials_match(req.get_header("Authorization") or "", self._digest):
            raise falcon.HTTPUnauthorized(
                description="sign in as admin with the admin token", challenges=[_REALM]
            )
        resp.content_type = "text/html; charset=utf-8"
        resp.set_header("Content-Security-Policy", self._policy)
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "no-referrer")
        resp.data = self._html


def _seconds(
    req: falcon.Request, name: str, default: int | None, expected: str | None = None
) -> int | None:
    """The parameter as whole seconds, up to `MAX_TIME`; a 400 saying `expected` otherwise."""
    value = req.get_param(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_TIME:
        expected = expected or f"Unix seconds up to {MAX_TIME}"
        raise falcon.HTTPBadRequest(description=f"{name} must be {expected}")
    return int(value)


class AdminUsage:
    """``GET /v1/admin/usage?since=&until=[&every=][&pool=]``: `relay report`'s rows.

    Times are Unix seconds; `until` defaults to now and `since` to a day before it (never
    before 0); `every` (seconds, at least 60) splits the range into periods aligned in UTC.
    A report never covers the future: an `until` after now is cut to now (the current second
    included), since what is held now is not yet known to be held later.
    """

    def __init__(self, relay: Relay, converter: cattrs.Converter) -> None:
        self._relay = relay
        self._converter = converter

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        now = int(self._relay.clock.now()) + 1  # this second included
        until = _seconds(req, "until", now)
        assert until is not None
        until = min(until, now)
        since = _seconds(req, "since", max(0, until - 86400))
        assert since is not None
        every = _seconds(req, "every", None, "a whole number of seconds, at least 60")
        if since >= now:
            raise falcon.HTTPBadRequest(description="since must not be in the future")
        if since >= until:
            raise falcon.HTTPBadRequest(description="since must be before until")
        if every is not None and every < 60:
            raise falcon.HTTPBadRequest(description="every must be at least 60 seconds")
        if (until - since) / (every or (until - since)) > MAX_PERIODS:
            raise falcon.HTTPBadRequest(description=f"more than {MAX_PERIODS} periods")
        pool = req.get_param("pool") or None
        try:
            usage: list[Any] = self._relay.usage_report(
                since=since, until=until, every=every, pool=pool
            )
        except PoolNotFoundError:
            raise AdminPoolNotFoundError(pool or "") from None
        resp.content_type = JSON
        resp.data = go_json(self._converter.unstructure(usage))


def add_dashboard_routes(
    app: falcon.App[falcon.Request, falcon.Response],
    relay: Relay,
    converter: cattrs.Converter,
    token: str,
) -> None:
    """Mount ``/dashboard`` and ``/v1/admin/usage`` (behind `AdminAuth` like the admin API)."""
    app.add_route("/dashboard", DashboardPage(token))
    app.add_route(f"{ADMIN_PREFIX}/usage", AdminUsage(relay, converter))

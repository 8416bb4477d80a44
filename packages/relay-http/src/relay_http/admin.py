"""The admin API under ``/v1/admin``: who holds what, pool counts, licenses, force-release.

Mounted only when an admin token is configured; without one every ``/v1/admin/...`` path is an
ordinary 404. `AdminAuth` is the one gate: a middleware that answers 401 to any request under
``/v1/admin`` whose ``Authorization: Bearer <token>`` is missing or wrong (compared in constant
time); HTTP Basic credentials ``admin:<token>``, which the dashboard's browser sends, count
too. It runs inside `ClockSigning`, so a 401 is signed like every other answer, and the token
is never logged (the access log has no headers).

Bodies are JSON built by the converter the composition root hands in (see
`relay_core.convert`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING, Any

import falcon
from relay_core import PoolNotFoundError, Relay, RelayError

from .wire import JSON, go_json

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "ADMIN_PREFIX",
    "ADMIN_USER",
    "AdminAuth",
    "AdminPoolNotFoundError",
    "add_admin_routes",
    "basic_credentials_match",
]

ADMIN_PREFIX = "/v1/admin"
ADMIN_USER = "admin"
"""The user name of HTTP Basic credentials (the dashboard's browser sign-in); the password is
the admin token."""


def basic_credentials_match(header: str, token_digest: bytes) -> bool:
    """True when `header` is ``Basic base64(admin:<token>)`` for the token with this SHA-256.

    Compared as digests in constant time, like the bearer token.
    """
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    presented = hashlib.sha256(password.encode("utf-8", "surrogateescape")).digest()
    return hmac.compare_digest(presented, token_digest) and user == ADMIN_USER


class AdminPoolNotFoundError(RelayError):
    """Raised when an admin request's ``?pool=`` names no pool (404, not the node API's 400)."""

    def __init__(self, name: str) -> None:
        super().__init__("pool not found")
        self.name = name


class AdminAuth:
    """Answers 401 to every ``/v1/admin`` request without the right bearer token."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the admin token is empty")
        self._digest = hashlib.sha256(token.encode("utf-8")).digest()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        path = req.path
        if path != ADMIN_PREFIX and not path.startswith(ADMIN_PREFIX + "/"):
            return
        header = req.get_header("Authorization") or ""
        if basic_credentials_match(header, self._digest):
            return  # the dashboard's browser, signed in as admin
        scheme, _, given = header.partition(" ")
        presented = hashlib.sha256(given.strip().encode("utf-8", "surrogateescape")).digest()
        # Digests of equal length, compared in constant time: neither the position of the
        # first wrong byte nor the token's length shows in the time taken.
        if not hmac.compare_digest(presented, self._digest) or scheme.lower() != "bearer":
            raise falcon.HTTPUnauthorized(
                description="missing or invalid admin token", challenges=["Bearer"]
            )


def _pool(req: falcon.Request) -> str | None:
    return req.get_param("pool") or None


class _Resource:
    def __init__(self, relay: Relay, converter: cattrs.Converter) -> None:
        self._relay = relay
        self._converter = converter

    def _json(self, resp: falcon.Response, value: Any) -> None:
        resp.content_type = JSON
        resp.data = go_json(self._converter.unstructure(value))


class AdminLeases(_Resource):
    """``GET /v1/admin/leases[?pool=NAME]``: every active lease."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        pool = _pool(req)
        try:
            leases = self._relay.list_leases(pool)
        except PoolNotFoundError:
            raise AdminPoolNotFoundError(pool or "") from None
        self._json(resp, leases)


class AdminLease(_Resource):
    """``DELETE /v1/admin/leases/{fingerprint}[?pool=NAME]``: force-release, 204."""

    def on_delete(self, req: falcon.Request, resp: falcon.Response, fingerprint: str) -> None:
        pool = _pool(req)
        try:
            self._relay.force_release(fingerprint, pool)
        except PoolNotFoundError:
            raise AdminPoolNotFoundError(pool or "") from None
        resp.status = falcon.HTTP_204
        resp.content_type = JSON


class AdminPools(_Resource):
    """``GET /v1/admin/pools``: each pool's counts, the global pool (``null``) first."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._json(resp, self._relay.pool_stats())


class AdminLicenses(_Resource):
    """``GET /v1/admin/licenses[?pool=NAME]``: what ``relay ls --json`` prints."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        pool = _pool(req)
        try:
            rows = self._relay.license_rows(pool)
        except PoolNotFoundError:
            raise AdminPoolNotFoundError(pool or "") from None
        self._json(resp, rows)


def add_admin_routes(
    app: falcon.App[falcon.Request, falcon.Response], relay: Relay, converter: cattrs.Converter
) -> None:
    """Mount the admin resources (the caller adds `AdminAuth` to the middleware)."""
    app.add_route(f"{ADMIN_PREFIX}/leases", AdminLeases(relay, converter))
    app.add_route(f"{ADMIN_PREFIX}/leases/{{fingerprint:fp}}", AdminLease(relay, converter))
    app.add_route(f"{ADMIN_PREFIX}/pools", AdminPools(relay, converter))
    app.add_route(f"{ADMIN_PREFIX}/licenses", AdminLicenses(relay, converter))

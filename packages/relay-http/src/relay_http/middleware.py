"""Middleware run on every response, matched route or not: the clock and signature, the log,
the checks made before routing (the path's encoding, the method).

Signing is the outer layer and logging the inner one (spec §3.2): `t` is taken from the relay's
clock when the request starts, `Relay-Clock: <t>` is always set, and with a secret
`Relay-Signature: t=<t>,v1=<HMAC-SHA256(secret, "<t>.<body>")>` signs the exact body sent.
With an Ed25519 key an ``ed25519`` pair follows; a request's `Relay-Nonce` binds `v2` and
``ed25519`` to that request and is echoed (relay_core.signing, docs/api.md).

`AccessLog` is nevertheless the first middleware in the list: Falcon runs every
`process_response` even when an earlier `process_request` raised (a bad `Relay-Nonce`), so the
log's start time must be taken before anything can raise.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

import falcon
from falcon.constants import COMBINED_METHODS
from relay_core import Clock
from relay_core.signing import header, sign, valid_nonce

from .errors import PathEncodingError, PathEscapeError, log_path, wsgi_path, wsgi_text

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["AccessLog", "ClockSigning", "Methods", "PathCheck", "log_request"]

logger = logging.getLogger("relay")


class ClockSigning:
    """Stamps `Relay-Clock` and, when a secret is set, `Relay-Signature` on every response."""

    def __init__(
        self, clock: Clock, secret: str | None, key: Ed25519PrivateKey | None = None
    ) -> None:
        self.clock = clock
        self._secret = secret.encode("utf-8") if secret else None
        self._key = key

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        t = int(self.clock.now())
        req.context.t = t
        resp.set_header("Relay-Clock", str(t))
        req.context.nonce = None
        if self._key is None and self._secret is None:
            return
        nonce = req.get_header("Relay-Nonce")
        if nonce is not None:
            if not valid_nonce(nonce):
                raise falcon.HTTPBadRequest(description="invalid nonce header")
            req.context.nonce = nonce
            resp.set_header("Relay-Nonce", nonce)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        t = req.context.get("t")
        if t is None:  # Falcon refused the request before any process_request (WEBSOCKET)
            t = int(self.clock.now())
            resp.set_header("Relay-Clock", str(t))
        if self._key is None and self._secret is None:
            return
        # A HEAD response and a 204 carry no body, so the signature covers the empty body.
        body = b"" if req.method == "HEAD" or resp.status_code == 204 else resp.render_body()
        value = self.signature(
            t,
            body or b"",
            nonce=req.context.get("nonce"),
            method=req.method,
            path=raw_path(req.env),
        )
        if value is not None:
            resp.set_header("Relay-Signature", value)

    def signature(
        self, t: int, body: bytes, *, nonce: str | None = None, method: str = "", path: str = ""
    ) -> str | None:
        """The `Relay-Signature` value for `body` sent at `t`; None without secret or key."""
        if self._secret is None and self._key is None:
            return None
        if self._key is None and nonce is None:
            assert self._secret is not None
            return sign(self._secret, t, body)
        return header(
            t, body, secret=self._secret, key=self._key, nonce=nonce, method=method, path=path
        )

    def stamp(self, body: bytes) -> list[tuple[str, str]]:
        """`Relay-Clock` and `Relay-Signature` for an answer written outside Falcon (waitress's
        errors, a stop's 503): the request may not be parsed, so no nonce is bound."""
        t = int(self.clock.now())
        headers = [("Relay-Clock", str(t))]
        value = self.signature(t, body)
        if value is not None:
            headers.append(("Relay-Signature", value))
        return headers


def _target_path(environ: dict[str, Any]) -> str | None:
    """The path of the request line as sent (no query), when the WSGI server passes it on."""
    target = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    return target.partition("?")[0] if isinstance(target, str) else None


def raw_path(environ: dict[str, Any]) -> str:
    """The request target's path as the client sent it (percent-encoding kept, no query)."""
    target = _target_path(environ)
    if target is not None and target.startswith("/"):
        return target
    return urllib.parse.quote(wsgi_path(environ).encode("latin-1", "replace"), safe="/")


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class PathCheck:
    """400 for a path that cannot be read as exactly one string (see `InvalidPathError`)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        target = _target_path(req.env)
        if target is not None and _BAD_ESCAPE.search(target):
            raise PathEscapeError()
        path = wsgi_path(req.env)
        if not path.isascii():
            try:
                path.encode("latin-1").decode("utf-8")  # strict: no surrogates either
            except UnicodeError:
                raise PathEncodingError() from None


_ALLOWED: dict[type, str] = {}


def allowed_methods(resource: object) -> str:
    """The ``Allow`` value of a resource: its methods in Falcon's order, then ``OPTIONS``."""
    kind = type(resource)
    allowed = _ALLOWED.get(kind)
    if allowed is None:
        methods = [m for m in COMBINED_METHODS if hasattr(resource, f"on_{m.lower()}")]
        allowed = _ALLOWED[kind] = ", ".join([m for m in methods if m != "OPTIONS"] + ["OPTIONS"])
    return allowed


class Methods:
    """One ``Allow`` per path: ``OPTIONS`` answers 200 with it, any other method the path does not
    serve, made-up ones included, 405 with it (Part A §11; Falcon alone answers a method it does
    not know with 400, and leaves ``OPTIONS`` out of its own ``Allow``)."""

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        if resource is None:
            return
        allowed = allowed_methods(resource)
        if req.method == "OPTIONS" and not hasattr(resource, "on_options"):
            resp.status = falcon.HTTP_200
            resp.set_header("Allow", allowed)
            resp.data = b""
            resp.complete = True
        elif not hasattr(resource, f"on_{req.method.lower()}"):
            raise falcon.HTTPMethodNotAllowed(allowed.split(", "))


_STANDARD_METHODS = frozenset(falcon.constants.HTTP_METHODS)


def method_label(method: str) -> str:
    """A method for a metric label: the standard ones as they are, any other ``other``."""
    return method if method in _STANDARD_METHODS else "other"


def log_request(
    method: str,
    path: str,
    status: int,
    *,
    remote_addr: str | None,
    user_agent: str,
    seconds: float,
) -> None:
    """The INFO ``HTTP request`` line (spec §3.2); the formatter quotes client values."""
    logger.info(
        "HTTP request method=%s path=%s status=%s remote_addr=%s user_agent=%s duration=%.3fms",
        method,
        path,
        status,
        remote_addr,
        user_agent,
        seconds * 1000,
    )


class AccessLog:
    """Logs INFO ``HTTP request`` with method, path, status, remote address, agent and duration."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        if logger.isEnabledFor(logging.INFO):
            started = req.context.get("started")
            log_request(
                wsgi_text(req.method),
                log_path(req.env),
                resp.status_code,
                remote_addr=req.remote_addr,
                user_agent=wsgi_text(req.user_agent or ""),
                seconds=0.0 if started is None else time.perf_counter() - started,
            )

"""Middleware run on every response, matched route or not: the clock and signature, and the log.

Signing is the outer layer and logging the inner one (spec §3.2): `t` is taken from the relay's
clock when the request starts, `Relay-Clock: <t>` is always set, and with a secret
`Relay-Signature: t=<t>,v1=<HMAC-SHA256(secret, "<t>.<body>")>` signs the exact body sent.
With an Ed25519 key an ``ed25519`` pair follows; a request's `Relay-Nonce` binds `v2` and
``ed25519`` to that request and is echoed (relay_core.signing, docs/api.md).
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

import falcon
from relay_core import Clock
from relay_core.signing import header, sign, valid_nonce

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["AccessLog", "ClockSigning"]

logger = logging.getLogger("relay")


class ClockSigning:
    """Stamps `Relay-Clock` and, when a secret is set, `Relay-Signature` on every response."""

    def __init__(
        self, clock: Clock, secret: str | None, key: Ed25519PrivateKey | None = None
    ) -> None:
        self._clock = clock
        self._secret = secret.encode("utf-8") if secret else None
        self._key = key

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        t = int(self._clock.now())
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
        if self._secret is None and self._key is None:
            return
        # A HEAD response and a 204 carry no body, so the signature covers the empty body.
        body = b"" if req.method == "HEAD" or resp.status_code == 204 else resp.render_body()
        nonce = req.context.get("nonce")
        if self._key is None and nonce is None:
            assert self._secret is not None
            resp.set_header("Relay-Signature", sign(self._secret, req.context.t, body or b""))
            return
        value = header(
            req.context.t,
            body or b"",
            secret=self._secret,
            key=self._key,
            nonce=nonce,
            method=req.method,
            path=raw_path(req),
        )
        resp.set_header("Relay-Signature", value)


def raw_path(req: falcon.Request) -> str:
    """The request target's path as the client sent it (percent-encoding kept, no query)."""
    target = req.env.get("REQUEST_URI") or req.env.get("RAW_URI")
    if isinstance(target, str) and target.startswith("/"):
        return target.partition("?")[0]
    return urllib.parse.quote(req.env.get("SCRIPT_NAME", "") + req.path, safe="/")


class AccessLog:
    """Logs INFO ``HTTP request`` with method, path, status, remote address, agent and duration."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "HTTP request method=%s path=%s status=%s remote_addr=%s user_agent=%r "
                "duration=%.3fms",
                req.method,
                req.path,
                resp.status_code,
                req.remote_addr,
                req.user_agent or "",
                (time.perf_counter() - req.context.started) * 1000,
            )

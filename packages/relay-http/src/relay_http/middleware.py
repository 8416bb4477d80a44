"""Middleware run on every response, matched route or not: the clock and signature, and the log.

Signing is the outer layer and logging the inner one (spec §3.2): `t` is taken from the relay's
clock when the request starts, `Relay-Clock: <t>` is always set, and with a secret
`Relay-Signature: t=<t>,v1=<HMAC-SHA256(secret, "<t>.<body>")>` signs the exact body sent.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import falcon
from relay_core import Clock
from relay_core.signing import sign

__all__ = ["AccessLog", "ClockSigning"]

logger = logging.getLogger("relay")


class ClockSigning:
    """Stamps `Relay-Clock` and, when a secret is set, `Relay-Signature` on every response."""

    def __init__(self, clock: Clock, secret: str | None) -> None:
        self._clock = clock
        self._secret = secret.encode("utf-8") if secret else None

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        t = int(self._clock.now())
        req.context.t = t
        resp.set_header("Relay-Clock", str(t))

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        if self._secret is None:
            return
        # A HEAD response and a 204 carry no body, so the signature covers the empty body.
        body = b"" if req.method == "HEAD" or resp.status_code == 204 else resp.render_body()
        resp.set_header("Relay-Signature", sign(self._secret, req.context.t, body or b""))


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

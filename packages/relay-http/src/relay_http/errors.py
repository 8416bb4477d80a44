"""The one table mapping Relay's errors to HTTP statuses and JSON bodies.

Responders never catch exceptions: `relay_core` errors (and the two request errors defined here)
propagate to Falcon, which finds the most specific entry of `ERROR_TABLE` for the exception's
class. Falcon's own errors (no route, wrong method, bad request) are answered with the same JSON
shape, keeping their headers (e.g. `Allow`).
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import falcon
from relay_core import (
    ClaimConflictError,
    ClaimNotFoundError,
    LeaseNotFoundError,
    NoLicensesAvailableError,
    PoolNotFoundError,
    RelayError,
    StorageBusyError,
    StorageUnavailableError,
)

from .admin import AdminPoolNotFoundError
from .waiting import RETRY_AFTER_SECONDS, WaitingFullError
from .wire import JSON, error_body

__all__ = [
    "ERROR_TABLE",
    "MAX_FINGERPRINT_BYTES",
    "ErrorRule",
    "FingerprintTooLongError",
    "PoolHeaderConflictError",
    "install_error_handlers",
]

logger = logging.getLogger("relay")

MAX_FINGERPRINT_BYTES = 1024


class PoolHeaderConflictError(RelayError):
    """Raised when the Relay-Pool header names another pool than the server is configured with."""

    def __init__(self, header: str, configured: str) -> None:
        super().__init__("unsupported pool header")
        self.header = header
        self.configured = configured


class FingerprintTooLongError(RelayError):
    """Raised when a fingerprint is longer than `MAX_FINGERPRINT_BYTES` in UTF-8."""

    def __init__(self) -> None:
        super().__init__(f"fingerprint is longer than {MAX_FINGERPRINT_BYTES} bytes")


_FAILURE = {
    "PUT": error_body("failed to claim license"),
    "DELETE": error_body("failed to release license"),
}
_FAILURE_OTHER = error_body("internal server error")
_FAILURE_LOG = {"PUT": "failed to claim license", "DELETE": "failed to release license"}


@attrs.frozen
class ErrorRule:
    """How one kind of error is answered and logged.

    `message` None means the operation's failure text ("failed to claim license" for PUT,
    "failed to release license" for DELETE), as Keygen Relay answers internal errors.
    """

    status: str
    message: str | None
    level: int = logging.NOTSET
    retry_after: int | None = None
    traceback: bool = False
    body: bytes | None = attrs.field(init=False)

    @body.default
    def _body(self) -> bytes | None:
        return None if self.message is None else error_body(self.message)


ERROR_TABLE: dict[type[Exception], ErrorRule] = {
    PoolHeaderConflictError: ErrorRule(falcon.HTTP_400, "unsupported pool header"),
    FingerprintTooLongError: ErrorRule(
        falcon.HTTP_400,
        f"fingerprint is longer than {MAX_FINGERPRINT_BYTES} bytes",
        logging.WARNING,
    ),
    PoolNotFoundError: ErrorRule(falcon.HTTP_400, "invalid pool header", logging.ERROR),
    ClaimNotFoundError: ErrorRule(falcon.HTTP_404, "claim not found", logging.WARNING),
    ClaimConflictError: ErrorRule(
        falcon.HTTP_409, "failed to claim license due to conflict", logging.WARNING
    ),
    NoLicensesAvailableError: ErrorRule(falcon.HTTP_410, "no licenses available", logging.WARNING),
    LeaseNotFoundError: ErrorRule(falcon.HTTP_404, "lease not found", logging.WARNING),
    AdminPoolNotFoundError: ErrorRule(falcon.HTTP_404, "pool not found", logging.WARNING),
    WaitingFullError: ErrorRule(
        falcon.HTTP_410, "no licenses available", logging.WARNING, retry_after=RETRY_AFTER_SECONDS
    ),
    StorageBusyError: ErrorRule(falcon.HTTP_503, None, logging.ERROR, retry_after=1),
    StorageUnavailableError: ErrorRule(falcon.HTTP_503, None, logging.ERROR, retry_after=1),
    RelayError: ErrorRule(falcon.HTTP_500, None, logging.ERROR),
    Exception: ErrorRule(falcon.HTTP_500, None, logging.ERROR, traceback=True),
}
"""Exception class -> answer; Falcon picks the entry of the most specific class in the MRO."""


def _handler(rule: ErrorRule) -> Any:
    def handle(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
        resp.status = rule.status
        resp.content_type = JSON
        resp.data = rule.body if rule.body is not None else _FAILURE.get(req.method, _FAILURE_OTHER)
        if rule.retry_after is not None:
            resp.set_header("Retry-After", str(rule.retry_after))
        if rule.level and logger.isEnabledFor(rule.level):
            if rule.message is None:
                logger.log(
                    rule.level,
                    "%s method=%s path=%s error=%s",
                    _FAILURE_LOG.get(req.method, "request failed"),
                    req.method,
                    req.path,
                    ex,
                    exc_info=ex if rule.traceback else None,
                )
            else:
                logger.log(rule.level, "%s method=%s path=%s", ex, req.method, req.path)

    return handle


def _http_error(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    """Falcon's own errors (404 no route, 405 wrong method, 400 ...) as ``{"error": ...}``."""
    assert isinstance(ex, falcon.HTTPError)
    resp.status = ex.status
    resp.content_type = JSON
    if ex.headers:
        resp.set_headers(ex.headers)
    phrase = falcon.code_to_http_status(ex.status).partition(" ")[2].lower()
    resp.data = error_body((ex.description or phrase).lower())


def install_error_handlers(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    """Register `ERROR_TABLE` and the JSON answer for Falcon's own HTTP errors on `app`."""
    for exc_type, rule in ERROR_TABLE.items():
        app.add_error_handler(exc_type, _handler(rule))
    app.add_error_handler(falcon.HTTPError, _http_error)

"""The one table mapping Relay's errors to HTTP statuses and JSON bodies.

Responders never catch exceptions: `relay_core` errors (and the two request errors defined here)
propagate to Falcon, which finds the most specific entry of `ERROR_TABLE` for the exception's
class. Falcon's own errors (no route, wrong method, bad request) are answered with the same JSON
shape, keeping their headers (e.g. `Allow`). Answers written outside Falcon (waitress's refusals
of unparsable requests, requests still running when a stop's grace period ends) take their
status and body from here too (`out_of_band_error`, `ServerStoppingError`).
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
from .waiting import RETRY_AFTER_SECONDS, WaitingFullError, WaitStoppedError
from .wire import JSON, error_body

__all__ = [
    "ERROR_TABLE",
    "MAX_FINGERPRINT_BYTES",
    "ErrorRule",
    "FingerprintTooLongError",
    "InvalidPathError",
    "PathEncodingError",
    "PathEscapeError",
    "PoolHeaderConflictError",
    "ServerStoppingError",
    "install_error_handlers",
    "out_of_band_error",
    "rule_for",
    "wsgi_path",
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


class InvalidPathError(RelayError):
    """Raised before routing for a path that cannot be read unambiguously: two different byte
    strings must never become the same fingerprint (Falcon would replace bad bytes with U+FFFD,
    and waitress keeps a malformed escape as it is)."""


class PathEscapeError(InvalidPathError):
    """A malformed percent-escape (``%zz``, a lone ``%``), which Go's server (Keygen Relay's)
    refuses with 400 too."""

    def __init__(self) -> None:
        super().__init__("invalid percent-encoding in path")


class PathEncodingError(InvalidPathError):
    """Percent-decoded, the path is not UTF-8 (``%FF``, an encoded surrogate ``%ED%A0%80``)."""

    def __init__(self) -> None:
        super().__init__("path is not valid utf-8")


class ServerStoppingError(RelayError):
    """A request still running when a stop's grace period ends (answered by the server, not by
    Falcon: see `relay_http.serving`)."""

    def __init__(self) -> None:
        super().__init__("the server is stopping")


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
    unapplied: bool = False
    """The claim did not wait as ``Prefer`` asked (the server is stopping): no
    ``Preference-Applied``, so a client never reads the refusal as a wait served in full."""
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
    PathEscapeError: ErrorRule(
        falcon.HTTP_400, "invalid percent-encoding in path", logging.WARNING
    ),
    PathEncodingError: ErrorRule(falcon.HTTP_400, "path is not valid utf-8", logging.WARNING),
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
    WaitStoppedError: ErrorRule(
        falcon.HTTP_410,
        "no licenses available",
        logging.WARNING,
        retry_after=RETRY_AFTER_SECONDS,
        unapplied=True,
    ),
    ServerStoppingError: ErrorRule(falcon.HTTP_503, None, logging.WARNING, retry_after=1),
    StorageBusyError: ErrorRule(falcon.HTTP_503, None, logging.ERROR, retry_after=1),
    StorageUnavailableError: ErrorRule(falcon.HTTP_503, None, logging.ERROR, retry_after=1),
    RelayError: ErrorRule(falcon.HTTP_500, None, logging.ERROR),
    Exception: ErrorRule(falcon.HTTP_500, None, logging.ERROR, traceback=True),
}
"""Exception class -> answer; Falcon picks the entry of the most specific class in the MRO."""


def rule_for(exc_type: type[BaseException]) -> ErrorRule:
    """The `ERROR_TABLE` entry for `exc_type`: its most specific class in the table."""
    for cls in exc_type.__mro__:
        rule = ERROR_TABLE.get(cls)
        if rule is not None:
            return rule
    return ERROR_TABLE[Exception]


def body_for(rule: ErrorRule, method: str) -> bytes:
    """The JSON body `rule` answers to `method`."""
    return rule.body if rule.body is not None else _FAILURE.get(method, _FAILURE_OTHER)


def log_error(rule: ErrorRule, ex: BaseException, method: str, path: str) -> None:
    """One log line for an answered error; client values are fields, never the message."""
    if not rule.level or not logger.isEnabledFor(rule.level):
        return
    if rule.message is None:
        logger.log(
            rule.level,
            "%s method=%s path=%s error=%s",
            _FAILURE_LOG.get(method, "request failed"),
            method,
            path,
            ex,
            exc_info=ex if rule.traceback else None,
        )
    elif str(ex) == rule.message:
        logger.log(rule.level, "%s method=%s path=%s", rule.message, method, path)
    else:  # e.g. "no lease held by node <fingerprint>": the detail, as a field
        logger.log(rule.level, "%s method=%s path=%s error=%s", rule.message, method, path, ex)


def _handler(rule: ErrorRule) -> Any:
    def handle(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
        resp.status = rule.status
        resp.content_type = JSON
        resp.data = body_for(rule, req.method)
        if rule.retry_after is not None:
            resp.set_header("Retry-After", str(rule.retry_after))
        if rule.unapplied:
            resp.delete_header("Preference-Applied")
        log_error(rule, ex, req.method, log_path(req.env))

    return handle


def wsgi_path(environ: dict[str, Any]) -> str:
    """The percent-decoded path as WSGI gives it (latin-1 text), script name included."""
    path: str = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return path


def log_path(environ: dict[str, Any]) -> str:
    """The decoded path for a log line, bytes that are not UTF-8 kept (the formatter escapes
    them) rather than replaced, as Falcon's `req.path` does."""
    return wsgi_text(wsgi_path(environ))


def wsgi_text(value: str) -> str:
    """A WSGI (latin-1 decoded) string as the UTF-8 the client sent; other bytes escaped as
    surrogates (``surrogateescape``), so a log shows ``\\xff`` rather than mojibake."""
    try:
        return value.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # not from a WSGI server: already text
        return value


def out_of_band_error(code: int, reason: str) -> tuple[str, bytes]:
    """Status line and JSON body for an error the WSGI server answers itself (waitress's 400,
    413, 431, 501 ...), in the shape of Falcon's errors: ``{"error": "<reason>"}``."""
    return f"{code} {reason}", error_body(reason.lower())


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

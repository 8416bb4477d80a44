"""The HTTP protocol of Relay without any I/O: build requests, interpret responses.

Both clients (threads and asyncio) use this module unchanged; only the transports differ. The
spec is Part B §3: ``PUT /v1/nodes/{fingerprint}`` claims (201) or extends (202),
``DELETE`` releases (204), ``GET /v1/health`` answers 200; every matched response carries
``Relay-Clock`` and, when the relay has a secret, ``Relay-Signature``.
"""

from __future__ import annotations

import base64
import binascii
import json
import platform
import secrets
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from relay_core import LicenseFile, LicenseFileError, LicenseVerifier, SignatureError
from relay_core.signing import DEFAULT_TOLERANCE, parse, verify, verify_ed25519, verify_v2

from . import __about__
from .errors import (
    ConfigurationError,
    LeaseConflictError,
    LicenseVerificationError,
    NodeRefusedError,
    NoSeatError,
    PoolRejectedError,
    RateLimitedError,
    ResponseSignatureError,
    UnexpectedResponseError,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "Endpoint",
    "Extension",
    "Grant",
    "Request",
    "Response",
    "Wire",
]

_T = TypeVar("_T")

USER_AGENT = f"relay-client/{__about__.VERSION} python/{platform.python_version()}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the relay listens: scheme, host, port and an optional path prefix."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """The endpoint of `url`; `ConfigurationError` for anything http.client could not send to."""
        usage = "use http://HOST:PORT, for example http://127.0.0.1:6349"
        try:
            parts = urllib.parse.urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:  # "[::1", a port that is not a number or out of range
            raise ConfigurationError(f"not a relay URL: {url!r} ({exc}): {usage}") from None
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise ConfigurationError(f"not a relay URL: {url!r}: {usage}")
        if port == 0:
            raise ConfigurationError(f"bad port in relay URL {url!r}: use a number 1-65535")
        if not sendable(parts.path) or not sendable(host):
            raise ConfigurationError(
                f"not a relay URL: {url!r}: the host and path must be ASCII without spaces "
                "(percent-encode the path)"
            )
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, host, default if port is None else port, parts.path.rstrip("/"))

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.prefix}"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to send; `target` is the path, already percent-encoded.

    `timeout` overrides the transport's per-request timeout (a release on exit is bounded);
    `read_timeout` only the wait for the answer once sent (a claim the relay may hold queued).
    """

    method: str
    target: str
    headers: Mapping[str, str]
    timeout: float | None = None
    read_timeout: float | None = None

    @property
    def label(self) -> str:
        """How messages name this request: method and path, fingerprint shortened."""
        target = self.target if len(self.target) <= 40 else self.target[:37] + "..."
        return f"{self.method} {target}"


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP response; header names are lowercase."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Grant:
    """A new lease (201): the license the relay handed to this node."""

    license_key: str
    license_file: bytes = field(repr=False)
    expires_at: int
    expires_in: int
    license: LicenseFile | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Extension:
    """An extended lease (202): the heartbeat was accepted."""

    expires_at: int
    expires_in: int


@dataclass
class Wire:
    """Builds the requests of one client and checks the responses it gets back."""

    pool: str | None
    signing_secret: str | None
    tolerance: float = DEFAULT_TOLERANCE
    verifier: LicenseVerifier | None = None
    wall_clock: Callable[[], float] = field(default=lambda: 0.0)
    endpoint: Endpoint = field(default_factory=lambda: Endpoint("http", "127.0.0.1", 6349, ""))
    signing_public_key: Ed25519PublicKey | None = None
    node_token: str | None = None
    nonce: Callable[[], str] = field(default=lambda: secrets.token_hex(16))

    # -- requests ----------------------------------------------------------------------------

    @property
    def verifying(self) -> bool:
        """True when responses must carry a valid signature (a secret or a public key is set)."""
        return bool(self.signing_secret) or self.signing_public_key is not None

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.pool:
            headers["Relay-Pool"] = self.pool
        if self.node_token:
            headers["Authorization"] = f"Bearer {self.node_token}"
        if self.verifying:
            # A fresh nonce per request: the signed answer then fits this request only.
            headers["Relay-Nonce"] = self.nonce()
        return headers

    def _node(self, fingerprint: str) -> str:
        return f"{self.endpoint.prefix}/v1/nodes/{urllib.parse.quote(fingerprint, safe='')}"

    def claim(self, fingerprint: str) -> Request:
        """Claim a seat, or extend the one this fingerprint holds (the heartbeat)."""
        return Request("PUT", self._node(fingerprint), self._headers())

    def release(self, fingerprint: str) -> Request:
        return Request("DELETE", self._node(fingerprint), self._headers())

    def health(self) -> Request:
        return Request("GET", f"{self.endpoint.prefix}/v1/health", self._headers())

    # -- responses ---------------------------------------------------------------------------

    def check_signature(self, response: Response, request: Request | None = None) -> None:
        """Raise `ResponseSignatureError` unless the response is signed for `request`.

        With a public key the ``ed25519`` pair must verify, bound to the request's nonce,
        method and path. With a secret, ``v2`` (bound) is checked when the relay sent it, else
        ``v1`` (Keygen Relay sends only that one).
        """
        if not self.verifying:
            return
        nonce = request.headers.get("Relay-Nonce") if request is not None else None
        method, path = (request.method, request.target) if request is not None else ("", "")
        value, body = response.headers.get("relay-signature"), response.body
        now, tolerance = self.wall_clock(), self.tolerance
        try:
            if nonce is not None and response.headers.get("relay-nonce") not in (None, nonce):
                raise SignatureError("the relay echoed another Relay-Nonce than this request's")
            if self.signing_public_key is not None:
                verify_ed25519(
                    value,
                    body,
                    self.signing_public_key,
                    nonce=nonce,
                    method=method,
                    path=path,
                    now=now,
                    tolerance=tolerance,
                )
            if self.signing_secret:
                if nonce is not None and "v2" in parse(value)[1]:
                    verify_v2(
                        value,
                        body,
                        self.signing_secret,
                        nonce=nonce,
                        method=method,
                        path=path,
                        now=now,
                        tolerance=tolerance,
                    )
                else:
                    verify(value, body, self.signing_secret, now=now, tolerance=tolerance)
        except SignatureError as exc:
            raise ResponseSignatureError(str(exc)) from None

    def read_claim(
        self, request: Request, response: Response, fingerprint: str
    ) -> Grant | Extension:
        """The outcome of a PUT, or the error it means."""
        self.check_signature(response, request)
        if response.status == 201:
            doc = _json_object(request, response)
            return Grant(
                license_key=_field(request, response, doc, "license_key", str),
                license_file=_b64(
                    request, response, _field(request, response, doc, "license_file", str)
                ),
                expires_at=_field(request, response, doc, "expires_at", int),
                expires_in=_field(request, response, doc, "expires_in", int),
            )
        if response.status == 202:
            doc = _json_object(request, response)
            return Extension(
                expires_at=_field(request, response, doc, "expires_at", int),
                expires_in=_field(request, response, doc, "expires_in", int),
            )
        if response.status == 410:
            raise NoSeatError(self.pool, 0.0)
        if response.status == 409:
            raise LeaseConflictError(fingerprint)
        raise self._other(request, response, fingerprint)

    def read_release(self, request: Request, response: Response) -> bool:
        """True when the seat was given back (204), False when the relay held none (404)."""
        self.check_signature(response, request)
        if response.status == 204:
            return True
        if response.status == 404 and _error_text(response) == "claim not found":
            return False
        raise self._other(request, response)

    def read_health(self, request: Request, response: Response) -> None:
        self.check_signature(response, request)
        if response.status != 200:
            raise self._other(request, response)

    def _other(
        self, request: Request, response: Response, fingerprint: str | None = None
    ) -> Exception:
        text = _error_text(response)
        if response.status == 400 and text in ("unsupported pool header", "invalid pool header"):
            return PoolRejectedError(self.pool, text)
        if response.status in (401, 403):
            return NodeRefusedError(response.status, fingerprint, text)
        if response.status == 429:
            after = response.headers.get("retry-after", "")
            return RateLimitedError(request.label, int(after) if after.isdigit() else None)
        return UnexpectedResponseError(request.label, response.status, repr(text))

    def verify_license(self, grant: Grant) -> Grant:
        """Verify and decrypt the granted file when a public key was given."""
        if self.verifier is None:
            return grant
        try:
            license = self.verifier.verify(
                grant.license_file, grant.license_key, now=self.wall_clock()
            )
        except LicenseFileError as exc:
            raise LicenseVerificationError(str(exc)) from None
        return Grant(
            grant.license_key, grant.license_file, grant.expires_at, grant.expires_in, license
        )


def header_value(text: str) -> bool:
    """True if `text` is a header value HTTP carries unchanged: printable ASCII, not padded.

    The API defines no encoding for non-ASCII header values, and HTTP strips outer spaces.
    """
    return text.isascii() and text.isprintable() and text == text.strip()


def sendable(text: str) -> bool:
    """True if `text` goes into a request line or a token unchanged: visible ASCII, no space."""
    return header_value(text) and " " not in text


def _error_text(response: Response) -> str:
    try:
        doc = json.loads(response.body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return str(doc["error"])
    text = response.body[:80].decode("utf-8", "replace").strip()
    return text or "(empty body)"


def _json_object(request: Request, response: Response) -> dict[str, object]:
    try:
        doc = json.loads(response.body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise UnexpectedResponseError(
            request.label, response.status, "with a body that is not a JSON object"
        )
    return doc


def _field(
    request: Request, response: Response, doc: Mapping[str, object], name: str, kind: type[_T]
) -> _T:
    value = doc.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UnexpectedResponseError(
            request.label, response.status, f"without a valid {name!r} ({kind.__name__})"
        )
    return value


def _b64(request: Request, response: Response, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise UnexpectedResponseError(
            request.label, response.status, "with license_file not in base64"
        ) from None

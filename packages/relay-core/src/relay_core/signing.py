"""Response signing: the `Relay-Signature` header, shared by the server and its clients.

``Relay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` (spec §3.2).
The standard library's `hmac` does the work: it is the reference HMAC for Python, constant-time
compare included, and keeps clients free of third-party dependencies.
"""

from __future__ import annotations

import hashlib
import hmac

from .errors import SignatureError

__all__ = ["DEFAULT_TOLERANCE", "sign", "signature", "verify"]

DEFAULT_TOLERANCE = 300
"""Seconds a signature's `t` may differ from the verifier's clock (Keygen's README: 5 minutes)."""


def signature(secret: str | bytes, t: int, body: bytes) -> str:
    """The lowercase hex HMAC-SHA256 of ``<t>.<body>`` keyed by `secret`."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, str(t).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, t: int, body: bytes) -> str:
    """The full header value ``t=<t>,v1=<hex>``."""
    return f"t={t},v1={signature(secret, t, body)}"


def verify(
    header: str | None,
    body: bytes,
    secret: str | bytes,
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> int:
    """Check a `Relay-Signature` header against the body; return its `t` or raise `SignatureError`."""
    if not header:
        raise SignatureError("response is not signed (no Relay-Signature header)")
    parts: dict[str, str] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(name, value)
    t_text, v1 = parts.get("t"), parts.get("v1")
    if t_text is None or v1 is None or not t_text.isdigit():
        raise SignatureError(f"malformed Relay-Signature header: {header[:100]!r}")
    t = int(t_text)
    if abs(now - t) > tolerance:
        raise SignatureError(
            f"Relay-Signature is {abs(now - t):.0f}s away from this clock "
            f"(tolerance {tolerance:.0f}s): check both clocks"
        )
    if not hmac.compare_digest(signature(secret, t, body), v1.lower()):
        raise SignatureError("Relay-Signature does not match: wrong signing secret or altered body")
    return t

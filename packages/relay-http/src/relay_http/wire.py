"""The JSON wire format of the node API, byte for byte as Keygen Relay writes it (spec §3.3).

Bodies are compact JSON plus one trailing newline (Go's `json.Encoder`), keys in a fixed order,
with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped as Go does. Clients verify `Relay-Signature`
over these exact bytes, so every body is built here and nowhere else; the hot bodies (201, 202)
are assembled from pre-encoded pieces rather than through a generic encoder.
"""

from __future__ import annotations

import base64
import json

from relay_core import ClaimStatus, Lease

__all__ = ["JSON", "error_body", "go_json", "lease_body"]

JSON = "application/json"
"""The Content-Type of every node response (no charset, as the reference sends)."""

_GO_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def go_json(value: object) -> bytes:
    """Encode `value` as Go's `json.Encoder` does: compact, HTML-safe, newline-terminated."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in _GO_ESCAPES:
        if raw in text:
            text = text.replace(raw, escaped)
    return text.encode("utf-8") + b"\n"


def error_body(message: str) -> bytes:
    """``{"error":"<message>"}`` plus newline."""
    return go_json({"error": message})


_EXPIRY = b'"expires_at":%d,"expires_in":%d}\n'


def lease_body(lease: Lease) -> bytes:
    """The 201 body (file, key, expiry) for a new lease; the 202 body (expiry) for an extension."""
    if lease.status is ClaimStatus.EXTENDED:
        return b"{" + _EXPIRY % (lease.expires_at, lease.expires_in)
    lic = lease.license
    key = go_json(lic.key)[:-1]
    return b"".join(
        (
            b'{"license_file":"',
            base64.b64encode(lic.file),
            b'","license_key":',
            key,
            b",",
            _EXPIRY % (lease.expires_at, lease.expires_in),
        )
    )

"""Response signing: the `Relay-Signature` header, shared by the server and its clients.

``Relay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` (spec §3.2).
The standard library's `hmac` does the work: it is the reference HMAC for Python, constant-time
compare included, and keeps clients free of third-party dependencies.

Beside `v1`, one function per scheme: `v2` (HMAC) and `ed25519` (public key) sign `message`,
which, when the request carried a `Relay-Nonce`, binds the answer to that request. The
`cryptography` package is imported only by the Ed25519 functions. docs/api.md has the vectors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import TYPE_CHECKING

from .errors import SignatureError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "DEFAULT_TOLERANCE",
    "MAX_NONCE",
    "header",
    "load_private_key",
    "load_public_key",
    "message",
    "new_private_key",
    "parse",
    "private_key_pem",
    "public_key_hex",
    "public_key_pem",
    "sign",
    "signature",
    "signature_ed25519",
    "signature_v2",
    "valid_nonce",
    "verify",
    "verify_ed25519",
    "verify_v2",
]

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


# -- request-bound signatures (v2 and ed25519) ------------------------------------------------

MAX_NONCE = 128
"""A `Relay-Nonce` is 1 to 128 visible ASCII characters (0x21-0x7e)."""


def valid_nonce(nonce: str) -> bool:
    """True when `nonce` may be used as a `Relay-Nonce` (1-128 visible ASCII characters)."""
    return 0 < len(nonce) <= MAX_NONCE and all("!" <= ch <= "~" for ch in nonce)


def message(
    t: int, body: bytes, *, nonce: str | None = None, method: str = "", path: str = ""
) -> bytes:
    """The bytes `v2` and `ed25519` sign.

    With a nonce ``<t>.<nonce>.<METHOD> <path>.<body>``, which binds the answer to one request;
    without one ``<t>.<body>``, the message of `v1`. `path` is the request target's path as the
    client sent it (percent-encoding untouched, no query string).
    """
    if nonce is None:
        return str(t).encode("ascii") + b"." + body
    return f"{t}.{nonce}.{method.upper()} {path}.".encode() + body


def signature_v2(secret: str | bytes, msg: bytes) -> str:
    """The lowercase hex HMAC-SHA256 of a request-bound `message` keyed by `secret`."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def signature_ed25519(key: Ed25519PrivateKey, msg: bytes) -> str:
    """The Ed25519 signature of `msg`, standard base64 without ``=`` padding (86 characters).

    Unpadded because Keygen Relay's README tells clients to split each pair on ``=``: a padded
    value would break clients that expect exactly one ``=`` per pair.
    """
    return base64.b64encode(key.sign(msg)).decode("ascii").rstrip("=")


def header(
    t: int,
    body: bytes,
    *,
    secret: str | bytes | None = None,
    key: Ed25519PrivateKey | None = None,
    nonce: str | None = None,
    method: str = "",
    path: str = "",
) -> str:
    """The full `Relay-Signature` value: ``t=<t>[,v1=<hex>][,v2=<hex>][,ed25519=<base64>]``.

    `v1` (with a secret) is always the message ``<t>.<body>``, byte for byte as Keygen Relay;
    `v2` (with a secret and a nonce) and `ed25519` (with a key) sign `message`.
    """
    parts = [f"t={t}"]
    bound = message(t, body, nonce=nonce, method=method, path=path)
    if secret:
        parts.append(f"v1={signature(secret, t, body)}")
        if nonce is not None:
            parts.append(f"v2={signature_v2(secret, bound)}")
    if key is not None:
        parts.append(f"ed25519={signature_ed25519(key, bound)}")
    return ",".join(parts)


def parse(header_value: str | None) -> tuple[int, dict[str, str]]:
    """Split a `Relay-Signature` value into its `t` and its other pairs; raise `SignatureError`."""
    if not header_value:
        raise SignatureError("response is not signed (no Relay-Signature header)")
    parts: dict[str, str] = {}
    for item in header_value.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(name, value)
    t_text = parts.pop("t", None)
    if t_text is None or not t_text.isdigit():
        raise SignatureError(f"malformed Relay-Signature header: {header_value[:100]!r}")
    return int(t_text), parts


def _check_clock(t: int, now: float, tolerance: float) -> None:
    if abs(now - t) > tolerance:
        raise SignatureError(
            f"Relay-Signature is {abs(now - t):.0f}s away from this clock "
            f"(tolerance {tolerance:.0f}s): check both clocks"
        )


def verify_v2(
    header_value: str | None,
    body: bytes,
    secret: str | bytes,
    *,
    nonce: str,
    method: str,
    path: str,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> int:
    """Check the `v2` pair for the request (nonce, method, path); return `t` or raise."""
    t, parts = parse(header_value)
    v2 = parts.get("v2")
    if v2 is None:
        raise SignatureError("Relay-Signature has no v2 pair: the relay did not bind its answer")
    _check_clock(t, now, tolerance)
    expected = signature_v2(secret, message(t, body, nonce=nonce, method=method, path=path))
    if not hmac.compare_digest(expected, v2.lower()):
        raise SignatureError(
            "Relay-Signature v2 does not match: wrong signing secret, altered body, "
            "or an answer recorded for another request"
        )
    return t


def verify_ed25519(
    header_value: str | None,
    body: bytes,
    public_key: Ed25519PublicKey,
    *,
    nonce: str | None = None,
    method: str = "",
    path: str = "",
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> int:
    """Check the `ed25519` pair (bound to the request when `nonce` is given); return `t` or raise."""
    from cryptography.exceptions import InvalidSignature

    t, parts = parse(header_value)
    value = parts.get("ed25519")
    if value is None:
        raise SignatureError("Relay-Signature has no ed25519 pair: the relay has no signing key")
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("Relay-Signature ed25519 is not base64") from None
    _check_clock(t, now, tolerance)
    try:
        public_key.verify(raw, message(t, body, nonce=nonce, method=method, path=path))
    except InvalidSignature:
        raise SignatureError(
            "Relay-Signature ed25519 does not match: wrong public key, altered body, "
            "or an answer recorded for another request"
        ) from None
    return t


# -- Ed25519 keys -------------------------------------------------------------------------------


def new_private_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 signing key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """`key` as an unencrypted PKCS#8 PEM (``BEGIN PRIVATE KEY``), as openssl writes it."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PKCS#8 PEM; raise `ValueError` with a one-line reason."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        reason = str(exc).split("\n")[0] or "not a PEM private key"
        raise ValueError(f"not an unencrypted PEM private key ({reason})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 key (create one with `relay signing-key new`)")
    return key


def _public(key: Ed25519PrivateKey | Ed25519PublicKey) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return key.public_key() if isinstance(key, Ed25519PrivateKey) else key


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32-byte public key as 64 lowercase hex digits."""
    from cryptography.hazmat.primitives import serialization

    public = _public(key)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as SubjectPublicKeyInfo PEM (``BEGIN PUBLIC KEY``), as openssl reads it."""
    from cryptography.hazmat.primitives import serialization

    public = _public(key)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode("ascii")


def load_public_key(text: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from 64 hex digits or a ``BEGIN PUBLIC KEY`` PEM; raise `ValueError`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    data = data.strip()
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError):
            raise ValueError("not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    try:
        raw = bytes.fromhex(data.decode("ascii"))
    except ValueError:
        raise ValueError("expected 64 hex digits or a PEM public key") from None
    if len(raw) != 32:
        raise ValueError(f"{len(raw)} bytes, an Ed25519 public key has 32 (64 hex digits)")
    return Ed25519PublicKey.from_public_bytes(raw)

"""Keygen license and machine files: parse, verify and decrypt (the `LicenseVerifier` adapter).

Follows keygen-go v3 exactly (spec Part B §2) and also accepts every algorithm Keygen issues:
``aes-256-gcm+ed25519``, ``base64+ed25519``, ``aes-256-gcm+rsa-pss-sha256``,
``aes-256-gcm+rsa-sha256``, ``base64+rsa-pss-sha256``, ``base64+rsa-sha256``. Messages start with
keygen-go's text and add a short reason in parentheses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime
from typing import Literal

import attrs
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import DecryptionError, FileReason, InvalidPublicKeyError, VerificationError
from .model import LicenseFile

__all__ = ["ALGORITHMS", "KeygenVerifier", "FileKind", "Certificate", "parse_certificate"]

FileKind = Literal["license", "machine"]

ALGORITHMS = (
    "aes-256-gcm+ed25519",
    "base64+ed25519",
    "aes-256-gcm+rsa-pss-sha256",
    "aes-256-gcm+rsa-sha256",
    "base64+rsa-pss-sha256",
    "base64+rsa-sha256",
)

CLOCK_SKEW = 5 * 60
"""How far in the future `meta.issued` may lie before the local clock is called out of sync."""


@attrs.frozen
class Certificate:
    """The JSON inside a license file's armour."""

    enc: str
    sig: str
    alg: str


def _armour(kind: FileKind) -> tuple[str, str]:
    word = kind.upper()
    return f"-----BEGIN {word} FILE-----", f"-----END {word} FILE-----"


def parse_certificate(raw: bytes, kind: FileKind = "license") -> Certificate:
    """Undo the armour and base64 and read `{enc, sig, alg}`; raise `VerificationError`."""
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise VerificationError("not a text file", kind=kind) from None
    begin, end = _armour(kind)
    text = text.removeprefix(begin).removesuffix(end).strip()
    body = text.replace("\r", "").replace("\n", "")
    try:
        decoded = base64.b64decode(body, validate=True)
        document = json.loads(decoded)
    except (binascii.Error, ValueError):
        raise VerificationError("not a Keygen file: bad base64 or JSON", kind=kind) from None
    if not isinstance(document, dict):
        raise VerificationError("not a Keygen file: no certificate object", kind=kind)
    fields = {str(k).lower(): v for k, v in document.items()}
    values = [fields.get(name) for name in ("enc", "sig", "alg")]
    if not all(isinstance(v, str) and v for v in values):
        raise VerificationError("not a Keygen file: enc, sig or alg missing", kind=kind)
    enc, sig, alg = (str(v) for v in values)
    return Certificate(enc=enc, sig=sig, alg=alg)


def _load_public_key(public_key: str) -> Ed25519PublicKey | RSAPublicKey:
    text = public_key.strip()
    if not text:
        raise InvalidPublicKeyError("invalid public key: no public key given")
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError:
            raise InvalidPublicKeyError(
                "invalid public key: not a readable PEM public key"
            ) from None
        if not isinstance(key, RSAPublicKey | Ed25519PublicKey):
            raise InvalidPublicKeyError("invalid public key: PEM key is neither RSA nor Ed25519")
        return key
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise InvalidPublicKeyError(
            "invalid public key: not hex (expected 64 hex digits)"
        ) from None
    if len(raw) != 32:
        raise InvalidPublicKeyError(
            f"invalid public key: {len(raw)} bytes, an Ed25519 key has 32 (64 hex digits)"
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


class KeygenVerifier:
    """Verifies and decrypts Keygen files signed by one account key (Ed25519 hex or RSA PEM)."""

    def __init__(self, public_key: str, *, kind: FileKind = "license") -> None:
        self._key = _load_public_key(public_key)
        self._kind: FileKind = kind

    def verify(self, raw: bytes, key: str, *, now: float) -> LicenseFile:
        """Verify the signature, decrypt with `key`, check the clock; return the file."""
        cert = parse_certificate(raw, self._kind)
        self._check_signature(cert)
        plaintext = self._decrypt(cert, key)
        return self._dataset(raw, plaintext, now)

    def _check_signature(self, cert: Certificate) -> None:
        kind = self._kind
        if cert.alg not in ALGORITHMS:
            raise VerificationError(f"unsupported algorithm {cert.alg!r}", kind=kind)
        try:
            signature = _b64(cert.sig)
        except binascii.Error:
            raise VerificationError("signature is not base64", kind=kind) from None
        message = f"{kind}/{cert.enc}".encode()
        scheme = cert.alg.split("+", 1)[1]
        try:
            if scheme == "ed25519":
                if not isinstance(self._key, Ed25519PublicKey):
                    raise VerificationError(f"{cert.alg} needs an Ed25519 public key", kind=kind)
                self._key.verify(signature, message)
            else:
                if not isinstance(self._key, RSAPublicKey):
                    raise VerificationError(f"{cert.alg} needs an RSA public key", kind=kind)
                pad: padding.AsymmetricPadding = (
                    padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
                    if scheme == "rsa-pss-sha256"
                    else padding.PKCS1v15()
                )
                self._key.verify(signature, message, pad, hashes.SHA256())
        except InvalidSignature:
            raise VerificationError("signature does not match public key", kind=kind) from None

    def _decrypt(self, cert: Certificate, key: str) -> bytes:
        kind = self._kind
        if cert.alg.startswith("base64+"):
            try:
                return _b64(cert.enc)
            except binascii.Error:
                raise DecryptionError(FileReason.INVALID, "data is not base64", kind=kind) from None
        parts = cert.enc.split(".", 2)
        if len(parts) != 3:
            raise DecryptionError(FileReason.INVALID, "expected ciphertext.iv.tag", kind=kind)
        try:
            ciphertext, iv, tag = (_b64(p) for p in parts)
        except binascii.Error:
            raise DecryptionError(
                FileReason.INVALID, "ciphertext is not base64", kind=kind
            ) from None
        if not 8 <= len(iv) <= 128 or len(tag) != 16:
            raise DecryptionError(FileReason.INVALID, "bad nonce or tag length", kind=kind)
        secret = hashlib.sha256(key.encode("utf-8")).digest()
        try:
            return AESGCM(secret).decrypt(iv, ciphertext + tag, None)
        except InvalidTag:
            # A machine file's AES key is license key + fingerprint: either may be the wrong one.
            detail = (
                "wrong license key"
                if kind == "license"
                else "wrong license key, or the file was issued for another machine"
            )
            raise DecryptionError(FileReason.INVALID, detail, kind=kind) from None

    def _dataset(self, raw: bytes, plaintext: bytes, now: float) -> LicenseFile:
        kind = self._kind
        try:
            document = json.loads(plaintext)
        except ValueError:
            raise DecryptionError(FileReason.INVALID, "data is not JSON", kind=kind) from None
        if not isinstance(document, dict):
            raise DecryptionError(FileReason.INVALID, "data is not a JSON object", kind=kind)
        meta = document.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        issued = _timestamp(meta.get("issued"))
        expiry = _timestamp(meta.get("expiry"))
        ttl = meta.get("ttl")
        ttl = ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else 0
        if issued is not None and issued > now + CLOCK_SKEW:
            raise DecryptionError(FileReason.CLOCK_DESYNC, kind=kind)
        if ttl and expiry is not None and now > expiry:
            raise DecryptionError(FileReason.EXPIRED, kind=kind)
        data = document.get("data")
        data = data if isinstance(data, dict) else {}
        attributes = data.get("attributes")
        attributes = attributes if isinstance(attributes, dict) else {}
        guid = data.get("id")
        file_key = attributes.get("key", "")
        if not isinstance(guid, str) or not guid:
            raise DecryptionError(FileReason.INVALID, "dataset has no data.id", kind=kind)
        if not isinstance(file_key, str) or (kind == "license" and not file_key):
            raise DecryptionError(
                FileReason.INVALID, "dataset has no data.attributes.key", kind=kind
            )
        return LicenseFile(
            raw=raw,
            guid=guid,
            key=file_key,
            issued=None if issued is None else int(issued),
            expiry=None if expiry is None else int(expiry),
            ttl=ttl,
            dataset=document,
        )


def verify_machine_file(
    raw: bytes, *, public_key: str, license_key: str, fingerprint: str, now: float
) -> LicenseFile:
    """Verify and decrypt a machine file: prefix ``machine/``, key = license key + fingerprint."""
    verifier = KeygenVerifier(public_key, kind="machine")
    return verifier.verify(raw, license_key + fingerprint, now=now)

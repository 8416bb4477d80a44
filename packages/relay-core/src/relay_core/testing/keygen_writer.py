"""Write Keygen license and machine files with a test key, in every algorithm Keygen issues.

Real files expire and cannot be re-issued offline; tests make their own with `LicenseWriter`:

    writer = LicenseWriter.ed25519()
    raw = writer.license(key="KEY-1", issued=now, expiry=now + 86400)
    relay.add_license(raw, "KEY-1", public_key=writer.public_key)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from datetime import UTC, datetime

import attrs
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..keygen import ALGORITHMS, FileKind

__all__ = ["ALGORITHMS", "LicenseWriter", "iso", "tamper"]

Timestamp = float | datetime


def iso(value: Timestamp) -> str:
    """RFC 3339 with milliseconds and Z, as Keygen writes `meta.issued`/`meta.expiry`."""
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _wrap(text: str, width: int = 60) -> str:
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


def tamper(raw: bytes, index: int | None = None) -> bytes:
    """Change one character of the base64 body (by default one in the middle) to another."""
    lines = raw.split(b"\n")
    body_lines = [i for i, line in enumerate(lines) if line and not line.startswith(b"-----")]
    line_no = (
        body_lines[len(body_lines) // 2] if index is None else body_lines[index % len(body_lines)]
    )
    line = bytearray(lines[line_no])
    pos = len(line) // 2
    line[pos] = ord("A") if line[pos] != ord("A") else ord("B")
    lines[line_no] = bytes(line)
    return b"\n".join(lines)


@attrs.define
class LicenseWriter:
    """Signs files with one private key (Ed25519 or RSA) and knows the matching public key."""

    private_key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

    @classmethod
    def ed25519(cls) -> LicenseWriter:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def rsa(cls, bits: int = 2048) -> LicenseWriter:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=bits))

    @property
    def public_key(self) -> str:
        """Ed25519: 64 hex digits; RSA: a PEM block — the forms `relay add --public-key` takes."""
        public = self.private_key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return raw.hex()
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem.decode("ascii")

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms this key can sign."""
        scheme = "ed25519" if isinstance(self.private_key, ed25519.Ed25519PrivateKey) else "rsa"
        return tuple(alg for alg in ALGORITHMS if scheme in alg)

    def _sign(self, alg: str, message: bytes) -> bytes:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(message)
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
            if alg.endswith("rsa-pss-sha256")
            else padding.PKCS1v15()
        )
        return self.private_key.sign(message, pad, hashes.SHA256())

    def seal(
        self,
        plaintext: bytes,
        secret: str,
        *,
        alg: str | None = None,
        kind: FileKind = "license",
    ) -> bytes:
        """Encrypt (or base64) `plaintext`, sign it and armour it; `secret` is the AES key source."""
        alg = alg or self.algorithms[0]
        if alg.startswith("aes-256-gcm+"):
            iv = os.urandom(12)
            sealed = AESGCM(hashlib.sha256(secret.encode()).digest()).encrypt(iv, plaintext, None)
            enc = f"{_b64(sealed[:-16])}.{_b64(iv)}.{_b64(sealed[-16:])}"
        else:
            enc = _b64(plaintext)
        sig = _b64(self._sign(alg, f"{kind}/{enc}".encode()))
        certificate = json.dumps({"enc": enc, "sig": sig, "alg": alg}).encode()
        word = kind.upper()
        body = _wrap(_b64(certificate))
        return f"-----BEGIN {word} FILE-----\n{body}\n-----END {word} FILE-----\n".encode()

    def license(
        self,
        *,
        key: str | None = None,
        guid: str | None = None,
        issued: Timestamp | None = None,
        expiry: Timestamp | None = None,
        ttl: int | None = None,
        alg: str | None = None,
        name: str = "Relay Test",
    ) -> bytes:
        """A license file; `expiry` None = never expires (ttl 0), else ttl defaults to expiry-issued."""
        guid = guid or str(uuid.uuid4())
        key = key or f"TEST-{uuid.uuid4().hex.upper()}"
        issued_at = datetime.now(UTC).timestamp() if issued is None else _seconds(issued)
        meta: dict[str, object] = {"issued": iso(issued_at), "expiry": None, "ttl": 0}
        if expiry is not None:
            expiry_at = _seconds(expiry)
            meta["expiry"] = iso(expiry_at)
            meta["ttl"] = ttl if ttl is not None else max(1, int(expiry_at - issued_at))
        document = {
            "data": {
                "id": guid,
                "type": "licenses",
                "attributes": {"name": name, "key": key, "expiry": None, "status": "ACTIVE"},
            },
            "meta": meta,
        }
        return self.seal(json.dumps(document).encode(), key, alg=alg)

    def machine(
        self,
        *,
        license_key: str,
        fingerprint: str,
        platform: str | None = None,
        hostname: str | None = None,
        ip: str | None = None,
        issued: Timestamp | None = None,
        expiry: Timestamp | None = None,
        alg: str | None = None,
    ) -> bytes:
        """A machine file for node-locking, encrypted with license key + fingerprint."""
        issued_at = datetime.now(UTC).timestamp() if issued is None else _seconds(issued)
        meta: dict[str, object] = {"issued": iso(issued_at), "expiry": None, "ttl": 0}
        if expiry is not None:
            meta["expiry"] = iso(_seconds(expiry))
            meta["ttl"] = max(1, int(_seconds(expiry) - issued_at))
        attributes = {
            "fingerprint": fingerprint,
            "platform": platform,
            "hostname": hostname,
            "ip": ip,
        }
        document = {
            "data": {"id": str(uuid.uuid4()), "type": "machines", "attributes": attributes},
            "meta": meta,
        }
        plaintext = json.dumps(document).encode()
        return self.seal(plaintext, license_key + fingerprint, alg=alg, kind="machine")


def _seconds(value: Timestamp) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)

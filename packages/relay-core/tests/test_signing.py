"""Relay-Signature: the spec's test vectors, and verification failures."""

from __future__ import annotations

from typing import Any

import pytest
from relay_core import SignatureError
from relay_core.signing import (
    header,
    load_private_key,
    load_public_key,
    message,
    new_private_key,
    private_key_pem,
    public_key_hex,
    public_key_pem,
    sign,
    signature,
    valid_nonce,
    verify,
    verify_ed25519,
    verify_v2,
)

T = 1764949490


@pytest.mark.parametrize(
    ("body", "v1"),
    [
        (
            b'{"error":"claim not found"}\n',
            "ccb3c09f694f343bdce38b96a71a32db7bbe15f068f88bbeb6050fd1db37ddf1",
        ),
        (b"", "83c288c276ae120962547049269cb09c8f984b9ae3d344242829fcb722f50256"),
        (
            b'{"expires_at":1764949550,"expires_in":60}\n',
            "af9e6d14e90681b376508fdaa7d110482e465c825492556d32e24c9d52d45c79",
        ),
    ],
)
def test_signatures_match_the_reference_vectors(body: bytes, v1: str) -> None:
    """HMAC-SHA256 of "<t>.<body>" keyed by the secret matches Keygen Relay's output."""
    assert signature("hunter2", T, body) == v1
    assert sign("hunter2", T, body) == f"t={T},v1={v1}"
    assert verify(f"t={T},v1={v1}", body, "hunter2", now=T + 10) == T


@pytest.mark.parametrize(
    ("header", "secret", "now", "message"),
    [
        (None, "hunter2", T, "not signed"),
        ("v1=abc", "hunter2", T, "malformed"),
        ("t=x,v1=abc", "hunter2", T, "malformed"),
        (sign("hunter2", T, b"{}"), "hunter3", T, "does not match"),
        (sign("hunter2", T, b"{}"), "hunter2", T + 301, "away from this clock"),
    ],
)
def test_bad_signatures_are_refused(
    header: str | None, secret: str, now: int, message: str
) -> None:
    """Missing, malformed, wrong-secret and stale signatures raise SignatureError."""
    with pytest.raises(SignatureError, match=message):
        verify(header, b"{}", secret, now=now)


def test_altered_body_is_detected() -> None:
    """A body changed after signing fails verification."""
    header = sign("s", T, b'{"expires_in":60}\n')
    with pytest.raises(SignatureError):
        verify(header, b'{"expires_in":61}\n', "s", now=T)


# -- v2 and ed25519 (docs/api.md has the same vectors) -------------------------------------------

RFC8032_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
NONCE = "8f3c2a91d0e4b7c6"
LEASE = b'{"expires_at":1764949550,"expires_in":60}\n'


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_SEED))


@pytest.mark.parametrize(
    ("body", "nonce", "method", "path", "expected"),
    [
        (
            b"",
            None,
            "",
            "",
            "t=1764949490,v1=83c288c276ae120962547049269cb09c8f984b9ae3d344242829fcb722f50256,"
            "ed25519=IdDAfp04gz/TuweWnbc2FF60rowrAqfvChc6MgTcVyOamaRxJjIe8aQ/XwGy59P0Z7gI//Jq53+8x9aSRzi3AQ",
        ),
        (
            b'{"error":"claim not found"}\n',
            None,
            "",
            "",
            "t=1764949490,v1=ccb3c09f694f343bdce38b96a71a32db7bbe15f068f88bbeb6050fd1db37ddf1,"
            "ed25519=sK9SaG4O/BS0rSDSCkXVur4JCIck6egGEHJqBXr7xQumYaMH85zkByBRrDNOj6wbECR6OiNyxdzPmq4YpNanCg",
        ),
        (
            LEASE,
            NONCE,
            "PUT",
            "/v1/nodes/a",
            "t=1764949490,v1=af9e6d14e90681b376508fdaa7d110482e465c825492556d32e24c9d52d45c79,"
            "v2=af296a20124073912cf55ebce4312d37183018abe5f31a3100e607dc324ece74,"
            "ed25519=MsvGTO9KsmkXa+TIQoj8lYbTR2EIcqMpqW7jOzZhXgw4K1IF/CY6/rL9D7Ul1PQ/ye+lX3UyfIaXi8vpKHwKDg",
        ),
    ],
)
def test_header_vectors(
    body: bytes, nonce: str | None, method: str, path: str, expected: str
) -> None:
    """v1 is unchanged next to v2 and ed25519, and each verifies with its own function."""
    key = _key()
    got = header(T, body, secret="hunter2", key=key, nonce=nonce, method=method, path=path)
    assert got == expected
    assert verify(got, body, "hunter2", now=T) == T
    public = load_public_key(RFC8032_PUBLIC)
    bound = {"nonce": nonce, "method": method, "path": path}
    assert verify_ed25519(got, body, public, now=T, **bound) == T  # type: ignore[arg-type]
    if nonce is not None:
        assert verify_v2(got, body, "hunter2", nonce=nonce, method=method, path=path, now=T) == T


def test_message_bytes() -> None:
    """The signed message: ``<t>.<body>`` without a nonce, request-bound with one."""
    assert message(T, b"x") == b"1764949490.x"
    assert message(T, LEASE, nonce=NONCE, method="put", path="/v1/nodes/a") == (
        b'1764949490.8f3c2a91d0e4b7c6.PUT /v1/nodes/a.{"expires_at":1764949550,"expires_in":60}\n'
    )


def test_keys_round_trip_and_match_rfc8032() -> None:
    """The RFC 8032 test key gives its published public key, in hex and through PEM."""
    key = _key()
    assert public_key_hex(key) == RFC8032_PUBLIC
    assert public_key_hex(load_private_key(private_key_pem(key))) == RFC8032_PUBLIC
    assert public_key_hex(load_public_key(public_key_pem(key))) == RFC8032_PUBLIC
    fresh = new_private_key()
    assert public_key_hex(fresh) != RFC8032_PUBLIC


@pytest.mark.parametrize(
    ("text", "reason"),
    [("abc", "64 hex digits"), ("00" * 31, "31 bytes"), ("-----BEGIN PUBLIC KEY-----\nx\n", "PEM")],
)
def test_bad_public_keys(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        load_public_key(text)


def test_rsa_private_key_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="not an Ed25519 key"):
        load_private_key(pem)
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        load_private_key(b"garbage")


def test_bound_signatures_do_not_verify_for_another_request() -> None:
    """An answer signed for (nonce X, PUT /v1/nodes/a) fails for another path, nonce or method."""
    key = _key()
    public = key.public_key()
    signed = header(T, LEASE, secret="s", key=key, nonce="X", method="PUT", path="/v1/nodes/a")
    verify_ed25519(signed, LEASE, public, nonce="X", method="PUT", path="/v1/nodes/a", now=T)
    for nonce, method, path in [
        ("Y", "PUT", "/v1/nodes/a"),
        ("X", "PUT", "/v1/nodes/b"),
        ("X", "DELETE", "/v1/nodes/a"),
    ]:
        with pytest.raises(SignatureError, match="another request"):
            verify_ed25519(signed, LEASE, public, nonce=nonce, method=method, path=path, now=T)
        with pytest.raises(SignatureError, match="another request"):
            verify_v2(signed, LEASE, "s", nonce=nonce, method=method, path=path, now=T)
    with pytest.raises(SignatureError, match="another request"):
        verify_ed25519(signed, LEASE, public, now=T)  # the unbound message differs too


@pytest.mark.parametrize(
    ("value", "message_part"),
    [
        (None, "not signed"),
        ("t=1764949490,v1=00", "no ed25519 pair"),
        ("t=1764949490,ed25519=!!!", "not base64"),
        ("t=1764948000,ed25519=AAAA", "away from this clock"),
    ],
)
def test_bad_ed25519_headers(value: str | None, message_part: str) -> None:
    with pytest.raises(SignatureError, match=message_part):
        verify_ed25519(value, b"", _key().public_key(), now=T)


def test_padded_base64_is_accepted_too() -> None:
    key = _key()
    signed = header(T, b"", key=key)
    assert "=" not in signed.partition("ed25519=")[2]
    verify_ed25519(signed + "==", b"", key.public_key(), now=T)


def test_nonce_rules() -> None:
    assert valid_nonce("a")
    assert valid_nonce("!" * 128)
    assert not valid_nonce("")
    assert not valid_nonce("a" * 129)
    assert not valid_nonce("a b")
    assert not valid_nonce("é")

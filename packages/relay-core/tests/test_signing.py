"""Relay-Signature: the spec's test vectors, and verification failures."""

from __future__ import annotations

import pytest
from relay_core import SignatureError
from relay_core.signing import sign, signature, verify

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

"""Keygen license and machine files: verification, decryption, clock checks, every algorithm."""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relay_core import (
    DecryptionError,
    FileReason,
    InvalidPublicKeyError,
    LicenseFileError,
    VerificationError,
)
from relay_core.keygen import ALGORITHMS, KeygenVerifier, verify_machine_file
from relay_core.testing import LicenseWriter, tamper
from relay_core.testing.clock import to_timestamp

from .conftest import BEFORE_EXPIRY, LICENSE_1_GUID, LICENSE_1_KEY

NOW = to_timestamp("2026-11-28T00:00:00Z")


def test_real_file_verifies_and_decrypts_before_its_expiry(fixtures: Path, public_key: str) -> None:
    """The Keygen-issued fixture yields its GUID, key and meta under a clock before 2026-01-04."""
    raw = (fixtures / "license_1.lic").read_bytes()
    lic = KeygenVerifier(public_key).verify(raw, LICENSE_1_KEY, now=to_timestamp(BEFORE_EXPIRY))
    assert (lic.guid, lic.key, lic.raw) == (LICENSE_1_GUID, LICENSE_1_KEY, raw)
    assert lic.ttl == 2592000
    assert lic.expires_at == int(to_timestamp("2026-01-04T16:49:12.964Z"))
    assert lic.dataset["data"]["attributes"]["name"] == "Relay Test 1"  # type: ignore[index]


def test_real_file_is_expired_today(fixtures: Path, public_key: str) -> None:
    """Today the fixture is rejected as expired."""
    raw = (fixtures / "license_1.lic").read_bytes()
    with pytest.raises(
        DecryptionError, match="^license decryption failed: license file is expired$"
    ):
        KeygenVerifier(public_key).verify(raw, LICENSE_1_KEY, now=NOW)


def test_one_changed_byte_fails_verification(fixtures: Path, public_key: str) -> None:
    """Tampering with the body fails with keygen-go's verification message."""
    raw = tamper((fixtures / "license_1.lic").read_bytes())
    with pytest.raises(
        VerificationError, match="^license verification failed: license file is invalid"
    ):
        KeygenVerifier(public_key).verify(raw, LICENSE_1_KEY, now=to_timestamp(BEFORE_EXPIRY))


def test_wrong_key_fails_decryption(fixtures: Path, public_key: str) -> None:
    """Another license key cannot open the file."""
    raw = (fixtures / "license_1.lic").read_bytes()
    with pytest.raises(
        DecryptionError, match="^license decryption failed: license file is invalid"
    ) as caught:
        KeygenVerifier(public_key).verify(raw, "WRONG-KEY", now=to_timestamp(BEFORE_EXPIRY))
    assert caught.value.reason is FileReason.INVALID


def test_other_public_key_fails_verification(fixtures: Path, writer: LicenseWriter) -> None:
    """A file signed by another account does not verify."""
    raw = (fixtures / "license_1.lic").read_bytes()
    with pytest.raises(VerificationError, match="signature does not match public key"):
        KeygenVerifier(writer.public_key).verify(
            raw, LICENSE_1_KEY, now=to_timestamp(BEFORE_EXPIRY)
        )


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_every_keygen_algorithm_round_trips(
    alg: str, writer: LicenseWriter, rsa_writer: LicenseWriter
) -> None:
    """Files in each of the six algorithms verify (and decrypt) with the matching public key."""
    signer = writer if alg.endswith("ed25519") else rsa_writer
    raw = signer.license(key="K-1", guid="g-1", issued=NOW - 10, expiry=NOW + 3600, alg=alg)
    lic = KeygenVerifier(signer.public_key).verify(raw, "K-1", now=NOW)
    assert (lic.guid, lic.key, lic.expires_at) == ("g-1", "K-1", int(NOW + 3600))
    with pytest.raises(VerificationError):
        KeygenVerifier(signer.public_key).verify(tamper(raw), "K-1", now=NOW)


@pytest.mark.parametrize("alg", ["aes-256-gcm+rsa-sha256", "base64+ed25519"])
def test_algorithm_and_key_type_must_agree(
    alg: str, writer: LicenseWriter, rsa_writer: LicenseWriter
) -> None:
    """An RSA file checked with an Ed25519 key (or the reverse) is invalid, with the reason."""
    signer, other = (rsa_writer, writer) if "rsa" in alg else (writer, rsa_writer)
    raw = signer.license(key="K", alg=alg)
    with pytest.raises(VerificationError, match="needs an"):
        KeygenVerifier(other.public_key).verify(raw, "K", now=NOW)


def test_file_issued_in_the_future_means_the_clock_is_wrong(writer: LicenseWriter) -> None:
    """A file issued more than five minutes ahead fails with 'system clock is out of sync'."""
    raw = writer.license(key="K", issued=NOW + 301)
    with pytest.raises(
        DecryptionError, match="^license decryption failed: system clock is out of sync$"
    ):
        KeygenVerifier(writer.public_key).verify(raw, "K", now=NOW)
    assert KeygenVerifier(writer.public_key).verify(
        writer.license(key="K", issued=NOW + 299), "K", now=NOW
    )


def test_zero_ttl_never_expires(writer: LicenseWriter) -> None:
    """With meta.ttl 0 the expiry is ignored (keygen-go semantics)."""
    raw = writer.license(key="K", issued=NOW - 100, expiry=NOW - 50, ttl=0)
    lic = KeygenVerifier(writer.public_key).verify(raw, "K", now=NOW)
    assert lic.expires_at is None


def test_unknown_algorithm_is_invalid(writer: LicenseWriter) -> None:
    """An algorithm Keygen never issues is rejected as invalid, naming it."""
    raw = writer.license(key="K")
    body = b"".join(raw.split(b"\n")[1:-2])
    cert = json.loads(base64.b64decode(body))
    cert["alg"] = "rot13+ed25519"
    forged = (
        b"-----BEGIN LICENSE FILE-----\n"
        + base64.b64encode(json.dumps(cert).encode())
        + b"\n-----END LICENSE FILE-----\n"
    )
    with pytest.raises(VerificationError, match="unsupported algorithm 'rot13"):
        KeygenVerifier(writer.public_key).verify(forged, "K", now=NOW)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "no public key"),
        ("zz" * 32, "not hex"),
        ("ab" * 16, "16 bytes"),
        ("-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----", "PEM"),
    ],
)
def test_bad_public_keys_are_refused_up_front(key: str, message: str) -> None:
    """Empty, non-hex, short or unreadable public keys raise one clear error."""
    with pytest.raises(InvalidPublicKeyError, match=message):
        KeygenVerifier(key)


def test_machine_file_binds_license_key_and_fingerprint(writer: LicenseWriter) -> None:
    """A machine file opens only with its license key plus the machine's fingerprint."""
    raw = writer.machine(
        license_key="LK", fingerprint="fp", platform="linux/amd64", hostname="h", issued=NOW
    )
    got = verify_machine_file(
        raw, public_key=writer.public_key, license_key="LK", fingerprint="fp", now=NOW
    )
    assert got.dataset["data"]["attributes"]["platform"] == "linux/amd64"  # type: ignore[index]
    with pytest.raises(
        DecryptionError, match="^machine file could not be decrypted: machine file is invalid"
    ):
        verify_machine_file(
            raw, public_key=writer.public_key, license_key="LK", fingerprint="other", now=NOW
        )
    with pytest.raises(
        VerificationError, match="^machine file could not be verified: machine file is invalid"
    ):
        verify_machine_file(
            tamper(raw), public_key=writer.public_key, license_key="LK", fingerprint="fp", now=NOW
        )
    expired = writer.machine(license_key="LK", fingerprint="fp", issued=NOW - 100, expiry=NOW - 1)
    with pytest.raises(
        DecryptionError, match="^machine file could not be decrypted: machine file is expired$"
    ):
        verify_machine_file(
            expired, public_key=writer.public_key, license_key="LK", fingerprint="fp", now=NOW
        )
    future = writer.machine(license_key="LK", fingerprint="fp", issued=NOW + 3600)
    with pytest.raises(
        DecryptionError,
        match="^machine file is desynced with system clock: system clock is out of sync$",
    ):
        verify_machine_file(
            future, public_key=writer.public_key, license_key="LK", fingerprint="fp", now=NOW
        )


def test_a_license_file_is_not_a_machine_file(writer: LicenseWriter) -> None:
    """The signing prefix differs, so a license file never verifies as a machine file."""
    raw = writer.license(key="LKfp").replace(b"LICENSE FILE", b"MACHINE FILE")
    with pytest.raises(VerificationError):
        verify_machine_file(
            raw, public_key=writer.public_key, license_key="LK", fingerprint="fp", now=NOW
        )


# -- fuzz: every input loads or raises one of our errors -----------------------------------------

_SIGNERS: dict[str, LicenseWriter] = {}


def _signer(alg: str) -> LicenseWriter:
    kind = "ed25519" if alg.endswith("ed25519") else "rsa"
    if kind not in _SIGNERS:
        _SIGNERS[kind] = LicenseWriter.ed25519() if kind == "ed25519" else LicenseWriter.rsa(1024)
    return _SIGNERS[kind]


def _load(raw: bytes, public_key: str) -> None:
    with contextlib.suppress(LicenseFileError):
        KeygenVerifier(public_key).verify(raw, "K", now=NOW)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_never_escape_our_errors(data: bytes) -> None:
    """Arbitrary bytes either verify or raise a LicenseFileError, never another exception."""
    _load(data, _signer("ed25519").public_key)
    _load(
        b"-----BEGIN LICENSE FILE-----\n"
        + base64.b64encode(data)
        + b"\n-----END LICENSE FILE-----\n",
        _signer("ed25519").public_key,
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(alg=st.sampled_from(ALGORITHMS), data=st.data())
def test_truncations_and_bit_flips_of_valid_files_never_escape(
    alg: str, data: st.DataObject
) -> None:
    """Cutting or flipping bits of a valid file in any algorithm gives our error or a valid load."""
    signer = _signer(alg)
    raw = signer.license(key="K", issued=NOW - 10, expiry=NOW + 100, alg=alg)
    cut = data.draw(st.integers(0, len(raw)))
    _load(raw[:cut], signer.public_key)
    flipped = bytearray(raw)
    for position in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4)):
        flipped[position] ^= 1 << data.draw(st.integers(0, 7))
    _load(bytes(flipped), signer.public_key)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    alg=st.sampled_from(ALGORITHMS),
    certificate=st.dictionaries(
        st.sampled_from(["enc", "sig", "alg", "ENC"]),
        st.one_of(st.text(max_size=40), st.integers(), st.none()),
    ),
)
def test_forged_certificates_never_escape(alg: str, certificate: dict[str, object]) -> None:
    """Well-armoured certificates with odd fields raise our error, never another exception."""
    body = base64.b64encode(json.dumps(certificate).encode())
    _load(
        b"-----BEGIN LICENSE FILE-----\n" + body + b"\n-----END LICENSE FILE-----\n",
        _signer(alg).public_key,
    )

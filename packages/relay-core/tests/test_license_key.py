"""The key given with a license file must be the file's own `data.attributes.key` (issue 14.3).

An encrypted file proves its key by decrypting with it; an unencrypted (``base64+``) file does
not, so without this rule a wrong key would be stored and handed to nodes with the file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from relay_core import BulkError, LicenseKeyMismatchError, Relay
from relay_core.testing import FrozenClock, LicenseWriter, MemoryStore
from relay_core.testing.clock import to_timestamp

NOW = to_timestamp("2026-11-28T12:00:00Z")
UNENCRYPTED = ("base64+ed25519", "base64+rsa-pss-sha256", "base64+rsa-sha256")


def make() -> Relay:
    return Relay(MemoryStore(), clock=FrozenClock(NOW))


def signer(alg: str, writer: LicenseWriter, rsa_writer: LicenseWriter) -> LicenseWriter:
    return writer if alg.endswith("ed25519") else rsa_writer


@pytest.mark.parametrize("alg", UNENCRYPTED)
def test_an_unencrypted_file_with_another_key_is_rejected(
    alg: str, writer: LicenseWriter, rsa_writer: LicenseWriter, tmp_path: Path
) -> None:
    """The wrong key fails like a bad file, naming the path; nothing is stored."""
    signed = signer(alg, writer, rsa_writer)
    path = tmp_path / "plain.lic"
    path.write_bytes(signed.license(key="RIGHT-KEY", issued=NOW - 60, alg=alg))
    relay = make()
    with pytest.raises(LicenseKeyMismatchError) as caught:
        relay.add_license(path, "WRONG-KEY", public_key=signed.public_key)
    assert str(caught.value) == f"license key does not match the license file '{path}'"
    assert relay.list_licenses() == []


@pytest.mark.parametrize("alg", UNENCRYPTED)
def test_an_unencrypted_file_with_its_own_key_is_added_and_handed_out_with_it(
    alg: str, writer: LicenseWriter, rsa_writer: LicenseWriter
) -> None:
    """The right key (surrounding blanks ignored, as everywhere) adds the file unchanged."""
    signed = signer(alg, writer, rsa_writer)
    raw = signed.license(key="RIGHT-KEY", issued=NOW - 60, alg=alg)
    relay = make()
    relay.add_license(raw, " RIGHT-KEY\n", public_key=signed.public_key)
    lease = relay.claim("node-a")
    assert (lease.license.file, lease.license.key) == (raw, "RIGHT-KEY")


def test_a_bulk_add_with_one_mismatched_key_stores_nothing(writer: LicenseWriter) -> None:
    """The mismatch is one item error of the bulk add, in order, and the good file is not kept."""
    good = writer.license(key="KEY-A", issued=NOW - 60, alg="aes-256-gcm+ed25519")
    plain = writer.license(key="KEY-B", issued=NOW - 60, alg="base64+ed25519")
    relay = make()
    with pytest.raises(BulkError) as caught:
        relay.add_licenses([(good, "KEY-A"), (plain, "KEY-A")], public_key=writer.public_key)
    [(label, error)] = caught.value.errors
    assert label == "<bytes>"
    assert isinstance(error, LicenseKeyMismatchError)
    assert str(error) == "license key does not match the license file"
    assert relay.list_licenses() == []


def test_verify_license_applies_the_same_rule(writer: LicenseWriter) -> None:
    plain = writer.license(key="KEY-B", issued=NOW - 60, alg="base64+ed25519")
    relay = make()
    assert relay.verify_license(plain, "KEY-B", public_key=writer.public_key).key == "KEY-B"
    with pytest.raises(LicenseKeyMismatchError):
        relay.verify_license(plain, "KEY-C", public_key=writer.public_key)

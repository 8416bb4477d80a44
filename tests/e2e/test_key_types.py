"""`relay add` with files signed by each kind of Keygen account key, end to end."""

from __future__ import annotations

import json

import pytest
from relay_core.testing import LicenseWriter

from .conftest import Workspace


@pytest.fixture(scope="module")
def rsa_writer() -> LicenseWriter:
    return LicenseWriter.rsa(2048)


@pytest.mark.parametrize("alg", ["aes-256-gcm+rsa-pss-sha256", "base64+rsa-sha256"])
def test_add_rsa_signed_files_with_a_pem_public_key(
    ws: Workspace, rsa_writer: LicenseWriter, alg: str
) -> None:
    """An RSA account: `--public-key=` takes the PEM block (the `=` keeps its leading dashes from
    reading as a flag); the file is added and listed."""
    key = "RSA-LICENSE-KEY"
    path = ws.root / "rsa.lic"
    path.write_bytes(
        rsa_writer.license(key=key, guid="6f0c1f7e-5d0e-4a48-9a54-2e3c0f0d4b11", alg=alg)
    )
    assert rsa_writer.public_key.startswith("-----BEGIN PUBLIC KEY-----")
    run = ws.relay(
        "add", "--file", "rsa.lic", "--key", key, f"--public-key={rsa_writer.public_key}"
    )
    assert (run.code, run.out, run.err) == (
        0,
        "license added successfully: 6f0c1f7e-5d0e-4a48-9a54-2e3c0f0d4b11\n",
        "",
    )
    listed = json.loads(ws.relay("ls", "--json").out)
    assert [row["id"] for row in listed] == ["6f0c1f7e-5d0e-4a48-9a54-2e3c0f0d4b11"]


def test_rsa_file_with_the_wrong_pem_key_is_rejected(
    ws: Workspace, rsa_writer: LicenseWriter
) -> None:
    """A file signed by another RSA key fails verification: one error line, nothing stored."""
    path = ws.root / "rsa.lic"
    path.write_bytes(rsa_writer.license(key="K"))
    other = LicenseWriter.rsa(2048).public_key
    run = ws.relay("add", "--file", "rsa.lic", "--key", "K", f"--public-key={other}")
    assert run.code == 1
    assert len(run.err_lines) == 1
    assert run.err_lines[0].startswith("error: "), run.err
    assert ws.query("SELECT count(*) FROM licenses") == [(0,)]

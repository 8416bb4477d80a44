"""Shared fixtures: the real Keygen files and a test signing key."""

from __future__ import annotations

from pathlib import Path

import pytest
from relay_core.testing import LicenseWriter

# The real Keygen files live in the repository (tests/fixtures/keygen).
FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "keygen"
LICENSE_1_KEY = "9E32DD-D8CC22-771926-C2D834-C506DC-V3"
LICENSE_2_KEY = "9A96B8-FD08CD-8C433B-7657C8-8A8655-V3"
LICENSE_1_GUID = "dcea31a4-1664-4633-9f52-4a1b0b5ea2ef"
BEFORE_EXPIRY = "2025-12-10T00:00:00Z"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not (FIXTURES / "license_1.lic").exists():
        pytest.fail(f"the Keygen fixtures are missing at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def public_key(fixtures: Path) -> str:
    return (fixtures / "public_key.hex").read_text().strip()


@pytest.fixture(scope="session")
def writer() -> LicenseWriter:
    return LicenseWriter.ed25519()


@pytest.fixture(scope="session")
def rsa_writer() -> LicenseWriter:
    return LicenseWriter.rsa()

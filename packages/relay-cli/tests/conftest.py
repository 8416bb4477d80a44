"""Fixtures for command tests: the real app wired to a MemoryStore, a frozen clock and a fake env."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import attrs
import pytest
from relay_cli.cli import create_app
from relay_cli.locking import LockConfig
from relay_cli.machine import Machine
from relay_core import Relay
from relay_core.testing import FrozenClock, LicenseWriter, MemoryStore

# The real Keygen files live in the repository (tests/fixtures/keygen).
FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "keygen"
LICENSE_1_GUID = "dcea31a4-1664-4633-9f52-4a1b0b5ea2ef"
LICENSE_1_KEY = "9E32DD-D8CC22-771926-C2D834-C506DC-V3"
LICENSE_2_GUID = "592d08c2-4045-462c-a981-dcd2bb78ce06"
LICENSE_2_KEY = "9A96B8-FD08CD-8C433B-7657C8-8A8655-V3"
NOW = "2025-12-10T00:00:00Z"
"""Before the real fixtures expire (2026-01-04), so they can be added under this clock."""


@attrs.define
class Result:
    code: int
    out: str
    err: str


@attrs.define
class Cli:
    """Runs `relay` in-process against one MemoryStore; records every database the app opened."""

    capsys: pytest.CaptureFixture[str]
    tmp: Path
    store: MemoryStore = attrs.Factory(MemoryStore)
    clock: FrozenClock = attrs.Factory(lambda: FrozenClock(NOW))
    env: dict[str, str] = attrs.Factory(dict)
    writer: LicenseWriter = attrs.Factory(LicenseWriter.ed25519)
    opened: list[tuple[str, dict[str, str]]] = attrs.Factory(list)
    lock: LockConfig | None = None
    machine: Machine | None = None

    def _open(self, database: str, *, pragmas: Mapping[str, str]) -> MemoryStore:
        self.opened.append((database, dict(pragmas)))
        return self.store

    def __call__(self, *args: str) -> Result:
        app = create_app(
            open_store=self._open,
            clock=self.clock,
            environ=self.env,
            lock=self.lock,
            machine=self.machine,
        )
        self.capsys.readouterr()
        code = app(list(args), result_action="return_value")
        captured = self.capsys.readouterr()
        return Result(code if isinstance(code, int) else 0, captured.out, captured.err)

    @property
    def relay(self) -> Relay:
        return Relay(self.store, clock=self.clock)

    def license(self, name: str, *, key: str | None = None, **kwargs: object) -> tuple[str, str]:
        """Write a license file signed by `writer` into tmp; return (path, key)."""
        key = key or f"KEY-{name.upper()}"
        path = self.tmp / f"{name}.lic"
        path.write_bytes(self.writer.license(key=key, issued=self.clock.now() - 60, **kwargs))  # type: ignore[arg-type]
        return str(path), key

    def guids(self) -> list[str]:
        return [lic.guid for lic in self.relay.list_licenses()]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    return Cli(capsys, tmp_path)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not (FIXTURES / "license_1.lic").exists():
        pytest.fail(f"the Keygen fixtures are missing at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def keygen_public_key(fixtures: Path) -> str:
    return (fixtures / "public_key.hex").read_text().strip()

"""A node-locked Relay installation in a temporary venv, built once per test session.

The vendor's steps, for this machine: `relay fingerprint`, `relay lock build`, then
`pip install --no-deps --no-index relay_lock-*.whl` into a fresh venv beside relay. The shared
development venv stays unlocked. The fresh venv gets relay's code from the shared venv through
one `.pth` line (`site.addsitedir`), and its own `relay` console script from a two-file
`relay-cli` wheel that pip installs, so `<venv>/bin/relay` is a real pip-made script.
Building the venv takes about 1.5 s (`python -m venv --without-pip` plus one offline pip run).
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Mapping
from contextlib import closing
from pathlib import Path

import attrs
import pytest
import relay_cli
from relay_cli.wheel import write_wheel
from relay_core.testing import LicenseWriter

SHARED_RELAY = str(Path(sys.executable).with_name("relay"))
LICENSE_KEY = "LOCKED-RELAY-LICENSE-KEY-V3"
SIGNING_SECRET = "hunter2-locked"
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def go_platform() -> str | None:
    """This machine in Go's names, for the common Linux machines (None elsewhere)."""
    arch = _GOARCH.get(platform.machine().lower())
    if not sys.platform.startswith("linux") or arch is None:
        return None
    return f"linux/{arch}"


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RELAY_", "KEYGEN_", "PIP_"))
        and k not in {"PORT", "BIND_ADDR", "DEBUG"}
    }
    env["NO_COLOR"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra or {})
    return env


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.frozen
class Run:
    code: int
    out: str
    err: str


def run(args: list[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Run:
    done = subprocess.run(
        args, cwd=cwd, env=clean_env(env), capture_output=True, text=True, timeout=120, check=False
    )
    return Run(done.returncode, done.stdout, done.stderr)


@attrs.define
class LockedInstall:
    """The temporary venv with a lock wheel for this machine installed, and what it was built from."""

    venv: Path
    dist: Path
    writer: LicenseWriter
    fingerprint: str
    hostname: str
    platform: str | None
    port: int
    signing_public_key: str = ""
    """The public half of the Ed25519 key baked into the session's lock."""

    @property
    def relay_path(self) -> str:
        return str(self.venv / "bin" / "relay")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def relay(self, *args: str, cwd: Path, env: Mapping[str, str] | None = None) -> Run:
        return run([self.relay_path, *args], cwd=cwd, env=env)

    def pip_install(self, *wheels: Path) -> None:
        done = run(
            [sys.executable, "-m", "pip", "--python", self.python,
             "install", "--quiet", "--no-deps", "--no-index", "--force-reinstall",
             *map(str, wheels)],
        )  # fmt: skip
        assert done.code == 0, done.err

    def pip_uninstall(self, name: str) -> None:
        done = run(
            [sys.executable, "-m", "pip", "--python", self.python,
             "uninstall", "--quiet", "--yes", name],
        )  # fmt: skip
        assert done.code == 0, done.err

    def build_lock(self, output: Path, **values: str | None) -> Path:
        """`relay lock build` run with the shared (unlocked) relay, as a vendor would."""
        flags = {
            "public-key": self.writer.public_key,
            "fingerprint": self.fingerprint,
            "platform": self.platform,
            "hostname": self.hostname,
            "addr": "127.0.0.1",
            "port": str(self.port),
            "signing-secret": SIGNING_SECRET,
        }
        flags.update({k.replace("_", "-"): v for k, v in values.items()})
        args = [part for k, v in flags.items() if v is not None for part in (f"--{k}", v)]
        done = run([SHARED_RELAY, "lock", "build", *args, "--output", str(output)])
        assert done.code == 0, done.err
        return Path(done.out.strip())

    def machine_file(self, **changes: object) -> bytes:
        kwargs: dict[str, object] = {
            "license_key": LICENSE_KEY,
            "fingerprint": self.fingerprint,
            "platform": self.platform,
            "hostname": self.hostname,
        }
        kwargs.update(changes)
        return self.writer.machine(**kwargs)  # type: ignore[arg-type]


def _launcher_wheel(output: Path) -> Path:
    """A `relay-cli` wheel holding only the console script and a .pth to the shared venv."""
    shared = sysconfig.get_paths()["purelib"]
    return write_wheel(
        output,
        name="relay-cli",
        version=relay_cli.__version__,
        summary="relay's console script over the development checkout (tests only)",
        files={"relay_dev_workspace.pth": f"import site; site.addsitedir({shared!r})\n".encode()},
        entry_points={"console_scripts": {"relay": "relay_cli.app:main"}},
    )


@pytest.fixture(scope="session")
def locked_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LockedInstall]:
    """One venv per session with relay and a lock for this machine's real fingerprint."""
    if not Path(SHARED_RELAY).exists():
        pytest.fail(f"relay is not installed beside {sys.executable}")
    probe = run([SHARED_RELAY, "version"])
    assert "+node-locked" not in probe.out, "the shared venv must not be node-locked"
    fingerprint = run([SHARED_RELAY, "fingerprint"])
    if fingerprint.code != 0:
        pytest.skip(f"this machine has no fingerprint: {fingerprint.err.strip()}")

    root = tmp_path_factory.mktemp("locked-venv")
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    install = LockedInstall(
        venv=venv,
        dist=root / "dist",
        writer=LicenseWriter.ed25519(),
        fingerprint=fingerprint.out.strip(),
        hostname=socket.gethostname(),
        platform=go_platform(),
        port=free_port(),
    )
    key_file = root / "signing-key.pem"
    made = run([SHARED_RELAY, "signing-key", "new", "--out", str(key_file)])
    assert made.code == 0, made.err
    install.signing_public_key = made.out.splitlines()[0]
    lock = install.build_lock(install.dist, signing_key_file=str(key_file))
    install.pip_install(_launcher_wheel(root / "launcher"), lock)
    try:
        yield install
    finally:
        shutil.rmtree(root, ignore_errors=True)

"""The one-file `relay` and the wheelhouse, as `./dev dist` builds them, tested as shipped.

The session builds them with packaging/build.py, which answers from its cache (keyed by a hash of
the sources, outside the clone) in about a second when nothing changed, and otherwise builds for
about two minutes. Nothing here skips: a build that fails fails the tests.

Every run of the built `relay` is from a copy of the file alone in an empty folder, with the
environment `env -i PATH=/usr/bin:/bin HOME=<empty folder>` would give it.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "packaging" / "build.py"


@attrs.frozen
class Run:
    code: int
    out: str
    err: str


@attrs.frozen
class Dist:
    """What `./dev dist` produced: dist/relay, its checksum file and dist/wheelhouse/."""

    folder: Path

    @property
    def relay(self) -> Path:
        return self.folder / "relay"

    @property
    def wheelhouse(self) -> Path:
        return self.folder / "wheelhouse"


def minimal_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What `env -i PATH=/usr/bin:/bin HOME=<home>` leaves, plus `extra`."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), **(extra or {})}


def run(
    args: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float = 120
) -> Run:  # fmt: skip
    done = subprocess.run(
        args, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    return Run(done.returncode, done.stdout, done.stderr)


def wait_healthy(process: subprocess.Popen[str], port: int, timeout: float = 30) -> int:
    """Poll GET /v1/health until it answers; its status (fails if the server exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"relay serve exited with {process.returncode}: {err or out}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/v1/health")
                return conn.getresponse().status
            finally:
                conn.close()
        except OSError:
            time.sleep(0.02)
    pytest.fail("relay serve did not answer /v1/health in time")


def serve_then_stop(relay: str | Path, cwd: Path, env: Mapping[str, str]) -> None:
    """`relay serve` on a free port answers /v1/health, then exits 0 on SIGTERM, having printed
    only that it started."""
    port = free_port()
    process = subprocess.Popen(
        [str(relay), "serve", "--bind", "127.0.0.1", "--port", str(port)],
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_healthy(process, port) == 200
    finally:
        process.terminate()
        out, err = process.communicate(timeout=20)
    assert (process.returncode, out) == (0, "the server is starting\n"), err


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def dist() -> Dist:
    """Build (or take from the cache) dist/relay and dist/wheelhouse/ for this checkout."""
    done = subprocess.run(
        [sys.executable, str(BUILD)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"./dev dist failed ({done.returncode}):\n{done.stderr[-4000:]}")
    folder = ROOT / "dist"
    assert (folder / "relay").is_file()
    return Dist(folder)


@attrs.frozen
class Alone:
    """A copy of one executable alone in an empty folder, with an empty HOME beside it."""

    relay: Path
    home: Path

    @property
    def folder(self) -> Path:
        return self.relay.parent

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return minimal_env(self.home, extra)

    def __call__(
        self, *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> Run:
        return run([str(self.relay), *args], cwd=cwd, env=self.env(env), timeout=timeout)


def alone(executable: Path, root: Path) -> Alone:
    """Copy `executable` alone into `root`/bin (a new, empty folder)."""
    folder, home = root / "bin", root / "home"
    folder.mkdir(parents=True)
    home.mkdir()
    target = folder / "relay"
    shutil.copy2(executable, target)
    assert sorted(os.listdir(folder)) == ["relay"]
    return Alone(target, home)


@pytest.fixture(scope="session")
def onefile(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Alone:
    """dist/relay copied alone into an empty folder outside the checkout."""
    return alone(dist.relay, tmp_path_factory.mktemp("onefile"))

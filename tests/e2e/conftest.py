"""End-to-end fixtures: the installed `relay` run as a subprocess in a temporary folder.

Nothing here imports relay-cli: the tests see only the command line, the HTTP API and the
SQLite file, as a vendor's script and a node would.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import closing
from pathlib import Path

import attrs
import pytest
from relay_core.testing import LicenseWriter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keygen"
KEYGEN_LICENSE_1 = (
    "license_1.lic",
    "dcea31a4-1664-4633-9f52-4a1b0b5ea2ef",
    "9E32DD-D8CC22-771926-C2D834-C506DC-V3",
)
KEYGEN_LICENSE_2 = (
    "license_2.lic",
    "592d08c2-4045-462c-a981-dcd2bb78ce06",
    "9A96B8-FD08CD-8C433B-7657C8-8A8655-V3",
)

# Variables that change relay's behaviour; the tests set the ones they need explicitly.
_RELAY_VARIABLES = ("PORT", "BIND_ADDR", "DEBUG", "NO_COLOR", "CI", "TERM")


def relay_executable() -> str:
    """`$RELAY_EXECUTABLE` (e.g. the one-file build, see tests/shipped), else the `relay` installed
    next to this Python (the shared venv), else the one on PATH."""
    chosen = os.environ.get("RELAY_EXECUTABLE")
    if chosen:
        if not os.access(chosen, os.X_OK):
            pytest.fail(f"RELAY_EXECUTABLE={chosen} is not an executable file")
        return chosen
    beside = Path(sys.executable).with_name("relay")
    if beside.exists():
        return str(beside)
    found = shutil.which("relay")
    if found is None:
        pytest.fail("the `relay` command is not installed (pip install -e packages/relay-cli)")
    return found


RELAY = relay_executable()
# With RELAY_EXECUTABLE, relay runs with only PATH=/usr/bin:/bin and HOME (as `env -i` would):
# a one-file build must need nothing from the environment of the machine it is copied to.
MINIMAL_ENV = bool(os.environ.get("RELAY_EXECUTABLE"))


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    if MINIMAL_ENV:
        home = os.environ.get("RELAY_EXECUTABLE_HOME") or str(Path.home())
        return {"PATH": "/usr/bin:/bin", "HOME": home, **(extra or {})}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RELAY_", "KEYGEN_")) and k not in _RELAY_VARIABLES
    }
    env.update(extra or {})
    return env


@attrs.frozen
class Run:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


@attrs.frozen
class LicenseFile:
    path: Path
    key: str
    guid: str


@attrs.define
class Workspace:
    """A temporary folder with license files, where `relay` runs with ./relay.sqlite."""

    root: Path
    writer: LicenseWriter

    @property
    def public_key(self) -> str:
        return self.writer.public_key

    @property
    def db(self) -> Path:
        return self.root / "relay.sqlite"

    def relay(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> Run:
        """Run `relay args...` here; never tolerate a traceback."""
        done = subprocess.run(
            [RELAY, *args],
            cwd=self.root,
            env=base_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return Run(done.returncode, done.stdout, done.stderr)

    def license(self, name: str, *, key: str | None = None, **kwargs: object) -> LicenseFile:
        """Write a valid license file signed by this workspace's key."""
        import uuid

        guid = str(kwargs.pop("guid", uuid.uuid4()))
        key = key or f"KEY-{name.upper()}-{guid[:8]}"
        path = self.root / f"{name}.lic"
        issued = kwargs.pop("issued", time.time() - 60)
        path.write_bytes(self.writer.license(key=key, guid=guid, issued=issued, **kwargs))  # type: ignore[arg-type]
        return LicenseFile(path, key, guid)

    def add(self, *files: LicenseFile, pool: str | None = None, database: str | None = None) -> Run:
        args = ["add", "--public-key", self.public_key]
        for lic in files:
            args += ["--file", lic.path.name, "--key", lic.key]
        if pool:
            args += ["--pool", pool]
        if database:
            args += ["--database", database]
        run = self.relay(*args)
        assert run.code == 0, run.err
        return run

    def snapshot(self, db: Path | None = None) -> list[str]:
        """Every schema statement and row of the database (empty if there is no file)."""
        path = db or self.db
        if not path.exists():
            return []
        with closing(sqlite3.connect(path)) as conn:
            return list(conn.iterdump())

    def query(self, sql: str, db: Path | None = None) -> list[tuple[object, ...]]:
        with closing(sqlite3.connect(db or self.db)) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture(scope="session")
def writer() -> LicenseWriter:
    return LicenseWriter.ed25519()


@pytest.fixture
def ws(tmp_path: Path, writer: LicenseWriter) -> Workspace:
    return Workspace(tmp_path, writer)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not (FIXTURES / "license_1.lic").exists():
        pytest.fail(f"the Keygen fixtures are missing at {FIXTURES}")
    return FIXTURES


def free_port(host: str = "127.0.0.1") -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@attrs.frozen
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


@attrs.define
class Server:
    """One `relay serve` subprocess on a loopback port."""

    process: subprocess.Popen[str]
    host: str
    port: int

    def request(
        self, method: str, path: str, *, pool: str | None = None, host: str | None = None
    ) -> Response:
        conn = http.client.HTTPConnection(host or self.host, self.port, timeout=10)
        try:
            conn.request(method, path, headers={"Relay-Pool": pool} if pool is not None else {})
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def claim(self, fingerprint: str, pool: str | None = None) -> Response:
        return self.request("PUT", f"/v1/nodes/{fingerprint}", pool=pool)

    def release(self, fingerprint: str, pool: str | None = None) -> Response:
        return self.request("DELETE", f"/v1/nodes/{fingerprint}", pool=pool)

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                out, err = self.process.communicate()
                pytest.fail(f"relay serve exited with {self.process.returncode}: {err or out}")
            try:
                if self.request("GET", "/v1/health").status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail("relay serve did not answer /v1/health in time")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> tuple[int, str, str]:
        """Signal the server and wait; kill it if it hangs. Returns (exit code, stdout, stderr)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
            pytest.fail(f"relay serve did not stop within {timeout}s after signal {sig}")
        return self.process.returncode, out, err


@attrs.define
class ServerFactory:
    ws: Workspace
    started: list[Server] = attrs.Factory(list)

    def __call__(
        self,
        *args: str,
        host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> Server:
        port = free_port(host)
        process = subprocess.Popen(
            [RELAY, "serve", "--bind", host, "--port", str(port), *args],
            cwd=self.ws.root,
            env=base_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        server = Server(process, host, port)
        self.started.append(server)
        if wait:
            server.wait_ready()
        return server

    def stop_all(self) -> None:
        for server in self.started:
            if server.process.poll() is None:
                server.stop()


@pytest.fixture
def serve(ws: Workspace) -> Iterator[ServerFactory]:
    factory = ServerFactory(ws)
    try:
        yield factory
    finally:
        factory.stop_all()

"""Fixtures for testing relay-client against the real `relay serve` in a subprocess on loopback.

Every process a test starts (servers and client workers) is stopped at teardown.
"""

from __future__ import annotations

import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from relay_client import ClientError, RelayClient
from relay_core.testing import LicenseWriter

BIN = Path(sys.executable).parent
RELAY = str(BIN / "relay")
WORKER = str(Path(__file__).with_name("worker.py"))


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll until `predicate()` or `timeout` seconds; returns the last result."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@dataclass
class RelayProcess:
    """One `relay serve` subprocess over `database`."""

    database: Path
    port: int
    args: list[str]
    secret: str | None
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RelayProcess:
        command = [RELAY, "--database", str(self.database), "-vvv", "serve", "--bind", "127.0.0.1"]
        command += ["--port", str(self.port), *self.args]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        probe = RelayClient(self.url, fingerprint="probe", signing_secret=self.secret, timeout=1)
        if not wait_for(lambda: self._healthy(probe), timeout=20):
            self.stop()
            pytest.fail(f"relay serve did not come up:\n{self.log.read_text()[-2000:]}")
        return self

    def _healthy(self, probe: RelayClient) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            return False
        try:
            probe.health()
        except ClientError:
            return False
        return True

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL if it does not stop within 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    # -- the server's database, read-only, for black-box checks -----------------------------

    def query(self, sql: str) -> int:
        connection = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=10)
        try:
            return int(connection.execute(sql).fetchone()[0])
        finally:
            connection.close()

    def leased(self) -> int:
        return self.query("SELECT COUNT(*) FROM licenses WHERE node_id IS NOT NULL")

    def active_nodes(self) -> int:
        return self.query("SELECT COUNT(*) FROM nodes WHERE deactivated_at IS NULL")


@dataclass
class Relays:
    """Starts `relay serve` processes with licenses added through `relay add`."""

    tmp: Path
    writer: LicenseWriter = field(default_factory=LicenseWriter.ed25519)
    started: list[RelayProcess] = field(default_factory=list)

    def add(self, database: Path, seats: int, pool: str | None = None) -> None:
        files: list[str] = []
        keys: list[str] = []
        for i in range(seats):
            key = f"{pool or 'global'}-KEY-{i}-{database.stem}"
            path = self.tmp / f"{key}.lic"
            path.write_bytes(self.writer.license(key=key))
            files += ["--file", str(path)]
            keys += ["--key", key]
        command = [RELAY, "--database", str(database), "add", *files, *keys]
        command += ["--public-key", self.writer.public_key]
        if pool:
            command += ["--pool", pool]
        done = subprocess.run(command, capture_output=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr.decode()

    def serve(
        self,
        *,
        seats: int = 1,
        pool: str | None = None,
        secret: str | None = None,
        ttl: str = "30s",
        cull_interval: str = "1s",
        name: str = "relay",
        extra: Sequence[str] = (),
    ) -> RelayProcess:
        database = self.tmp / f"{name}.sqlite"
        self.add(database, seats, pool)
        args = ["--ttl", ttl, "--cull-interval", cull_interval, *extra]
        if secret:
            args += ["--signing-secret", secret]
        if pool:
            args += ["--pool", pool]
        server = RelayProcess(database, free_port(), args, secret, self.tmp / f"{name}.log")
        self.started.append(server)
        return server.start()


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[Relays]:
    """Factory of real relay servers; all are stopped after the test."""
    factory = Relays(tmp_path)
    try:
        yield factory
    finally:
        for server in factory.started:
            server.stop()


@dataclass
class Worker:
    """A client application process (tests/client/worker.py); its output is read by a thread."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.strip())
        self._queue.put("")  # end of output

    def read_line(self, timeout: float = 30) -> str:
        """The next line of output ('' once the process has ended); fails on timeout."""
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"worker printed nothing for {timeout}s; so far: {self.lines}")
        self.lines.append(line)
        return line

    def expect(self, prefix: str, timeout: float = 30) -> str:
        line = self.read_line(timeout)
        assert line.startswith(prefix), f"expected {prefix!r}, got {line!r} (all: {self.lines})"
        return line


@pytest.fixture
def workers() -> Iterator[Callable[..., Worker]]:
    """``workers(url, fingerprint, *args)`` starts a client process; all are killed at teardown."""
    started: list[Worker] = []

    def start(url: str, fingerprint: str, *args: str) -> Worker:
        proc = subprocess.Popen(
            [sys.executable, WORKER, url, fingerprint, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        worker = Worker(proc)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            if worker.proc.poll() is None:
                worker.proc.kill()
            worker.proc.wait(timeout=10)

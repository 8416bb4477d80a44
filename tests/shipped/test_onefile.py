"""dist/relay, alone in an empty folder with a minimal environment, does what the venv's does."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import tarfile
from importlib.metadata import entry_points
from pathlib import Path

import relay_cli

from .conftest import ROOT, Alone, Dist, minimal_env, run, serve_then_stop

# The end-to-end CLI and server tests (tests/e2e) that run against dist/relay as they run against
# the venv's relay: add (Ed25519 and RSA files), ls, stat, logs, serve, claim, heartbeat, release,
# SIGTERM and SIGINT stops, culling, signatures, bad inputs.
E2E_FILES = ("tests/e2e/test_cli.py", "tests/e2e/test_serve.py", "tests/e2e/test_key_types.py")


def test_version_prints_the_venv_version_and_names_platform_and_glibc(
    onefile: Alone, tmp_path: Path
) -> None:
    """stdout is the venv's line byte for byte (scripts compare it); stderr names the build."""
    venv = subprocess.run(
        [str(Path(sys.executable).with_name("relay")), "version"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = onefile("version", cwd=tmp_path)
    assert (result.code, result.out) == (0, venv.stdout)
    assert result.out == relay_cli.__version__ + "\n"
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
    described = re.fullmatch(
        rf"one-file build for linux/{arch}, glibc >= (\d+)\.(\d+), Python "
        + re.escape(platform.python_version())
        + "\n",
        result.err,
    )
    assert described, result.err
    # The floor is no newer than the glibc this machine runs it with.
    running = tuple(int(p) for p in platform.libc_ver()[1].split(".")[:2])
    assert (2, 17) <= (int(described[1]), int(described[2])) <= running
    assert onefile("--version", cwd=tmp_path).out == f"relay version {venv.stdout}"
    assert list(tmp_path.iterdir()) == []


def test_checksum_file_verifies(dist: Dist) -> None:
    """dist/relay.sha256 is in `sha256sum -c` format and matches dist/relay."""
    done = subprocess.run(
        ["sha256sum", "-c", "relay.sha256"],
        cwd=dist.folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "relay: OK\n"), done.stderr


def test_every_storage_backend_installed_here_is_bundled(onefile: Alone, tmp_path: Path) -> None:
    """The binary finds the same `relay.storage` entry points as the venv it was built from."""
    here = sorted({point.name for point in entry_points(group="relay.storage")})
    assert "sqlite" in here
    result = onefile("--database", "nosuch://x", "ls", cwd=tmp_path)
    assert result.code == 1
    assert result.err == (
        f"error: no storage backend \"nosuch\" for database 'nosuch://x' "
        f"(installed: {', '.join(here)})\n"
    )


def test_e2e_cli_and_server_tests_pass_against_the_one_file_relay(
    onefile: Alone, tmp_path: Path
) -> None:
    """The e2e files, run by pytest with RELAY_EXECUTABLE=<the lone copy>: all pass, none skip."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(RELAY_EXECUTABLE=str(onefile.relay), RELAY_EXECUTABLE_HOME=str(onefile.home))
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *E2E_FILES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    count = sum(1 for line in collected.stdout.splitlines() if "::" in line)
    assert count >= 60, collected.stdout[-2000:]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfEs", "--basetemp", str(tmp_path / "e2e"),
         *E2E_FILES],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert re.fullmatch(rf"{count} passed in .*", summary), summary
    # Nothing was written next to the lone executable.
    assert sorted(os.listdir(onefile.folder)) == ["relay"]


def test_serve_in_a_minimal_environment_stops_on_sigterm(onefile: Alone, tmp_path: Path) -> None:
    """Direct check of the shipped shape: `relay serve` answers /v1/health and exits 0 on SIGTERM
    (the e2e files cover claims, heartbeats and releases)."""
    serve_then_stop(onefile.relay, tmp_path, onefile.env())
    assert (tmp_path / "relay.sqlite").exists()


def test_one_folder_build_runs_alone_and_serves(dist: Dist, tmp_path: Path) -> None:
    """dist/relay-onedir.tar.gz verifies, unpacks to a folder that runs with a minimal
    environment: same version line, names itself one-folder, serves and stops on SIGTERM."""
    check = subprocess.run(
        ["sha256sum", "-c", "relay-onedir.tar.gz.sha256"],
        cwd=dist.folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.stdout == "relay-onedir.tar.gz: OK\n", check.stderr
    site, home = tmp_path / "opt", tmp_path / "home"
    site.mkdir()
    home.mkdir()
    with tarfile.open(dist.folder / "relay-onedir.tar.gz") as archive:
        archive.extractall(site, filter="tar")
    relay = site / "relay-onedir" / "relay"
    work = tmp_path / "work"
    work.mkdir()
    version = run([str(relay), "version"], cwd=work, env=minimal_env(home))
    assert (version.code, version.out) == (0, relay_cli.__version__ + "\n")
    assert version.err.startswith("one-folder build for linux/"), version.err
    serve_then_stop(relay, work, minimal_env(home))

"""dist/wheelhouse/ installs relay into a fresh venv with no index, and that relay serves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import relay_cli

from .conftest import Dist, Run, minimal_env, run, serve_then_stop


def test_sha256sums_lists_and_matches_every_wheel(dist: Dist) -> None:
    done = subprocess.run(
        ["sha256sum", "-c", "--strict", "SHA256SUMS"],
        cwd=dist.wheelhouse,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    listed = sorted(line.split(": ")[0] for line in done.stdout.splitlines())
    wheels = sorted(p.name for p in dist.wheelhouse.iterdir() if p.name != "SHA256SUMS")
    assert listed == wheels
    assert all(name.endswith(".whl") for name in wheels)
    # Wheels for every supported CPython, not only the one that built them.
    for tag in ("cp311", "cp312", "cp313", "cp314"):
        assert any(f"-{tag}-" in name for name in wheels), tag


def test_offline_install_into_a_fresh_venv_then_version_and_serve(
    dist: Dist, tmp_path: Path
) -> None:
    """`pip install --no-index --find-links dist/wheelhouse relay-cli` with no pip configuration
    (so no other find-links or index can help), then that venv's relay runs and serves."""
    venv, home = tmp_path / "venv", tmp_path / "home"
    home.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = minimal_env(home, {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    install = run(
        [str(venv / "bin" / "pip"), "install", "--no-index", "--find-links",
         str(dist.wheelhouse), "relay-cli"],
        cwd=tmp_path, env=env, timeout=600,
    )  # fmt: skip
    assert install.code == 0, install.out + install.err
    relay = str(venv / "bin" / "relay")
    assert run([relay, "version"], cwd=tmp_path, env=env) == Run(
        0, relay_cli.__version__ + "\n", ""
    )
    serve_then_stop(relay, tmp_path, minimal_env(home))

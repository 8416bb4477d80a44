"""The node-locked one-file `relay` behaves exactly as a venv with the same lock wheel installed.

The vendor's step is `relay lock build ... --binary dist/relay`, which writes the lock wheel and
<output>/relay with the lock baked in. The venv side of each comparison is relay-cli from the
development venv with that very wheel unpacked onto its path (a wheel install is an unzip), so
both sides read the same lock; each runs in its own empty folder with the same files in it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path

import attrs
import pytest
import relay_cli
from relay_core.testing import LicenseWriter

from .conftest import ROOT, Alone, Dist, Run, alone, run, serve_then_stop

VENV_RELAY = str(Path(sys.executable).with_name("relay"))
LICENSE_KEY = "LOCKED-ONEFILE-LICENSE-KEY-V3"
KEY_ENV = {"RELAY_NODE_LOCKED_LICENSE_KEY": LICENSE_KEY}
LAUNCH = "import sys; sys.argv[0] = 'relay'; from relay_cli.app import main; main()"


def go_platform() -> str:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
    return f"linux/{arch}"


@attrs.frozen
class Locked:
    """One lock, both ways: the one-file binary alone in a folder, and the wheel on a venv path."""

    binary: Alone
    wheel: Path
    site: Path
    root: Path

    def venv(self, *args: str, cwd: Path, env: Mapping[str, str] | None = None) -> Run:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RELAY_", "KEYGEN_", "PYTHON")) and k not in {"DEBUG", "NO_COLOR"}
        }
        base.update(PYTHONPATH=str(self.site), **(env or {}))
        return run([sys.executable, "-c", LAUNCH, *args], cwd=cwd, env=base)

    def both(
        self, *args: str, files: Mapping[str, bytes], env: Mapping[str, str] | None = None
    ) -> tuple[Run, Run]:
        """Run `args` with each build, each in a fresh folder holding `files`."""
        results = []
        for side in ("onefile", "venv"):
            folder = self.root / f"{side}-{time.monotonic_ns()}"
            folder.mkdir()
            for name, data in files.items():
                (folder / name).write_bytes(data)
            if side == "onefile":
                results.append(self.binary(*args, cwd=folder, env=env))
            else:
                results.append(self.venv(*args, cwd=folder, env=env))
            assert not (folder / "relay.sqlite").exists() or results[-1].code == 0
        return results[0], results[1]


@attrs.frozen
class Setup:
    writer: LicenseWriter
    fingerprint: str
    hostname: str
    here: Locked
    foreign: Locked

    def machine_file(self, **changes: object) -> bytes:
        kwargs: dict[str, object] = {
            "license_key": LICENSE_KEY,
            "fingerprint": self.fingerprint,
            "platform": go_platform(),
            "hostname": self.hostname,
        }
        kwargs.update(changes)
        return self.writer.machine(**kwargs)  # type: ignore[arg-type]


def lock_build(dist: Dist, output: Path, **flags: str) -> tuple[Path, Path]:
    """`relay lock build ... --binary dist/relay` with the venv's relay, as the vendor runs it."""
    args = [part for k, v in flags.items() for part in (f"--{k.replace('_', '-')}", v)]
    done = subprocess.run(
        [VENV_RELAY, "lock", "build", *args, "--binary", str(dist.relay), "--output", str(output)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    wheel, binary = done.stdout.splitlines()
    assert Path(binary) == output / "relay"
    return Path(wheel), Path(binary)


def unpack(wheel: Path, site: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


@pytest.fixture(scope="module")
def setup(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    probe = subprocess.run([VENV_RELAY, "fingerprint"], capture_output=True, text=True, check=False)
    assert probe.returncode == 0, (
        f"this machine needs a machine id for node-locking: {probe.stderr}"
    )
    fingerprint, hostname = probe.stdout.strip(), socket.gethostname()
    writer = LicenseWriter.ed25519()
    root = tmp_path_factory.mktemp("locked")
    common = {"public_key": writer.public_key, "platform": go_platform(), "hostname": hostname}
    made = {}
    for name, fp in (
        ("here", fingerprint),
        ("foreign", hashlib.sha256(fingerprint.encode()).hexdigest()),
    ):
        wheel, binary = lock_build(dist, root / name / "out", fingerprint=fp, **common)
        made[name] = Locked(
            binary=alone(binary, root / name / "alone"),
            wheel=wheel,
            site=unpack(wheel, root / name / "site"),
            root=root / name,
        )
    return Setup(writer, fingerprint, hostname, made["here"], made["foreign"])


def test_version_has_the_same_node_locked_suffix(setup: Setup, tmp_path: Path) -> None:
    fp = setup.fingerprint
    expected = f"{relay_cli.__version__}+node-locked.{fp[:4]}..{fp[-4:]}\n"
    onefile, venv = setup.here.both("version", files={})
    assert (onefile.code, onefile.out) == (venv.code, venv.out) == (0, expected)
    assert onefile.err.startswith("one-file build for linux/")
    assert venv.err == ""
    onefile, venv = setup.here.both("--version", files={})
    assert onefile.out == venv.out == f"relay version {expected}"


def test_valid_machine_file_adds_lists_and_serves(setup: Setup, tmp_path: Path) -> None:
    """With this machine's file and key: add (no --public-key), ls, then serve answers."""
    (tmp_path / "relay.lic").write_bytes(setup.machine_file())
    (tmp_path / "one.lic").write_bytes(setup.writer.license(key="KEY-ONE", issued=time.time() - 60))
    relay = setup.here.binary
    added = relay("add", "--file", "one.lic", "--key", "KEY-ONE", cwd=tmp_path, env=KEY_ENV)
    assert (added.code, added.err) == (0, ""), added
    guid = added.out.removeprefix("license added successfully: ").strip()
    listed = relay("ls", "--plain", cwd=tmp_path, env=KEY_ENV)
    assert listed.code == 0
    assert guid in listed.out
    serve_then_stop(relay.relay, tmp_path, relay.env(KEY_ENV))


def test_public_key_flag_is_gone_as_in_the_venv(setup: Setup) -> None:
    lic = setup.writer.license(key="K")
    args = ("add", "--file", "x.lic", "--key", "K", "--public-key", "00" * 32)
    onefile, venv = setup.here.both(
        *args, files={"x.lic": lic, "relay.lic": setup.machine_file()}, env=KEY_ENV
    )
    assert onefile == venv == Run(1, "", "Error: unknown flag: --public-key\n")


UNLOCK = "Error: failed to unlock relay: "


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("another machine's file", "machine file could not be decrypted: machine file is invalid"),
        ("wrong license key", "machine file could not be decrypted: machine file is invalid"),
        ("no license key", "license key is required"),
        ("no machine file", "machine file could not be read: open ./relay.lic: no such file"),
        ("wrong hostname", "machine file hostname mismatch"),
        ("expired", "machine file could not be decrypted: machine file is expired"),
    ],
)
def test_invalid_cases_fail_with_the_venv_line(setup: Setup, case: str, reason: str) -> None:
    """Each wrong input: exit 1 and the same one `Error: failed to unlock relay: ...` line as
    the venv with the same lock wheel; no database is created."""
    files = {"relay.lic": setup.machine_file()}
    env: dict[str, str] = dict(KEY_ENV)
    now = time.time()
    if case == "another machine's file":
        other = hashlib.sha256(b"other" + setup.fingerprint.encode()).hexdigest()
        files["relay.lic"] = setup.machine_file(fingerprint=other)
    elif case == "wrong license key":
        env = {"RELAY_NODE_LOCKED_LICENSE_KEY": "WRONG-KEY"}
    elif case == "no license key":
        env = {}
    elif case == "no machine file":
        files = {}
    elif case == "wrong hostname":
        files["relay.lic"] = setup.machine_file(hostname="not-this-host")
    elif case == "expired":
        files["relay.lic"] = setup.machine_file(issued=now - 7200, expiry=now - 3600)
    onefile, venv = setup.here.both("ls", files=files, env=env)
    assert onefile == venv
    assert onefile.code == 1
    assert onefile.out == ""
    assert onefile.err.count("\n") == 1
    assert onefile.err.startswith(UNLOCK + reason), onefile.err


def test_lock_for_another_machine_refuses_with_the_venv_line(setup: Setup) -> None:
    """A binary locked to another fingerprint, run here (a copied install): every command but
    help/version/fingerprint refuses with the venv's line, before touching the database."""
    files = {"relay.lic": setup.machine_file()}
    for args in (("ls",), ("serve",), ("stat", "--license", "x")):
        onefile, venv = setup.foreign.both(*args, files=files, env=KEY_ENV)
        assert onefile == venv == Run(1, "", UNLOCK + "machine file fingerprint mismatch\n")


def test_locking_a_locked_binary_is_refused(setup: Setup, tmp_path: Path) -> None:
    done = subprocess.run(
        [VENV_RELAY, "lock", "build", "--public-key", setup.writer.public_key,
         "--fingerprint", setup.fingerprint, "--binary", str(setup.here.binary.relay),
         "--output", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"Error: {setup.here.binary.relay} is already node-locked; "
        "lock an unlocked one-file relay\n"
    )
    assert not (tmp_path / "out").exists()


def test_dev_dist_lock_writes_dist_locked_relay(dist: Dist, setup: Setup, tmp_path: Path) -> None:
    """`./dev dist --lock LOCKWHEEL` gives the same locked binary as `lock build --binary`."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "build.py"), "--lock", str(setup.here.wheel)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    locked = dist.folder / "locked" / "relay"
    assert done.stdout.splitlines()[-1] == str(locked)
    assert locked.read_bytes() == setup.here.binary.relay.read_bytes()
    check = subprocess.run(
        ["sha256sum", "-c", "relay.sha256"],
        cwd=locked.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.stdout == "relay: OK\n"

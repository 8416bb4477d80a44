"""The lock baked into a one-file relay: writing it, reading it back, and what a frozen relay sees.

The executables here are stand-ins (an ELF magic and the build marker); tests/shipped runs the real
one-file build.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest
from relay_cli import frozen, lockfind
from relay_cli.embeddedlock import (
    BUILD_MARKER,
    EmbedError,
    embed_lock_wheel,
    read_embedded,
)
from relay_cli.locking import LockConfig
from relay_cli.nodelock import build_lock_wheel
from relay_cli.wheel import write_wheel

PUBLIC_KEY = "e8601e48b69383ba520245fd07971e983d06d22c4257cfd82304601479cee788"
FINGERPRINT = "d79af7edac07c0273df28ab7cb304f623e483df88d6d667e3e3ae730fa6352b1"


@pytest.fixture
def executable(tmp_path: Path) -> Path:
    path = tmp_path / "relay"
    path.write_bytes(b"\x7fELF" + b"\0" * 64 + BUILD_MARKER + b"\0" * 64)
    return path


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    lock = LockConfig.from_values({"public_key": PUBLIC_KEY, "fingerprint": FINGERPRINT})
    return build_lock_wheel(lock, tmp_path / "wheels")


def test_round_trip_keeps_the_binary_and_carries_the_wheels_lock(
    executable: Path, wheel: Path, tmp_path: Path
) -> None:
    """The locked copy starts with the original bytes; the footer gives back the wheel's entry
    point, distribution and module source; the original is untouched."""
    original = executable.read_bytes()
    target = Path(embed_lock_wheel(executable, wheel, tmp_path / "out" / "relay"))
    assert target.read_bytes().startswith(original)
    assert executable.read_bytes() == original
    assert target.stat().st_mode & 0o777 == 0o755
    found = read_embedded(str(target))
    assert found is not None
    assert (found.distribution, found.name, found.target, found.module) == (
        "relay_lock",
        "node",
        "relay_lock:LOCK",
        "relay_lock",
    )
    assert f"'fingerprint': '{FINGERPRINT}'" in found.source
    assert read_embedded(str(executable)) is None


def test_a_locked_or_foreign_binary_is_refused(
    executable: Path, wheel: Path, tmp_path: Path
) -> None:
    locked = Path(embed_lock_wheel(executable, wheel, tmp_path / "a" / "relay"))
    with pytest.raises(EmbedError, match="is already node-locked"):
        embed_lock_wheel(locked, wheel, tmp_path / "b" / "relay")
    script = tmp_path / "script"
    script.write_bytes(b"#!/bin/sh\n")
    with pytest.raises(EmbedError, match="is not a one-file relay"):
        embed_lock_wheel(script, wheel, tmp_path / "c" / "relay")
    with pytest.raises(EmbedError, match="refusing to overwrite"):
        embed_lock_wheel(executable, wheel, executable)
    assert not (tmp_path / "b").exists()
    assert not (tmp_path / "c").exists()


def test_only_a_lock_wheel_is_embedded(executable: Path, tmp_path: Path) -> None:
    """A wheel without exactly one relay.lock entry point, or with more than its module, is not
    a lock."""
    no_lock = write_wheel(
        tmp_path / "w1",
        name="other",
        version="1",
        summary="s",
        files={"other.py": b"X = 1\n"},
        entry_points={"console_scripts": {"x": "other:X"}},
    )
    with pytest.raises(EmbedError, match="0 relay.lock entry points"):
        embed_lock_wheel(executable, no_lock, tmp_path / "o1" / "relay")
    extra = write_wheel(
        tmp_path / "w2",
        name="relay-lock",
        version="1",
        summary="s",
        files={"relay_lock/__init__.py": b"LOCK = {}\n", "evil.py": b"import os\n"},
        entry_points={"relay.lock": {"node": "relay_lock:LOCK"}},
    )
    with pytest.raises(EmbedError, match="holds one module, relay_lock"):
        embed_lock_wheel(executable, extra, tmp_path / "o2" / "relay")


def test_a_damaged_footer_is_an_error(executable: Path, wheel: Path, tmp_path: Path) -> None:
    target = Path(embed_lock_wheel(executable, wheel, tmp_path / "out" / "relay"))
    data = bytearray(target.read_bytes())
    data[-5] = ord("x")  # a length digit
    target.write_bytes(bytes(data))
    with pytest.raises(EmbedError, match="damaged"):
        read_embedded(str(target))


def test_a_frozen_relay_finds_its_embedded_lock_like_an_installed_one(
    executable: Path, wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frozen, with sys.executable the locked copy: find_lock gives the installed wheel's lock."""
    target = embed_lock_wheel(executable, wheel, tmp_path / "out" / "relay")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", target)
    monkeypatch.delitem(sys.modules, "relay_lock", raising=False)
    found = lockfind.find_lock()
    assert found is not None
    assert (found.distribution, found.target, found.fingerprint) == (
        "relay_lock",
        "relay_lock:LOCK",
        FINGERPRINT,
    )
    assert sys.modules["relay_lock"].LOCK["public_key"] == PUBLIC_KEY
    # A second lock on the path (a relay-lock wheel somehow bundled too) fails closed, as in a venv.
    site = tmp_path / "site"
    write_wheel(
        tmp_path / "w",
        name="relay-lock-extra",
        version="1",
        summary="s",
        files={},
        entry_points={"relay.lock": {"node": "x:LOCK"}},
    )

    with zipfile.ZipFile(next((tmp_path / "w").glob("*.whl"))) as archive:
        archive.extractall(site)
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    with pytest.raises(lockfind.LockLoadError, match="more than one node lock is installed"):
        lockfind.find_lock()
    sys.modules.pop("relay_lock", None)


def test_not_frozen_means_no_embedded_lock_and_no_build_line(
    executable: Path, wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venv never reads its interpreter's tail, and `relay version` adds nothing."""
    target = embed_lock_wheel(executable, wheel, tmp_path / "out" / "relay")
    monkeypatch.setattr(sys, "executable", target)
    assert lockfind.find_lock() is None
    assert frozen.build_description() is None


def test_build_description_reads_the_bundled_build_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / frozen.BUILD_INFO).write_text(
        "platform=linux/amd64\nglibc=2.35\npython=3.11.7\nmode=onefile\n"
    )
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert frozen.build_description() == (
        "one-file build for linux/amd64, glibc >= 2.35, Python 3.11.7"
    )


@pytest.mark.parametrize("case", ["not a build", "same file"])
def test_lock_build_binary_checks_before_writing_anything(
    executable: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """`relay lock build --binary`: a bad executable, or an output that is the executable itself,
    is one `Error:` line, exit 1, and no wheel is written."""
    from relay_cli.cli import run

    output = tmp_path / "out"
    if case == "not a build":
        binary = tmp_path / "script"
        binary.write_bytes(b"#!/bin/sh\n")
        message = f"Error: {binary} is not a one-file relay (build one with ./dev dist)\n"
    else:
        output.mkdir()
        binary = output / "relay"
        executable.replace(binary)
        message = f"Error: refusing to overwrite {binary} with its locked copy\n"
    status = run(
        ["--database", str(tmp_path / "db.sqlite"), "lock", "build", "--public-key", PUBLIC_KEY,
         "--fingerprint", FINGERPRINT, "--output", str(output), "--binary", str(binary)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert (status, captured.out, captured.err) == (1, "", message)
    assert not list(output.glob("*.whl"))
    assert not (tmp_path / "db.sqlite").exists()

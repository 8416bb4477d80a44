"""`./dev dist`: build `dist/relay` (one file) and `dist/wheelhouse/` from this checkout.

    .venv/bin/python packaging/build.py [--lock LOCKWHEEL] [--no-cache]

1. The wheelhouse: a wheel of every workspace member (``pip wheel --no-deps packages/*``) and
   every third-party wheel they need, downloaded for CPython 3.11 to 3.14 on manylinux (glibc
   2.17 to 2.28) for this machine's architecture, so ``pip install --no-index --find-links
   wheelhouse relay-cli`` works on any of them; ``SHA256SUMS`` lists every file.
2. `relay`: a throw-away venv gets PyInstaller (packaging/requirements-build.txt) and every
   member from the wheelhouse (offline, which checks the wheelhouse too); PyInstaller freezes
   packaging/relay_main.py with packaging/relay.spec, which bundles the metadata of every relay
   distribution and every ``relay.storage`` backend installed there. ``relay.sha256`` is
   ``sha256sum -c``'s format. The same analysis also gives `relay-onedir/` (the executable
   beside its unpacked bundle: no unpacking at start, see docs/performance.md), published as
   that folder and as ``relay-onedir.tar.gz`` with its ``.sha256``.
3. With ``--lock LOCKWHEEL`` (a ``relay lock build`` wheel): ``dist/locked/relay``, a copy of
   `relay` with that lock embedded (relay_cli.embeddedlock), and its ``relay.sha256``.

The build is cached in ``$RELAY_DIST_CACHE`` (default ``~/.cache/relay-dist``), outside the
clone, under a hash of everything it is made from: the members' sources and metadata, the
requirements, packaging/ and this interpreter. A hit copies the cached files into dist/ in a
second; CI runs in a fresh clone of the same machine and hits the cache whenever no source
changed. Only the newest few builds are kept.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
TARGET_PYTHONS = ("3.11", "3.12", "3.13", "3.14")
MANYLINUX = range(28, 16, -1)  # manylinux_2_28 down to manylinux_2_17 (manylinux2014)
KEEP_BUILDS = 4
CACHE_FORMAT = "1"


def log(message: str) -> None:
    print(f"relay dist: {message}", file=sys.stderr, flush=True)


def run(args: list[str | Path], **kwargs: object) -> None:
    subprocess.run([str(a) for a in args], check=True, **kwargs)  # type: ignore[call-overload]


def members() -> list[Path]:
    """Every workspace package (a folder of packages/ with a pyproject.toml)."""
    return sorted(p.parent for p in (ROOT / "packages").glob("*/pyproject.toml"))


def _hashed_files() -> list[Path]:
    files = [ROOT / "requirements-dev.txt", *PACKAGING.rglob("*")]
    for member in members():
        files += [member / "pyproject.toml", member / "README.md", *(member / "src").rglob("*")]
    return sorted(
        f for f in files if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"
    )


def source_hash() -> str:
    """The cache key: every input file's path and bytes, this interpreter and machine."""
    digest = hashlib.sha256(CACHE_FORMAT.encode())
    for path in _hashed_files():
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(f"{sys.version}\0{platform.machine()}\0{platform.libc_ver()}".encode())
    return digest.hexdigest()[:24]


def cache_root() -> Path:
    configured = os.environ.get("RELAY_DIST_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "relay-dist"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_sums(folder: Path, names: list[str], target: Path) -> None:
    """``<sha256>  <name>`` lines, as `sha256sum` writes and `sha256sum -c` checks them."""
    target.write_text("".join(f"{sha256_file(folder / n)}  {n}\n" for n in sorted(names)))


def pip_env() -> dict[str, str]:
    """The environment for the offline install: no pip configuration from the machine (which may
    add extra find-links or indexes), so only the wheelhouse can satisfy it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def build_wheelhouse(wheelhouse: Path) -> None:
    pip = [sys.executable, "-m", "pip"]
    log(f"wheels of {', '.join(m.name for m in members())}")
    run([*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", wheelhouse, *members()])
    local = sorted(wheelhouse.glob("*.whl"))
    arch = platform.machine()
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in MANYLINUX] + [f"manylinux2014_{arch}"]
    for version in TARGET_PYTHONS:
        abi = "cp" + version.replace(".", "")
        log(f"third-party wheels for CPython {version} ({arch}, glibc >= 2.17..2.28)")
        run(
            [*pip, "download", "--quiet", "--dest", wheelhouse, "--only-binary=:all:",
             "--python-version", version, "--implementation", "cp",
             "--abi", abi, "--abi", "abi3", "--abi", "none",
             *(f"--platform={p}" for p in platforms), *local],
        )  # fmt: skip
    names = [p.name for p in wheelhouse.glob("*.whl")]
    write_sums(wheelhouse, names, wheelhouse / "SHA256SUMS")


def build_binary(work: Path, wheelhouse: Path) -> Path:
    venv = work / "venv"
    log("build venv: PyInstaller, and relay from the wheelhouse (offline)")
    run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", "-r", PACKAGING / "requirements-build.txt"])
    local = sorted(wheelhouse.glob("relay_*.whl"))
    run(
        [python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", wheelhouse,
         *local],
        env=pip_env(),
    )  # fmt: skip
    log("PyInstaller (one file, and one folder from the same analysis)")
    env = dict(os.environ)
    env.update(
        RELAY_DIST_NAME="relay",
        RELAY_DIST_ENTRY=str(PACKAGING / "relay_main.py"),
        RELAY_DIST_INFO=str(work / "relay-build.txt"),
    )
    run(
        [python, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
         "--distpath", work / "out", "--workpath", work / "pyinstaller",
         PACKAGING / "relay.spec"],
        env=env, cwd=work,
    )  # fmt: skip
    binary = work / "relay"
    (work / "out" / "relay").replace(binary)
    (work / "out" / "relay-onedir").replace(work / "relay-onedir")
    done = subprocess.run(
        [binary, "version"], capture_output=True, text=True, timeout=120, check=False, cwd=work
    )
    if done.returncode != 0:
        raise SystemExit(f"relay dist: the built relay does not start: {done.stderr.strip()}")
    log(f"built relay {done.stdout.strip()}; {done.stderr.strip()}")
    for leftover in ("venv", "out", "pyinstaller"):
        shutil.rmtree(work / leftover)
    return binary


def build(key: str, cache: Path) -> Path:
    """Build into a private folder, then rename it into the cache (atomic: a folder named by
    its key is always complete)."""
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{key}.partial-", dir=cache))
    started = time.monotonic()
    try:
        wheelhouse = work / "wheelhouse"
        build_wheelhouse(wheelhouse)
        binary = build_binary(work, wheelhouse)
        write_sums(work, [binary.name], work / "relay.sha256")
        log("relay-onedir.tar.gz")
        with tarfile.open(work / "relay-onedir.tar.gz", "w:gz", compresslevel=6) as archive:
            archive.add(work / "relay-onedir", arcname="relay-onedir")
        write_sums(work, ["relay-onedir.tar.gz"], work / "relay-onedir.tar.gz.sha256")
        (work / "relay-build.txt").unlink(missing_ok=True)
        if source_hash() != key:
            raise SystemExit(
                "relay dist: the sources changed during the build; nothing was cached, run again"
            )
        final = cache / key
        try:
            work.rename(final)
        except OSError:  # another build of the same sources won the race
            shutil.rmtree(work)
        log(f"built in {time.monotonic() - started:.0f} s, cached in {final}")
        return final
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def prune(cache: Path, keep: Path) -> None:
    """Keep the newest `KEEP_BUILDS` builds (and `keep`); drop older ones and dead partials."""
    builds = sorted(
        (p for p in cache.iterdir() if p.is_dir() and ".partial-" not in p.name),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in builds[KEEP_BUILDS:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)
    day_ago = time.time() - 86400
    for partial in cache.glob("*.partial-*"):
        if partial.stat().st_mtime < day_ago:
            shutil.rmtree(partial, ignore_errors=True)


def publish(built: Path, dist: Path) -> None:
    """Copy the cached build into dist/ (replacing an older one)."""
    dist.mkdir(exist_ok=True)
    shutil.rmtree(dist / "locked", ignore_errors=True)  # made from an older relay, if any
    shutil.rmtree(dist / "wheelhouse", ignore_errors=True)
    shutil.copytree(built / "wheelhouse", dist / "wheelhouse")
    shutil.rmtree(dist / "relay-onedir", ignore_errors=True)
    shutil.copytree(built / "relay-onedir", dist / "relay-onedir", symlinks=True)
    for name in ("relay", "relay.sha256", "relay-onedir.tar.gz", "relay-onedir.tar.gz.sha256"):
        partial = dist / f".{name}.partial"
        shutil.copy2(built / name, partial)
        partial.replace(dist / name)


def lock(dist: Path, wheel: Path) -> Path:
    from relay_cli.embeddedlock import EmbedError, embed_lock_wheel

    target = dist / "locked" / "relay"
    try:
        embed_lock_wheel(dist / "relay", wheel, target)
    except EmbedError as exc:
        raise SystemExit(f"error: {exc}") from None
    write_sums(target.parent, [target.name], target.parent / "relay.sha256")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev dist", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lock", type=Path, metavar="LOCKWHEEL",
        help="also write dist/locked/relay with this relay-lock wheel embedded",
    )  # fmt: skip
    parser.add_argument(
        "--no-cache", action="store_true", help="rebuild even if this source is cached"
    )
    args = parser.parse_args(argv)
    if args.lock is not None and not args.lock.is_file():
        parser.error(f"no such lock wheel: {args.lock}")
    cache = cache_root()
    key = source_hash()
    built = cache / key
    if built.is_dir() and not args.no_cache:
        log(f"cached build {key} ({built})")
        os.utime(built)
    else:
        if built.is_dir():
            shutil.rmtree(built)
        log(f"building {key} (not in {cache})")
        built = build(key, cache)
    dist = ROOT / "dist"
    publish(built, dist)
    prune(cache, built)
    print(dist / "relay")
    print(dist / "wheelhouse")
    if args.lock is not None:
        print(lock(dist, args.lock))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

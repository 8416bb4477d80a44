"""The `relay` console script.

`relay version` and `relay --version` are answered before cyclopts (or anything else) is
imported: they are what scripts and health checks call most, and they must start about as fast
as a bare Python. The node lock is looked up with `relay_cli.lockfind` (standard library only)
for the `+node-locked` suffix; a one-file build adds its platform and glibc floor on stderr
(`relay_cli.frozen`). Everything else goes through the cyclopts app in `relay_cli.cli`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from . import __version__

__all__ = ["describe_build", "main", "write_stdout"]


def write_stdout(text: str) -> bool:
    """Write and flush `text`; when stdout cannot take it (``> /dev/full``, closed with
    ``>&-``), say so in one `error:` line on stderr and return False instead of a traceback.
    A reader that went away (``relay version | true``) is not an error: stop quietly."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except (OSError, AttributeError, ValueError) as exc:  # AttributeError: stdout is None
        reason = exc.strerror if isinstance(exc, OSError) else None
        try:  # what is still buffered must not fail again, with a traceback, at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, AttributeError, ValueError):
            pass
        if isinstance(exc, BrokenPipeError):
            return True
        if sys.stderr is not None:
            sys.stderr.write(f"error: cannot write to stdout: {reason or 'it is closed'}\n")
        return False
    return True


def describe_build() -> None:
    """In the one-file build, name its platform and glibc floor on stderr (stdout keeps the bare
    version that scripts compare, byte for byte the venv's)."""
    from .frozen import build_description

    described = build_description()
    if described is not None:
        sys.stdout.flush()
        sys.stderr.write(described + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `relay` command; exits with the command's status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["version"], ["--version"]):
        from .lockfind import LockLoadError, find_lock, version_string

        try:
            lock = find_lock()
        except LockLoadError as exc:
            sys.stderr.write(f"Error: failed to unlock relay: {exc}\n")
            raise SystemExit(1) from None
        text = version_string(__version__, None if lock is None else lock.fingerprint)
        if not write_stdout(text + "\n" if args == ["version"] else f"relay version {text}\n"):
            raise SystemExit(1)
        describe_build()
        raise SystemExit(0)

    from .cli import run

    raise SystemExit(run(args))

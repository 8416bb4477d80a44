"""The `relay` console script.

`relay version` and `relay --version` are answered before cyclopts (or anything else) is
imported: they are what scripts and health checks call most, and they must start about as fast
as a bare Python. Everything else goes through the cyclopts app in `relay_cli.cli`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import __version__

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `relay` command; exits with the command's status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["version"]:
        sys.stdout.write(__version__ + "\n")
        raise SystemExit(0)
    if args == ["--version"]:
        sys.stdout.write(f"relay version {__version__}\n")
        raise SystemExit(0)

    from .cli import run

    raise SystemExit(run(args))

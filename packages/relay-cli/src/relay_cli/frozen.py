"""What a frozen (PyInstaller) `relay` says about itself: platform, glibc floor, Python.

`packaging/relay.spec` writes ``relay-build.txt`` (``key=value`` lines) into the bundle; this
module reads it. Standard library only and nothing imported at module level beyond `os`/`sys`:
`relay version` calls it on every start of the one-file build.
"""

from __future__ import annotations

import os
import sys

__all__ = ["BUILD_INFO", "build_description", "build_info", "is_frozen", "one_folder"]

BUILD_INFO = "relay-build.txt"


def is_frozen() -> bool:
    """True in the PyInstaller build (`dist/relay`), False in a venv."""
    return bool(getattr(sys, "frozen", False))


def build_info() -> dict[str, str]:
    """The build's ``relay-build.txt`` as a mapping; empty when not frozen or unreadable."""
    bundle = getattr(sys, "_MEIPASS", None)
    if not is_frozen() or not isinstance(bundle, str):
        return {}
    try:
        with open(os.path.join(bundle, BUILD_INFO), encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            info[key.strip()] = value.strip()
    return info


def one_folder() -> bool:
    """True for the one-folder layout, whose bundle sits beside the executable; a one-file
    build unpacks it into a temporary folder elsewhere."""
    bundle = getattr(sys, "_MEIPASS", None)
    if not isinstance(bundle, str):
        return False
    folder = os.path.dirname(os.path.abspath(sys.executable))
    return os.path.dirname(os.path.abspath(bundle)) == folder or os.path.abspath(bundle) == folder


def build_description() -> str | None:
    """One line for `relay version` in a frozen build, e.g.
    ``one-file build for linux/amd64, glibc >= 2.34, Python 3.11.7``; None in a venv."""
    info = build_info()
    if not info:
        return None
    kind = "one-folder" if one_folder() else "one-file"
    return (
        f"{kind} build for {info.get('platform', 'unknown platform')}, "
        f"glibc >= {info.get('glibc', 'unknown')}, Python {info.get('python', 'unknown')}"
    )

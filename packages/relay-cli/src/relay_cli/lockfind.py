"""Find the installed node lock: the ``relay.lock`` entry point, read without importlib.metadata.

Every `relay` start needs to know whether it is node-locked, `relay version` included, and
`importlib.metadata` alone costs several times a bare Python start-up (docs/performance.md). So
this module reads the ``entry_points.txt`` of each ``*.dist-info``/``*.egg-info`` directory on
`sys.path` itself, first distribution of a name winning as in importlib.metadata, and imports
only the module the entry point names. Standard library only (os, sys), not even `re` or
`importlib`, whose imports alone would cost about half a bare start-up.
"""

from __future__ import annotations

import os
import sys

# What collections.abc re-exports, without importing `collections` (~1.5 ms): `os` has already
# loaded this module at interpreter start.
from _collections_abc import Iterable, Iterator, Mapping

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs more than the lookup
if TYPE_CHECKING:
    from .embeddedlock import EmbeddedLock

__all__ = [
    "ENTRY_POINT_GROUP",
    "FoundLock",
    "LockLoadError",
    "find_lock",
    "lock_entry_points",
    "version_string",
]

ENTRY_POINT_GROUP = "relay.lock"
_METADATA_SUFFIXES = (".dist-info", ".egg-info")


class LockLoadError(Exception):
    """An installed lock cannot be used (two of them, unloadable, not a mapping); fails closed."""


class FoundLock:
    """The constants of the installed lock and where they came from."""

    __slots__ = ("distribution", "target", "values")

    def __init__(self, distribution: str, target: str, values: Mapping[str, object]) -> None:
        self.distribution = distribution
        self.target = target
        self.values = values

    @property
    def fingerprint(self) -> str:
        value = self.values.get("fingerprint")
        return value if isinstance(value, str) else ""


def _distribution(dirname: str) -> str | None:
    """``Relay.Lock-1.0.dist-info`` -> ``relay_lock`` (PEP 503 normalised); None if not metadata."""
    lowered = dirname.lower()
    suffix = next((s for s in _METADATA_SUFFIXES if lowered.endswith(s)), None)
    if suffix is None:
        return None
    name = lowered[: -len(suffix)].partition("-")[0]
    for separator in "-.":
        name = name.replace(separator, "_")
    while "__" in name:
        name = name.replace("__", "_")
    return name or None


def _section_entries(text: str, group: str) -> Iterator[tuple[str, str]]:
    """``name = value`` lines of one ``[group]`` section of an entry_points.txt."""
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
            continue
        if inside:
            name, sep, value = line.partition("=")
            if sep:
                yield name.strip(), value.strip()


def lock_entry_points(
    paths: Iterable[str] | None = None, group: str = ENTRY_POINT_GROUP
) -> list[tuple[str, str, str]]:
    """``(distribution, entry point name, target)`` for every entry point of `group` on `paths`."""
    seen: set[str] = set()
    found: list[tuple[str, str, str]] = []
    for entry in sys.path if paths is None else paths:
        try:
            with os.scandir(entry or ".") as listing:
                names = sorted(e.name for e in listing if e.name.endswith(("-info", "-INFO")))
        except OSError:
            continue
        for dirname in names:
            dist = _distribution(dirname)
            if dist is None or dist in seen:
                continue
            seen.add(dist)
            try:
                with open(os.path.join(entry or ".", dirname, "entry_points.txt")) as handle:
                    text = handle.read()
            except OSError:
                continue
            found.extend((dist, name, value) for name, value in _section_entries(text, group))
    return found


def _embedded_lock() -> EmbeddedLock | None:
    """The lock baked into a frozen one-file `relay` (relay_cli.embeddedlock); None in a venv."""
    if not getattr(sys, "frozen", False):
        return None
    from .embeddedlock import EmbedError, read_embedded

    try:
        return read_embedded(sys.executable)
    except EmbedError as exc:
        raise LockLoadError(str(exc)) from None


def find_lock(paths: Iterable[str] | None = None) -> FoundLock | None:
    """The installed lock's constants, or None when Relay is not node-locked.

    With `paths` None (`sys.path`), a lock embedded in a one-file build counts as installed."""
    points = lock_entry_points(paths)
    embedded = _embedded_lock() if paths is None else None
    if embedded is not None:
        points.append((embedded.distribution, embedded.name, embedded.target))
    if not points:
        return None
    if len(points) > 1:
        listed = ", ".join(f"{dist} ({name} = {target})" for dist, name, target in points)
        raise LockLoadError(f"more than one node lock is installed: {listed}")
    dist, _, target = points[0]
    module_name, _, attribute = target.partition(":")
    try:
        if embedded is not None and embedded.module == module_name.strip():
            embedded.install()
        __import__(module_name.strip())
        value: object = sys.modules[module_name.strip()]
        for part in filter(None, attribute.strip().split(".")):
            value = getattr(value, part)
    except (ImportError, AttributeError, KeyError) as exc:
        raise LockLoadError(f"node lock {dist} cannot be loaded from {target}: {exc}") from None
    if not isinstance(value, Mapping):
        raise LockLoadError(f"node lock {dist} is invalid: {target} is not a mapping of constants")
    return FoundLock(dist, target, value)


def version_string(version: str, fingerprint: str | None) -> str:
    """`version`, plus ``+node-locked.<first 4>..<last 4>`` of a locked fingerprint (spec §1.11)."""
    if fingerprint is None:
        return version
    if len(fingerprint) >= 16:
        return f"{version}+node-locked.{fingerprint[:4]}..{fingerprint[-4:]}"
    return f"{version}+node-locked"

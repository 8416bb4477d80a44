"""Find the storage backend for `--database` through the ``relay.storage`` entry-point group.

``name://...`` selects the entry point ``name``; a plain path selects ``sqlite``. A third-party
``relay-<backend>`` package registers its own name and plugs in without any change here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, cast

from relay_core.errors import StorageError

if TYPE_CHECKING:
    from relay_core.ports import Store

__all__ = ["ENTRY_POINT_GROUP", "StoreOpener", "backend_name", "open_store"]

ENTRY_POINT_GROUP = "relay.storage"
DEFAULT_BACKEND = "sqlite"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class StoreOpener(Protocol):
    """What a ``relay.storage`` entry point loads to."""

    def __call__(self, database: str, *, pragmas: Mapping[str, str]) -> Store: ...


def backend_name(database: str) -> str:
    """The entry-point name for a `--database` value."""
    match = _SCHEME.match(database)
    return match.group(1).lower() if match else DEFAULT_BACKEND


def open_store(database: str, *, pragmas: Mapping[str, str]) -> Store:
    """Open `database` with the backend its scheme names; raise `StorageError` if none is installed."""
    from importlib.metadata import entry_points

    name = backend_name(database)
    found = entry_points(group=ENTRY_POINT_GROUP)
    chosen = [ep for ep in found if ep.name == name]
    if not chosen:
        installed = ", ".join(sorted({ep.name for ep in found})) or "none"
        raise StorageError(
            f'no storage backend "{name}" for database {database!r} (installed: {installed})'
        )
    try:
        opener = cast(Callable[..., "Store"], chosen[0].load())
    except (ImportError, AttributeError) as exc:
        raise StorageError(f'storage backend "{name}" cannot be loaded: {exc}') from exc
    return opener(database, pragmas=pragmas)

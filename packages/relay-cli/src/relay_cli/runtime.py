"""What the composition root hands to every command: settings, printers, and the service.

The store is opened lazily, on the first `Runtime.relay()` call, so a command validates all of its
flags before the database is touched, and `version`/`help`/`completion` never open it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from .output import Output
from .values import split_csv

if TYPE_CHECKING:
    import cattrs
    from relay_core import Relay, RelayEvents, Strategy
    from relay_core.ports import Clock, Store

    from .locking import LockConfig
    from .storage import StoreOpener

__all__ = ["Runtime", "Settings", "UsageError", "parse_pragmas"]

log = logging.getLogger("relay.cli")


class UsageError(Exception):
    """Raised when flags or arguments are wrong; printed as one `error:` line, exit 1."""


def parse_pragmas(values: Sequence[str]) -> dict[str, str]:
    """``["k=v", ...]`` (each value a CSV record) -> ``{k: v}``; reject anything without key and value."""
    pragmas: dict[str, str] = {}
    for raw in split_csv(values, "--pragma"):
        key, sep, value = raw.partition("=")
        if not (sep and key and value):
            raise UsageError(f"invalid pragma format: {raw} (expected key=value)")
        pragmas[key] = value
    return pragmas


@attrs.frozen
class Settings:
    """The global flags, resolved against the environment."""

    database: str = "./relay.sqlite"
    verbosity: int = 0
    audit: bool = True
    color: bool = False
    pragmas: Mapping[str, str] = attrs.field(factory=dict)
    flags: frozenset[str] = frozenset()
    """The global flags given on the command line (a config file must not override them)."""


@attrs.define
class Runtime:
    """The per-invocation services a command may use; closing it closes the store if opened."""

    settings: Settings
    environ: Mapping[str, str]
    clock: Clock
    open_store: StoreOpener
    out: Output = attrs.field(factory=Output)
    lock: LockConfig | None = None
    """The node lock that was checked before the command ran; None when not node-locked."""
    _store: Store | None = attrs.field(default=None, init=False)
    _converter: cattrs.Converter | None = attrs.field(default=None, init=False)

    @property
    def converter(self) -> cattrs.Converter:
        """The process's one cattrs converter (config file, `--json`, admin bodies)."""
        if self._converter is None:
            from .config import make_cli_converter

            self._converter = make_cli_converter()
        return self._converter

    @property
    def store(self) -> Store:
        """The store, opened (created and migrated) on first use."""
        if self._store is None:
            log.debug("opening database %s", self.settings.database)
            self._store = self.open_store(self.settings.database, pragmas=self.settings.pragmas)
        return self._store

    def relay(
        self,
        *,
        strategy: Strategy | str = "fifo",
        ttl: float = 60,
        heartbeats: bool = True,
        events: RelayEvents | None = None,
        waiting: bool = False,
    ) -> Relay:
        """The service over the store, with the global audit setting and the injected clock;
        with `waiting`, a wait queue that claims honour (no overtaking of waiting nodes)."""
        from relay_core import NoEvents, Relay, WaitQueue

        return Relay(
            self.store,
            clock=self.clock,
            strategy=strategy,
            ttl=ttl,
            heartbeats=heartbeats,
            audit=self.settings.audit,
            events=events or NoEvents(),
            queue=WaitQueue() if waiting else None,
        )

    def close(self) -> None:
        """Close the store if a command opened it."""
        store, self._store = self._store, None
        if store is not None:
            store.close()

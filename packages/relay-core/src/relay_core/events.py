"""Domain events: what `Relay` tells an observer after each use case has committed.

A metrics adapter (relay-http's Prometheus collector) implements `RelayEvents`; the core only
calls it, so counting stays out of the domain and out of every store. `NoEvents` is the default.
Calls happen after the change is committed (or the use case was refused), on the caller's
thread, so an observer must be cheap and thread-safe, and must not raise.
"""

from __future__ import annotations

import enum
from typing import Protocol

__all__ = ["ClaimResult", "NoEvents", "RelayEvents", "ReleaseResult"]


class ClaimResult(enum.StrEnum):
    """How a claim ended: a new lease, an extension, a 409 conflict or a 410 (no free license)."""

    CREATED = "created"
    EXTENDED = "extended"
    CONFLICT = "conflict"
    EXHAUSTED = "exhausted"


class ReleaseResult(enum.StrEnum):
    """How a release ended: freed by the node, not found, or forced by an operator."""

    RELEASED = "released"
    NOT_FOUND = "not_found"
    FORCED = "forced"


class RelayEvents(Protocol):
    """The observer port; `pool` is the pool name the request named (None: the global pool)."""

    def on_claim(self, pool: str | None, result: ClaimResult) -> None: ...
    def on_release(self, pool: str | None, result: ReleaseResult) -> None: ...
    def on_cull(self, culled: int, released: int) -> None: ...


class NoEvents:
    """The default observer: ignores everything."""

    def on_claim(self, pool: str | None, result: ClaimResult) -> None:
        pass

    def on_release(self, pool: str | None, result: ReleaseResult) -> None:
        pass

    def on_cull(self, culled: int, released: int) -> None:
        pass

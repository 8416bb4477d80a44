"""`FrozenClock`: a clock that moves only when a test moves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import attrs

__all__ = ["FrozenClock", "to_timestamp"]


def to_timestamp(value: datetime | str | float) -> float:
    """Unix seconds from a datetime (naive = UTC), an ISO 8601 string, or a number."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)


@attrs.define
class FrozenClock:
    """A settable, advanceable clock: ``FrozenClock("2025-12-10T00:00:00Z").advance(61)``."""

    _now: float = attrs.field(converter=to_timestamp, alias="now")

    def now(self) -> float:
        return self._now

    def set(self, value: datetime | str | float) -> None:
        self._now = to_timestamp(value)

    def advance(self, by: float | timedelta) -> None:
        self._now += by.total_seconds() if isinstance(by, timedelta) else by


if TYPE_CHECKING:
    from ..ports import Clock

    _: type[Clock] = FrozenClock

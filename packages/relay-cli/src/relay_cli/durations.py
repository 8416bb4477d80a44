"""Go `time.ParseDuration` syntax (``30s``, ``1m30s``, ``1.5h``, ``500ms``), as Keygen Relay takes it.

Scripts written for Keygen Relay pass durations in this syntax, so we parse exactly it rather than
a Python-flavoured variant.
"""

from __future__ import annotations

import re

__all__ = ["DurationError", "format_duration", "parse_duration"]

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")


class DurationError(ValueError):
    """Raised with Go's message when a duration does not parse."""


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise `DurationError` with Go's wording."""
    quoted = f'"{text}"'
    rest = text
    sign = 1.0
    if rest and rest[0] in "+-":
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise DurationError(f"time: invalid duration {quoted}")
    total = 0.0
    while rest:
        match = _PART.match(rest)
        if match is None:  # pragma: no cover - the pattern matches every string
            raise DurationError(f"time: invalid duration {quoted}")
        whole, fraction, unit = match.groups()
        if not whole and not fraction:
            raise DurationError(f"time: invalid duration {quoted}")
        if not unit:
            raise DurationError(f"time: missing unit in duration {quoted}")
        if unit not in _UNITS:
            raise DurationError(f'time: unknown unit "{unit}" in duration {quoted}')
        total += float(f"{whole or 0}.{fraction or 0}") * _UNITS[unit]
        rest = rest[match.end() :]
    return sign * total


def format_duration(seconds: float) -> str:
    """Go's `Duration.String()` for whole and fractional seconds: ``1m0s``, ``15s``, ``1.5s``."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{sign}{seconds * 1000:g}ms"
    hours, remainder = divmod(seconds, 3600)
    minutes, secs = divmod(remainder, 60)
    text = f"{secs:g}s"
    if hours or minutes:
        text = f"{int(minutes)}m{text}"
    if hours:
        text = f"{int(hours)}h{text}"
    return sign + text

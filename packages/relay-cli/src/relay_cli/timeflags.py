"""The time flags of `logs` and `report` (``--since``, ``--until``, ``--every``): one parser, so
that both commands take the same forms and refuse the same out-of-range values in one line.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from .durations import DurationError, parse_duration
from .output import printable
from .runtime import UsageError

__all__ = ["MAX_MOMENT", "parse_moment", "parse_span"]

MAX_MOMENT = 253402300799
"""9999-12-31T23:59:59Z: the last second a date-time (and an RFC 3339 column) can show."""

_DAYS = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(.*)$", re.DOTALL)
_FORMS = (
    "expected a date (2026-11-01), a date-time (2026-11-01T12:00:00Z), Unix seconds, "
    "or a duration ago (30d, 12h)"
)


def _invalid(text: str, flag: str, reason: str) -> UsageError:
    return UsageError(f'invalid argument "{printable(text)}" for "{flag}" flag: {reason}')


def parse_span(text: str, flag: str) -> float:
    """Seconds in Go's duration syntax, plus whole weeks and days in front: ``30d``, ``1w``,
    ``1d12h``; a `UsageError` with Go's reason otherwise."""
    match = _DAYS.match(text)
    assert match is not None  # the pattern matches every string
    weeks, days, rest = match.groups()
    try:
        seconds = float(int(weeks or 0) * 7 * 86400 + int(days or 0) * 86400)
        if rest or not (weeks or days):
            seconds += parse_duration(rest)
    except DurationError as exc:
        raise _invalid(text, flag, str(exc)) from None
    except OverflowError:
        raise _invalid(text, flag, f'time: invalid duration "{printable(text)}"') from None
    return seconds


def parse_moment(text: str, now: float, flag: str) -> int:
    """Unix seconds from a date (``2026-11-01``, midnight UTC), a date-time (UTC unless it says
    otherwise), Unix seconds, or a duration back from now (``30d``, ``1h30m``); anything else,
    or a time before 1970 or after 9999, is a one-line `UsageError` naming `flag`."""
    if text.isascii() and text.isdigit():
        moment = float(int(text))
    else:
        try:
            moment = now - parse_span(text, flag)
        except UsageError:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise _invalid(text, flag, _FORMS) from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            moment = parsed.timestamp()
    if not 0 <= moment <= MAX_MOMENT:
        raise _invalid(text, flag, "must be between 1970-01-01 and 9999-12-31 (UTC)")
    return int(moment)

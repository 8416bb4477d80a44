"""Keygen Relay's value rules (spec §1.4): env defaults where the first non-zero source wins,
and string-slice flags where every occurrence is one CSV record.

Environment variables are read from the mapping the composition root injects, never from
`os.environ` directly, so commands are testable without touching the process environment.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from typing import Annotated

from cyclopts import Parameter

from .durations import DurationError, parse_duration

__all__ = ["TRUE_WORDS", "UnsetFlag", "env_bool", "env_duration", "env_int", "env_str", "split_csv"]

UnsetFlag = Annotated[bool | None, Parameter(negative="", n_tokens=0)]
"""A boolean flag whose absence (None) defers to a variable: ``--plain``, ``--plain=false``.
`n_tokens=0` tells cyclopts (and its completion scripts) that it takes no separate value."""

TRUE_WORDS = frozenset({"true", "t", "1"})
"""The only env values that mean true; anything else counts as unset."""


def env_str(environ: Mapping[str, str], *names: str) -> str | None:
    """The first non-empty variable among `names`."""
    for name in names:
        value = environ.get(name, "")
        if value:
            return value
    return None


def env_bool(environ: Mapping[str, str], *names: str) -> bool:
    """True when any of `names` is exactly ``true``, ``t`` or ``1``."""
    return any(environ.get(name, "") in TRUE_WORDS for name in names)


def env_int(environ: Mapping[str, str], *names: str) -> int | None:
    """The first variable that parses as a non-zero decimal integer."""
    for name in names:
        try:
            value = int(environ.get(name, ""), 10)
        except ValueError:
            continue
        if value:
            return value
    return None


def env_duration(environ: Mapping[str, str], *names: str) -> float | None:
    """The first variable that parses as a non-zero Go duration, in seconds."""
    for name in names:
        try:
            value = parse_duration(environ.get(name, ""))
        except DurationError:
            continue
        if value:
            return value
    return None


def split_csv(values: Iterable[str], flag: str) -> list[str]:
    """Flatten repeated flag values, each one CSV record: ``["a,b", "c"]`` -> ``[a, b, c]``.

    Double quotes protect commas (``'"x,y.lic"'`` -> ``x,y.lic``); an empty value adds nothing.
    A value that is not one CSV record (an unclosed quote, a line break outside quotes) or has
    an empty element (``a.lic,``) is a `UsageError` naming `flag`: pflag refuses the first, and
    the second would only fail later, as a file or id named "".
    """
    from .output import printable
    from .runtime import UsageError

    items: list[str] = []
    for value in values:
        if value == "":
            continue
        try:
            rows = list(csv.reader([value], strict=True))
        except csv.Error as exc:
            reason = _CSV_ERRORS.get(str(exc), str(exc).partition(" - ")[0])
            raise UsageError(
                f'invalid argument "{printable(value)}" for "{flag}" flag: {reason}'
            ) from None
        record = rows[0] if rows else []
        if "" in record:
            raise UsageError(
                f'invalid argument "{printable(value)}" for "{flag}" flag: '
                "empty element in the comma-separated list"
            )
        items.extend(record)
    return items


_CSV_ERRORS = {"unexpected end of data": 'a quoted element has no closing "'}

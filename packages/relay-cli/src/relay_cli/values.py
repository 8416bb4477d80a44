"""Keygen Relay's value rules (spec §1.4): env defaults where the first non-zero source wins,
and string-slice flags where every occurrence is one CSV record.

Environment variables are read from the mapping the composition root injects, never from
`os.environ` directly, so commands are testable without touching the process environment.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping

from .durations import DurationError, parse_duration

__all__ = ["TRUE_WORDS", "env_bool", "env_duration", "env_int", "env_str", "split_csv"]

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


def split_csv(values: Iterable[str]) -> list[str]:
    """Flatten repeated flag values, each one CSV record: ``["a,b", "c"]`` -> ``[a, b, c]``.

    Double quotes protect commas (``'"x,y.lic"'`` -> ``x,y.lic``); an empty value adds nothing.
    """
    items: list[str] = []
    for value in values:
        if value == "":
            continue
        items.extend(next(csv.reader([value], skipinitialspace=False, strict=False)))
    return items

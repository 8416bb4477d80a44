"""`make_converter`: the one cattrs converter that turns Relay's attrs values into plain data
(JSON bodies, `--json` output) and plain data into attrs values (the config file, request
bodies).

Kept here, next to the values it converts, so the CLI and the HTTP adapter agree on every shape.
The composition root (relay-cli) makes ONE converter per process, registers its own hooks on it
(settings, durations), and hands it to relay-http; `create_app` makes one only when none is
given. Not imported by ``import relay_core`` (cattrs stays off the start-up path of commands
that do not print JSON).

Rules: attrs classes become dicts in field order; datetimes are RFC 3339 in UTC with whole
seconds (``2025-12-05T16:49:12Z``); enums become their values.
"""

from __future__ import annotations

from datetime import UTC, datetime

import cattrs

__all__ = ["make_converter", "rfc3339"]


def rfc3339(value: datetime) -> str:
    """``2025-12-05T16:49:12Z``: UTC, whole seconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_datetime(value: object, _: type) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"not a time: {value!r}")


def make_converter() -> cattrs.Converter:
    """A new converter with Relay's rules; forbids unknown keys when structuring."""
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_unstructure_hook(datetime, rfc3339)
    converter.register_structure_hook(datetime, _parse_datetime)
    return converter

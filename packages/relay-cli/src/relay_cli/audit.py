"""`relay logs`: the audit log, newest first, with entities named rather than numbered.

Keygen Relay users read `audit_logs` with raw SQL; this shows the same rows with license GUIDs,
node fingerprints and pool names.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

import attrs
from cyclopts import Parameter

from .durations import DurationError, parse_duration
from .runtime import Runtime, UsageError
from .tables import Layout, choose_layout, render, rfc3339
from .values import split_csv

__all__ = ["AUDIT_HEADERS", "EVENT_NAMES", "logs", "parse_since"]

AUDIT_HEADERS = ("id", "created_at", "event", "entity", "pool")


@attrs.frozen
class AuditDocument:
    """One audit row as `relay logs --json` prints it."""

    id: int
    created_at: datetime
    event: str
    entity_type: str
    entity_id: int
    entity: str | None
    pool: str | None


EVENT_NAMES = (
    "license.added",
    "license.removed",
    "license.leased",
    "license.lease_extended",
    "license.released",
    "license.lease_expired",
    "node.activated",
    "node.heartbeat_ping",
    "node.deactivated",
    "node.culled",
    "pool.added",
)
"""The event labels of Keygen Relay's `event_types` table (kept here so help needs no core import)."""

_DIGITS = re.compile(r"^\d+$")


def parse_since(text: str, now: float) -> int:
    """A point in time from ``2025-12-05T16:49:12Z``, ``2025-12-05``, Unix seconds, or a Go
    duration meaning "that long ago" (``1h30m``)."""
    if _DIGITS.match(text):
        return int(text)
    try:
        return int(now - parse_duration(text))
    except DurationError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f'invalid argument "{text}" for "--since" flag: expected an RFC 3339 time, '
            "a date, Unix seconds or a duration such as 1h"
        ) from None
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _events(values: list[str] | None) -> list[str]:
    names = split_csv(values or [])
    for name in names:
        if name not in EVENT_NAMES:
            choices = ", ".join(EVENT_NAMES)
            raise UsageError(
                f'invalid argument "{name}" for "--event" flag: must be one of {choices}'
            )
    return names


def logs(
    *,
    limit: int = 100,
    pool: str | None = None,
    event: Annotated[list[str] | None, Parameter(negative="")] = None,
    since: str | None = None,
    plain: Annotated[bool | None, Parameter(negative="")] = None,
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
    runtime: Annotated[Runtime, Parameter(parse=False)],
) -> int:
    """print the audit log, newest first

    Parameters
    ----------
    limit
        print at most this many entries
    pool
        only entries of this pool
    event
        only these events, e.g. license.leased,node.culled (repeatable; comma-separated)
    since
        only entries at or after this time: RFC 3339, a date, Unix seconds, or a duration ago (1h)
    plain
        display the table in plain text format [$RELAY_PLAIN=1]; the default off a terminal
    as_json
        print a JSON array instead of a table
    """
    if limit < 1:
        raise UsageError(f'invalid argument "{limit}" for "--limit" flag: must be at least 1')
    names = _events(event)
    cutoff = parse_since(since, runtime.clock.now()) if since is not None else None

    from relay_core import EventType

    relay = runtime.relay()
    records = relay.audit_log(
        limit=limit,
        pool=pool or None,
        events=[EventType.from_label(name) for name in names],
        since=cutoff,
    )
    if not records and not as_json:
        runtime.out.success("audit log is empty")
        return 0
    rows: list[list[str | int | None]] = []
    documents: list[AuditDocument] = []
    for record in records:
        entity = record.entity_label or f"{record.entity_type.label} #{record.entity_id}"
        created = rfc3339(record.created_at)
        rows.append([record.id, created, record.event.label, entity, record.pool_name])
        documents.append(
            AuditDocument(
                id=record.id,
                created_at=datetime.fromtimestamp(record.created_at, UTC),
                event=record.event.label,
                entity_type=record.entity_type.label,
                entity_id=record.entity_id,
                entity=record.entity_label,
                pool=record.pool_name,
            )
        )
    layout = choose_layout(plain=plain, as_json=as_json, environ=runtime.environ, out=runtime.out)
    if layout is Layout.JSON:  # through the one converter, like every --json output
        render(
            AUDIT_HEADERS,
            rows,
            layout,
            runtime.out,
            records=runtime.converter.unstructure(documents),
        )
        return 0
    render(AUDIT_HEADERS, rows, layout, runtime.out)
    return 0

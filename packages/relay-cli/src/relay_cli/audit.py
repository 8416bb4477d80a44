"""`relay logs`: the audit log, newest first, with entities named rather than numbered.

Keygen Relay users read `audit_logs` with raw SQL; this shows the same rows with license GUIDs,
node fingerprints and pool names.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import attrs
from cyclopts import Parameter

from .runtime import Runtime, UsageError
from .tables import Layout, choose_layout, render, rfc3339
from .timeflags import parse_moment
from .values import UnsetFlag, split_csv

__all__ = ["AUDIT_HEADERS", "EVENT_NAMES", "logs", "parse_since"]

AUDIT_HEADERS = ("id", "created_at", "event", "entity", "pool")

MAX_LIMIT = 2**63 - 1
"""The largest SQLite INTEGER: a bigger --limit cannot be passed to the query."""


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


def parse_since(text: str, now: float) -> int:
    """``--since``: the forms `relay report` takes (`relay_cli.timeflags.parse_moment`)."""
    return parse_moment(text, now, "--since")


def _events(values: list[str] | None) -> list[str]:
    names = split_csv(values or [], "--event")
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
    plain: UnsetFlag = None,
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
        only entries at or after this time: a date (2026-11-01, UTC), a date-time, Unix
        seconds, or a duration ago (1h, 30d)
    plain
        display the table in plain text format [$RELAY_PLAIN=1]; the default off a terminal
    as_json
        print a JSON array instead of a table
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f'invalid argument "{limit}" for "--limit" flag: must be 1-{MAX_LIMIT}')
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

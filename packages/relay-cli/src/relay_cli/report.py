"""`relay report`: seats used per pool and period, from the audit log and the denial counters.

The figures are computed by `relay_core.reports`; this module parses the time flags and prints
a table, CSV or JSON.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Annotated

from cyclopts import Parameter

from .runtime import Runtime, UsageError
from .tables import Layout, choose_layout, render, rfc3339
from .timeflags import parse_moment, parse_span
from .values import UnsetFlag

if TYPE_CHECKING:
    from relay_core.reports import PoolUsage

__all__ = ["REPORT_HEADERS", "parse_moment", "parse_span", "report"]

REPORT_HEADERS = (
    "pool",
    "start",
    "end",
    "licenses",
    "peak_leases",
    "average_leases",
    "seat_hours",
    "utilisation",
    "leases_granted",
    "leases_expired",
    "distinct_nodes",
    "denials",
)

MAX_PERIODS = 100_000
"""Periods per pool a report may have: `--every 1m` over a year is half a million rows, which is
a typing mistake, not a report."""


def _rows(usage: list[PoolUsage]) -> list[list[str | int | None]]:
    return [
        [
            u.pool,
            rfc3339(u.start),
            rfc3339(u.end),
            u.licenses,
            u.peak_leases,
            f"{u.average_leases:.2f}",
            f"{u.seat_hours:.2f}",
            f"{u.utilisation:.1f}%",
            u.leases_granted,
            u.leases_expired,
            u.distinct_nodes,
            u.denials,
        ]
        for u in usage
    ]


def _documents(usage: list[PoolUsage]) -> list[dict[str, object]]:
    return [
        {
            "pool": u.pool,
            "start": rfc3339(u.start),
            "end": rfc3339(u.end),
            "licenses": u.licenses,
            "peak_leases": u.peak_leases,
            "average_leases": round(u.average_leases, 6),
            "seat_hours": round(u.seat_hours, 6),
            "utilisation": round(u.utilisation, 6),
            "leases_granted": u.leases_granted,
            "leases_expired": u.leases_expired,
            "distinct_nodes": u.distinct_nodes,
            "denials": u.denials,
        }
        for u in usage
    ]


def _csv(usage: list[PoolUsage]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_HEADERS, lineterminator="\n")
    writer.writeheader()
    for document in _documents(usage):
        writer.writerow({k: "" if v is None else v for k, v in document.items()})
    return buffer.getvalue()


def report(
    *,
    since: str = "30d",
    until: str | None = None,
    pool: str | None = None,
    every: str | None = None,
    plain: UnsetFlag = None,
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
    as_csv: Annotated[bool, Parameter(name="--csv", negative="")] = False,
    runtime: Annotated[Runtime, Parameter(parse=False)],
) -> int:
    """report seat usage per pool and period, from the audit log

    A lease counts from its license.leased entry until its license.released or
    license.lease_expired entry; leases open at --since count from there. Denials are claims
    answered 410 (no free license), counted per minute by relay serve.

    Parameters
    ----------
    since
        start of the report: a date (2026-11-01, UTC), a date-time, Unix seconds, or a duration
        ago (30d, 12h)
    until
        end of the report, exclusive (default now, the current second included), in the same
        forms as --since
    pool
        only this pool (default: every pool, and the global pool when it is used)
    every
        one row per pool and period of this length, aligned in UTC (1h, 1d, 7d: weeks start on
        Monday); default one period
    plain
        display the table in plain text format [$RELAY_PLAIN=1]; the default off a terminal
    as_json
        print a JSON array instead of a table
    as_csv
        print CSV with a header line instead of a table
    """
    if as_json and as_csv:
        raise UsageError('"--json" and "--csv" cannot be used together')
    now = runtime.clock.now()
    start = parse_moment(since, now, "--since")
    # "Now" includes the current second: events are stamped in whole seconds, and [since, until)
    # would otherwise leave out a claim refused a moment ago.
    end = parse_moment(until, now, "--until") if until is not None else int(now) + 1
    if start >= end:
        raise UsageError(f"--since ({rfc3339(start)}) must be before --until ({rfc3339(end)})")
    step: int | None = None
    if every is not None:
        step = int(parse_span(every, "--every"))
        if step < 60:
            raise UsageError(f'invalid argument "{every}" for "--every" flag: must be at least 1m')
        if (end - start) / step > MAX_PERIODS:
            raise UsageError(
                f'invalid argument "{every}" for "--every" flag: more than {MAX_PERIODS:,} '
                "periods; choose a longer period or a shorter range"
            )

    usage = runtime.relay().usage_report(since=start, until=end, every=step, pool=pool or None)
    if as_csv:
        runtime.out.stdout.write(_csv(usage))
        return 0
    layout = choose_layout(plain=plain, as_json=as_json, environ=runtime.environ, out=runtime.out)
    if not usage and layout is not Layout.JSON:
        runtime.out.success("no pool has licenses or history")
        return 0
    render(REPORT_HEADERS, _rows(usage), layout, runtime.out, records=_documents(usage))
    return 0

"""`relay report` end to end: a known history, and the 410s a running server counts."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
from relay_core import Relay
from relay_core.errors import NoLicensesAvailableError
from relay_core.testing import FrozenClock
from relay_sqlite import SqliteStore

from .conftest import ServerFactory, Workspace

D = 1_793_577_600  # 2026-11-02T00:00:00Z, a Monday
H = 3600
DAY = 86400


def _history(ws: Workspace) -> None:
    """Three days: prod has 2 licenses and nodes a, b, c; the global pool 1 license and node g.

    a holds 0:30-2:00, b 1:00 until culled at 3:00, c is refused at 1:30 and holds 2:15 on day 1
    until 2:00 on day 2; g holds 12 hours from the start of day 3.
    """
    clock = FrozenClock(D - H)
    store = SqliteStore(ws.db)
    relay = Relay(store, clock=clock, ttl=60)
    try:
        prod = [ws.license(f"prod{n}", issued=D - 2 * H) for n in (1, 2)]
        relay.add_licenses(
            [(lic.path, lic.key) for lic in prod], public_key=ws.public_key, pool="prod"
        )
        glob = ws.license("global", issued=D - 2 * H)
        relay.add_licenses([(glob.path, glob.key)], public_key=ws.public_key)

        def at(seconds: int) -> None:
            clock.set(D + seconds)

        at(1800)
        relay.claim("a", "prod")
        at(3600)
        relay.claim("b", "prod")
        at(5400)
        with pytest.raises(NoLicensesAvailableError):
            relay.claim("c", "prod")
        assert relay.flush_denials() == 1
        at(7200)
        relay.release("a", "prod")
        at(8100)
        relay.claim("c", "prod")
        at(10800)
        relay.claim("c", "prod")  # a heartbeat: c survives the cull, b does not
        assert relay.cull().culled == 1
        at(DAY + 2 * H)
        relay.release("c", "prod")
        at(2 * DAY)
        relay.claim("g")
        at(2 * DAY + 12 * H)
        relay.release("g")
    finally:
        store.close()


def test_daily_report_matches_the_hand_count(ws: Workspace) -> None:
    _history(ws)
    run = ws.relay(
        "report", "--json", "--every", "1d", "--since", "2026-11-02", "--until", "2026-11-05"
    )
    assert run.code == 0, run.err
    rows = json.loads(run.out)
    assert [(r["pool"], r["start"]) for r in rows] == [
        (None, "2026-11-02T00:00:00Z"),
        (None, "2026-11-03T00:00:00Z"),
        (None, "2026-11-04T00:00:00Z"),
        ("prod", "2026-11-02T00:00:00Z"),
        ("prod", "2026-11-03T00:00:00Z"),
        ("prod", "2026-11-04T00:00:00Z"),
    ]
    g1, g2, g3, p1, p2, p3 = rows
    # prod, day 1: a 5,400 s + b 7,200 s + c 78,300 s = 90,900 s.
    assert p1 == {
        "pool": "prod",
        "start": "2026-11-02T00:00:00Z",
        "end": "2026-11-03T00:00:00Z",
        "licenses": 2,
        "peak_leases": 2,
        "average_leases": round(90900 / DAY, 6),
        "seat_hours": 25.25,
        "utilisation": round(100 * 90900 / (2 * DAY), 6),
        "leases_granted": 3,
        "leases_expired": 1,
        "distinct_nodes": 3,
        "denials": 1,
    }
    assert (p2["seat_hours"], p2["peak_leases"], p2["distinct_nodes"]) == (2.0, 1, 1)
    assert (p2["leases_granted"], p2["leases_expired"], p2["denials"]) == (0, 0, 0)
    assert (p3["seat_hours"], p3["peak_leases"], p3["distinct_nodes"]) == (0.0, 0, 0)
    assert [g["seat_hours"] for g in (g1, g2, g3)] == [0.0, 0.0, 12.0]
    assert (g3["utilisation"], g3["leases_granted"], g3["licenses"]) == (50.0, 1, 1)


def test_hourly_report_splits_leases_at_the_hour(ws: Workspace) -> None:
    _history(ws)
    run = ws.relay(
        "report", "--json", "--every", "1h", "--pool", "prod",
        "--since", "2026-11-02T00:00:00Z", "--until", "2026-11-05T00:00:00Z",
    )  # fmt: skip
    assert run.code == 0, run.err
    rows = json.loads(run.out)
    assert len(rows) == 72
    assert {r["pool"] for r in rows} == {"prod"}
    hours = [
        (r["seat_hours"], r["peak_leases"], r["leases_granted"], r["leases_expired"],
         r["distinct_nodes"], r["denials"])
        for r in rows[:4]
    ]  # fmt: skip
    assert hours == [
        (0.5, 1, 1, 0, 1, 0),  # a from 0:30
        (2.0, 2, 1, 0, 2, 1),  # a and b; c refused at 1:30
        (1.75, 2, 1, 0, 2, 0),  # a gone at 2:00 sharp; b, and c from 2:15
        (1.0, 1, 0, 1, 1, 0),  # b culled at 3:00 sharp; c
    ]
    assert sum(r["seat_hours"] for r in rows) == pytest.approx(27.25)
    assert sum(r["leases_granted"] for r in rows) == 3
    assert rows[26]["seat_hours"] == 0.0  # c released at 2:00 on day 2


def test_csv_and_table_show_the_same_rows(ws: Workspace) -> None:
    _history(ws)
    span = ("--since", "2026-11-02", "--until", "2026-11-03", "--pool", "prod")
    parsed = list(csv.DictReader(io.StringIO(ws.relay("report", "--csv", *span).out)))
    assert len(parsed) == 1
    assert (parsed[0]["seat_hours"], parsed[0]["denials"]) == ("25.25", "1")
    plain = ws.relay("report", "--plain", *span).out.splitlines()
    assert plain[0].split("|")[1].strip() == "pool"
    assert "25.25" in plain[2]
    assert "52.6%" in plain[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "yesterday"), 'invalid argument "yesterday" for "--since" flag'),
        (("--since", "2026-11-31"), 'invalid argument "2026-11-31" for "--since" flag'),
        (("--since", "1d", "--until", "2d"), "must be before --until"),
        (("--every", "30s"), "must be at least 1m"),
        (("--every", "1m", "--since", "1000w"), "periods; choose a longer period"),
        (("--json", "--csv"), '"--json" and "--csv" cannot be used together'),
        (("--pool", "nope"), "pool"),
    ],
)
def test_bad_flags_are_one_line(ws: Workspace, args: tuple[str, ...], message: str) -> None:
    run = ws.relay("report", *args)
    assert run.code == 1
    assert len(run.err_lines) == 1, run.err
    assert message in run.err


def test_refused_claims_are_counted_without_audit_rows(
    ws: Workspace, serve: ServerFactory
) -> None:
    """100 claims on a full pool add no audit row and one counter per minute; report says 100."""
    ws.add(ws.license("only"), pool="prod")
    server = serve("--cull-interval", "1s")
    assert server.claim("holder", "prod").status == 201
    audit_rows = ws.query("SELECT COUNT(*) FROM audit_logs")[0][0]
    started = time.time()
    statuses = {server.claim(f"fp-{n}", "prod").status for n in range(100)}
    finished = time.time()
    assert statuses == {410}
    assert ws.query("SELECT COUNT(*) FROM audit_logs")[0][0] == audit_rows
    deadline = time.monotonic() + 10
    while ws.query("SELECT COALESCE(SUM(count), 0) FROM relay_denials")[0][0] < 100:
        assert time.monotonic() < deadline, "the counts were not written within 10 s"
        time.sleep(0.2)
    minutes = {int(t) - int(t) % 60 for t in (started, finished)}
    counters = ws.query("SELECT minute, count FROM relay_denials")
    assert len(counters) <= len(minutes)
    assert {m for m, _ in counters} <= minutes
    assert server.claim("fp-last", "prod").status == 410
    code, _, err = server.stop()
    assert code == 0, err
    assert ws.query("SELECT SUM(count) FROM relay_denials")[0][0] == 101  # written on stop
    run = ws.relay("report", "--json", "--since", "1h", "--pool", "prod")
    (usage,) = json.loads(run.out)
    assert (usage["denials"], usage["leases_granted"], usage["peak_leases"]) == (101, 1, 1)

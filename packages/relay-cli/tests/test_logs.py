"""`relay logs`: the audit log newest first, entities by name, with filters."""

from __future__ import annotations

import json

import pytest
from relay_cli.audit import EVENT_NAMES, parse_since
from relay_cli.runtime import UsageError
from relay_core import EventType

from .conftest import Cli


def _story(cli: Cli) -> str:
    """Add a pooled license, claim, extend, release, claim again and let it be culled."""
    path, key = cli.license("a")
    cli(
        "add", "--file", path, "--key", key, "--public-key", cli.writer.public_key, "--pool", "prod"
    )
    relay = cli.relay
    relay.claim("node-a", pool="prod")
    cli.clock.advance(10)
    relay.claim("node-a", pool="prod")
    relay.release("node-a", pool="prod")
    relay.claim("node-b", pool="prod")
    cli.clock.advance(120)
    relay.cull()
    return cli.guids()[0]


def test_logs_show_every_event_newest_first_with_names(cli: Cli) -> None:
    """After add/claim/extend/release/cull the log names GUIDs, fingerprints and the pool."""
    guid = _story(cli)
    rows = [line.split("|")[1:-1] for line in cli("logs", "--plain").out.splitlines()[2:]]
    cells = [[cell.strip() for cell in row] for row in rows]
    assert [(event, entity) for _, _, event, entity, _ in cells] == [
        ("node.culled", "node-b"),
        ("license.lease_expired", guid),
        ("node.heartbeat_ping", "node-b"),
        ("license.leased", guid),
        ("node.activated", "node-b"),
        ("node.deactivated", "node-a"),
        ("license.released", guid),
        ("node.heartbeat_ping", "node-a"),
        ("license.lease_extended", guid),
        ("node.heartbeat_ping", "node-a"),
        ("license.leased", guid),
        ("node.activated", "node-a"),
        ("license.added", guid),
        ("pool.added", "prod"),
    ]
    assert {pool for *_, pool in cells[:-1]} == {"prod"}


def test_logs_filters(cli: Cli) -> None:
    """--event (comma-separated), --limit, --pool and --since narrow the rows."""
    guid = _story(cli)
    culled = json.loads(cli("logs", "--json", "--event", "node.culled,license.lease_expired").out)
    assert [(r["event"], r["entity"]) for r in culled] == [
        ("node.culled", "node-b"),
        ("license.lease_expired", guid),
    ]
    assert len(json.loads(cli("logs", "--json", "--limit", "3").out)) == 3
    assert len(json.loads(cli("logs", "--json", "--pool", "prod").out)) == 13
    recent = json.loads(cli("logs", "--json", "--since", "1m").out)
    assert [r["event"] for r in recent] == ["node.culled", "license.lease_expired"]


def test_logs_unknown_pool(cli: Cli) -> None:
    """An unknown pool is `error: pool not found`, exit 1."""
    result = cli("logs", "--pool", "nope")
    assert (result.code, result.err) == (1, "error: pool not found\n")


def test_logs_empty(cli: Cli) -> None:
    """An empty audit log says so (and `--json` prints an empty array)."""
    assert cli("logs").out == "audit log is empty\n"
    assert json.loads(cli("logs", "--json").out) == []


def test_logs_removed_license_is_shown_by_id(cli: Cli) -> None:
    """A removed license has no GUID left to show; its row id is printed instead."""
    path, key = cli.license("a")
    cli("add", "--file", path, "--key", key, "--public-key", cli.writer.public_key)
    cli("del", "--license", cli.guids()[0])
    first = json.loads(cli("logs", "--json", "--limit", "1").out)[0]
    assert first["event"] == "license.removed"
    assert "license #1" in cli("logs", "--plain", "--limit", "1").out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--event", "license.sold"), 'Error: invalid argument "license.sold" for "--event" flag'),
        (("--limit", "0"), 'Error: invalid argument "0" for "--limit" flag'),
        (("--since", "yesterday"), 'Error: invalid argument "yesterday" for "--since" flag'),
    ],
)
def test_logs_bad_flags_fail_before_opening(cli: Cli, args: tuple[str, ...], message: str) -> None:
    """Bad --event, --limit or --since values: one line, exit 1, database untouched."""
    result = cli("logs", *args)
    assert result.code == 1
    assert result.err.startswith(message)
    assert cli.opened == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1764953352", 1764953352),
        ("2025-12-05T16:49:12Z", 1764953352),
        ("2025-12-05T17:49:12+01:00", 1764953352),
        ("2025-12-05", 1764892800),
        ("1h", 1_000_000 - 3600),
        ("90s", 1_000_000 - 90),
    ],
)
def test_parse_since(text: str, expected: int) -> None:
    """--since takes Unix seconds, RFC 3339, a date (UTC) or a duration ago."""
    assert parse_since(text, 1_000_000) == expected


def test_parse_since_rejects_garbage() -> None:
    """Anything else is a usage error."""
    with pytest.raises(UsageError):
        parse_since("soon", 0)


def test_the_cli_event_names_are_the_cores_labels() -> None:
    """The CLI keeps its own copy of the labels (so its help needs no core import): no drift."""
    assert tuple(e.label for e in EventType if e is not EventType.UNKNOWN) == EVENT_NAMES

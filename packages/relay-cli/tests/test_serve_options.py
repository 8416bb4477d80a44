"""`relay serve`'s flags and environment (spec §1.10 with Part A), checked before anything opens."""

from __future__ import annotations

import pytest
from relay_cli.runtime import UsageError
from relay_cli.server import ServeOptions, resolve_options

from .conftest import Cli

NO_FLAGS: dict[str, None] = dict.fromkeys(
    (
        "bind",
        "port",
        "signing_secret",
        "ttl",
        "no_heartbeats",
        "strategy",
        "cull_interval",
        "pool",
        "threads",
    )
)


def options(env: dict[str, str] | None = None, **flags: object) -> ServeOptions:
    return resolve_options(env or {}, **{**NO_FLAGS, **flags})  # type: ignore[arg-type]


def test_defaults() -> None:
    """Without flags or variables: 0.0.0.0:6349, 60 s TTL, heartbeats, fifo, 15 s culls."""
    assert options() == ServeOptions(
        host="0.0.0.0",
        port=6349,
        signing_secret=None,
        ttl=60.0,
        heartbeats=True,
        strategy="fifo",
        cull_interval=15.0,
        pool=None,
        threads=16,
    )


def test_environment_fills_in_absent_flags() -> None:
    """Every variable of §1.14 that `serve` reads is honoured."""
    env = {
        "RELAY_ADDR": "127.0.0.2",
        "RELAY_PORT": "7000",
        "RELAY_SIGNING_SECRET": "hunter2",
        "RELAY_LEASE_TTL": "2m",
        "RELAY_NO_HEARTBEATS": "true",
        "RELAY_STRATEGY": "rand",
        "RELAY_CULL_INTERVAL": "500ms",
        "RELAY_POOL": "prod",
        "RELAY_THREADS": "4",
    }
    assert options(env) == ServeOptions(
        "127.0.0.2", 7000, "hunter2", 120.0, False, "rand", 0.5, "prod", 4
    )


def test_flags_win_over_the_environment() -> None:
    """A flag beats its variable."""
    env = {"RELAY_PORT": "7000", "RELAY_ADDR": "127.0.0.2", "RELAY_POOL": "prod"}
    got = options(env, port=8000, bind="127.0.0.3", pool="dev", no_heartbeats=False)
    assert (got.port, got.host, got.pool, got.heartbeats) == (8000, "127.0.0.3", "dev", True)


def test_first_non_zero_source_wins() -> None:
    """RELAY_PORT=0 or garbage counts as absent, so PORT is used; BIND_ADDR after RELAY_ADDR."""
    assert options({"RELAY_PORT": "0", "PORT": "7001"}).port == 7001
    assert options({"RELAY_PORT": "x", "PORT": "7002"}).port == 7002
    assert options({"BIND_ADDR": "127.0.0.9"}).host == "127.0.0.9"
    assert options({"RELAY_LEASE_TTL": "soon"}).ttl == 60.0
    assert options({"RELAY_NO_HEARTBEATS": "yes"}).heartbeats is True


def test_bracketed_ipv6_bind() -> None:
    """`--bind '[::1]'` (the reference's syntax) binds ::1."""
    assert options(bind="[::1]").host == "::1"


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        (
            {"ttl": "5"},
            {},
            'invalid argument "5" for "-t, --ttl" flag: time: missing unit in duration "5"',
        ),
        ({"ttl": "29s"}, {}, "time-to-live value must be at least 30s"),
        ({}, {"RELAY_LEASE_TTL": "10s"}, "time-to-live value must be at least 30s"),
        (
            {"strategy": "x"},
            {},
            'invalid argument "x" for "--strategy" flag: must be one of "lifo", "fifo", or "rand"',
        ),
        (
            {},
            {"RELAY_STRATEGY": "FIFO"},
            'invalid RELAY_STRATEGY "FIFO": must be one of "lifo", "fifo", or "rand"',
        ),
        (
            {"cull_interval": "0s"},
            {},
            'invalid argument "0s" for "--cull-interval" flag: must be positive',
        ),
        (
            {"cull_interval": "-1s"},
            {},
            'invalid argument "-1s" for "--cull-interval" flag: must be positive',
        ),
        ({}, {"RELAY_CULL_INTERVAL": "-5s"}, 'invalid RELAY_CULL_INTERVAL "-5s": must be positive'),
        ({"port": 70000}, {}, 'invalid argument "70000" for "-p, --port" flag: must be 0-65535'),
        ({"threads": 0}, {}, 'invalid argument "0" for "--threads" flag: must be at least 1'),
    ],
)
def test_invalid_values(flags: dict[str, object], env: dict[str, str], message: str) -> None:
    """Each bad value is one clear message."""
    with pytest.raises(UsageError) as caught:
        options(env, **flags)
    assert str(caught.value) == message


def test_serve_rejects_bad_flags_before_opening_the_database(cli: Cli) -> None:
    """`serve --ttl 10s` prints one line, exits 1, and never opens the store."""
    result = cli("serve", "--ttl", "10s")
    assert (result.code, result.out, result.err) == (
        1,
        "",
        "Error: time-to-live value must be at least 30s\n",
    )
    assert cli.opened == []


def test_serve_short_flags_parse(cli: Cli) -> None:
    """-b, -p and -t are accepted (the reference README documents -t)."""
    result = cli("serve", "-b", "127.0.0.1", "-p", "1", "-t", "1s")
    assert result.err == "Error: time-to-live value must be at least 30s\n"

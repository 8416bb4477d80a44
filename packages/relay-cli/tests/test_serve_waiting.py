"""`relay serve --max-wait/--max-waiting` and their variables, checked before anything opens."""

from __future__ import annotations

import pytest
from relay_cli.runtime import UsageError

from .conftest import Cli
from .test_serve_options import options


def test_waiting_defaults() -> None:
    """Without flags or variables a claim may wait 60 s, and 256 may wait at once."""
    got = options()
    assert (got.max_wait, got.max_waiting) == (60, 256)


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        ("90", {}, 90),
        ("2m", {}, 120),
        ("0", {"RELAY_MAX_WAIT": "30"}, 0),
        (None, {"RELAY_MAX_WAIT": "0"}, 0),
        (None, {"RELAY_MAX_WAIT": "45s"}, 45),
        (None, {"RELAY_MAX_WAIT": ""}, 60),
    ],
)
def test_max_wait_sources(flag: str | None, env: dict[str, str], expected: int) -> None:
    """Seconds or a duration; the flag wins; a 0 from either source disables waiting."""
    assert options(env, max_wait=flag).max_wait == expected


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        (5, {}, 5),
        (0, {}, 0),
        (None, {"RELAY_MAX_WAITING": "0"}, 0),
        (7, {"RELAY_MAX_WAITING": "9"}, 7),
    ],
)
def test_max_waiting_sources(flag: int | None, env: dict[str, str], expected: int) -> None:
    """A whole number; the flag wins; 0 means no claim ever waits."""
    assert options(env, max_waiting=flag).max_waiting == expected


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        (
            {"max_wait": "1500ms"},
            {},
            'invalid argument "1500ms" for "--max-wait" flag: must be whole seconds',
        ),
        (
            {"max_wait": "-5s"},
            {},
            'invalid argument "-5s" for "--max-wait" flag: must not be negative',
        ),
        (
            {"max_wait": "soon"},
            {},
            'invalid argument "soon" for "--max-wait" flag: time: invalid duration "soon"',
        ),
        (
            {},
            {"RELAY_MAX_WAIT": "abc"},
            'invalid RELAY_MAX_WAIT "abc": time: invalid duration "abc"',
        ),
        (
            {"max_waiting": -1},
            {},
            'invalid argument "-1" for "--max-waiting" flag: must not be negative',
        ),
        ({}, {"RELAY_MAX_WAITING": "x"}, 'invalid RELAY_MAX_WAITING "x": must be a whole number'),
    ],
)
def test_invalid_waiting_values(
    flags: dict[str, object], env: dict[str, str], message: str
) -> None:
    """Each bad value is one clear message."""
    with pytest.raises(UsageError) as caught:
        options(env, **flags)
    assert str(caught.value) == message


def test_serve_help_lists_the_waiting_flags(cli: Cli) -> None:
    """`serve --help` documents both flags with their variables."""
    out = cli("serve", "--help").out
    assert "--max-wait" in out
    assert "$RELAY_MAX_WAIT=60" in out
    assert "--max-waiting" in out
    assert "$RELAY_MAX_WAITING=256" in out


def test_serve_rejects_a_bad_max_wait_before_opening_the_database(cli: Cli) -> None:
    """`serve --max-wait 1.5s` prints one line, exits 1, and never opens the store."""
    result = cli("serve", "--max-wait", "1.5s")
    assert (result.code, result.err) == (
        1,
        'Error: invalid argument "1.5s" for "--max-wait" flag: must be whole seconds\n',
    )
    assert cli.opened == []

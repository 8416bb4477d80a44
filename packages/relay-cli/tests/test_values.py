"""Value syntax (spec §1.4), Go durations, the plain table, and backend selection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from relay_cli.durations import DurationError, format_duration, parse_duration
from relay_cli.storage import backend_name, open_store
from relay_cli.tables import render_plain, rfc3339
from relay_cli.values import env_bool, env_duration, env_int, env_str, split_csv
from relay_core import StorageError


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["a.lic,b.lic", "c.lic"], ["a.lic", "b.lic", "c.lic"]),
        (['"x,y.lic"'], ["x,y.lic"]),
        ([""], []),
        ([" a, b"], [" a", " b"]),
        (["a", "", "b"], ["a", "b"]),
    ],
)
def test_split_csv(values: list[str], expected: list[str]) -> None:
    """Each occurrence is one CSV record; quotes protect commas; spaces are kept; "" adds nothing."""
    assert split_csv(values, "--file") == expected


def test_env_rules() -> None:
    """Only true/t/1 are true; 0, empty and garbage are absent; the first usable source wins."""
    env = {"A": "TRUE", "B": "t", "Z": "0", "G": "x", "P": "7", "D": "1m30s", "E": ""}
    assert env_bool(env, "A") is False
    assert env_bool(env, "A", "B") is True
    assert env_int(env, "Z", "G", "P") == 7
    assert env_int(env, "Z") is None
    assert env_duration(env, "G", "D") == 90.0
    assert env_str(env, "E", "MISSING", "P") == "7"
    assert env_str(env, "E") is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("2h45m", 9900.0),
        ("0", 0.0),
        ("-1m", -60.0),
        ("+5s", 5.0),
        ("1.s", 1.0),
        (".5m", 30.0),
        ("300us", 0.0003),
        ("100ns", 1e-7),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    """Go's duration syntax, sums of number+unit parts."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", 'time: missing unit in duration "5"'),
        ("", 'time: invalid duration ""'),
        ("s", 'time: invalid duration "s"'),
        ("5d", 'time: unknown unit "d" in duration "5d"'),
        ("1m5", 'time: missing unit in duration "1m5"'),
        (".s", 'time: invalid duration ".s"'),
    ],
)
def test_parse_duration_errors(text: str, message: str) -> None:
    """Bad durations give Go's message."""
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(60, "1m0s"), (15, "15s"), (3600, "1h0m0s"), (0.5, "500ms"), (90.5, "1m30.5s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    """Durations print as Go prints them."""
    assert format_duration(seconds) == text


@given(st.integers(min_value=1, max_value=10**6))
def test_format_then_parse_round_trips(seconds: int) -> None:
    """Every whole number of seconds survives format -> parse."""
    assert parse_duration(format_duration(seconds)) == seconds


def test_plain_table_measures_widths_in_bytes() -> None:
    """Widths are counted in bytes, as the reference does, so a non-ASCII cell widens its column."""
    assert (
        render_plain(["id", "pool"], [["a", "é"]]) == "| id | pool |\n+----+------+\n| a  | é   |\n"
    )
    assert render_plain(["p"], [["ééé"]]) == "| p      |\n+--------+\n| ééé |\n"


def test_rfc3339() -> None:
    """Unix seconds print as UTC with a Z."""
    assert rfc3339(1764953352) == "2025-12-05T16:49:12Z"
    assert rfc3339(None) is None


@pytest.mark.parametrize(
    ("database", "backend"),
    [
        ("./relay.sqlite", "sqlite"),
        ("/data/relay.sqlite", "sqlite"),
        ("C:\\r.sqlite", "sqlite"),
        ("postgres://db/relay", "postgres"),
        ("Memory://x", "memory"),
    ],
)
def test_backend_is_chosen_by_scheme(database: str, backend: str) -> None:
    """`name://...` picks entry point `name`; a plain path picks sqlite."""
    assert backend_name(database) == backend


def test_unknown_backend_is_a_storage_error() -> None:
    """A scheme with no installed backend is one clear StorageError naming the installed ones."""
    with pytest.raises(StorageError, match=r'no storage backend "nosuch" .*installed: .*sqlite'):
        open_store("nosuch://x", pragmas={})

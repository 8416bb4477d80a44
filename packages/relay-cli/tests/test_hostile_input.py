"""Values a network client or a typo controls: escaped in tables, capped when read, bounded
when parsed; every refusal one line, exit 1, before the database is touched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from relay_core.small_files import FileError, read_bytes

from .conftest import Cli
from .test_lock_cli import LICENSE_KEY, full_lock, this_machine

EVIL = "evil\n| fake | 1 |\x1b[31mred[bold]x[/bold]\u202e"
"""A fingerprint a client can send (PUT /v1/nodes/<percent-encoded>): a forged row, an ANSI
escape, rich markup and a bidi override."""


def lease_for(cli: Cli, fingerprint: str) -> None:
    path, key = cli.license("a")
    assert cli("add", "--file", path, "--key", key, "--public-key", cli.writer.public_key).code == 0
    cli.relay.claim(fingerprint)


@pytest.mark.parametrize("command", ["leases", "logs"])
def test_plain_tables_escape_control_characters(cli: Cli, command: str) -> None:
    """A fingerprint with a line break and an escape stays in its one row, escaped."""
    lease_for(cli, EVIL)
    out = cli(command, "--plain").out
    assert "\x1b" not in out
    assert "\u202e" not in out
    rows = out.splitlines()[2:]
    assert all(row.startswith("| ") and row.endswith(" |") for row in rows)
    assert not any(row.startswith("| fake") for row in rows)
    assert "evil\\n| fake | 1 |\\x1b[31mred[bold]x[/bold]\\u202e" in out


def test_rich_tables_escape_control_characters_and_markup(cli: Cli) -> None:
    """The terminal table shows the same escaped text, and "[bold]" in a value is not markup."""
    lease_for(cli, EVIL)
    out = cli("leases", "--plain=false").out
    assert "\x1b" not in out
    assert "evil\\n| fake" in out
    assert "red[bold]x[/bold]" in out


# -- file arguments ------------------------------------------------------------------------------


@pytest.fixture
def big(tmp_path: Path) -> str:
    """A 2 MiB (sparse) file: larger than any file relay reads."""
    path = tmp_path / "big"
    with path.open("wb") as handle:
        handle.truncate(2 * 1024 * 1024)
    return str(path)


FILE_FLAGS = [
    (("signing-key", "show", "{}"), "Error: cannot read signing key file {}: "),
    (("serve", "--print-config", "--config", "{}"), "error: {}: "),
    (
        ("serve", "--print-config", "--signing-key-file", "{}"),
        "Error: cannot read signing key file {}: ",
    ),
    (
        ("serve", "--print-config", "--node-token-file", "{}"),
        "Error: cannot read node token file {}: ",
    ),
    (
        ("serve", "--print-config", "--allow-fingerprints", "{}"),
        "Error: cannot read allow-list {}: ",
    ),
    (
        ("serve", "--print-config", "--admin-token-file", "{}"),
        'Error: invalid argument "{}" for "--admin-token-file" flag: ',
    ),
    (
        ("add", "--file", "x", "--key", "K", "--public-key-file", "{}"),
        "Error: cannot read public key file {}: ",
    ),
    (
        (
            "lock",
            "build",
            "--public-key",
            "{key}",
            "--fingerprint",
            "f",
            "--output",
            "o",
            "--signing-key-file",
            "{}",
        ),
        "Error: cannot read signing key file {}: ",
    ),
    (
        ("add", "--file", "{}", "--key", "K", "--public-key", "{key}"),
        "error: failed to read license file: read {}: ",
    ),
]


@pytest.mark.parametrize(("args", "prefix"), FILE_FLAGS)
@pytest.mark.parametrize("which", ["device", "big"])
def test_file_flags_refuse_devices_and_huge_files(
    cli: Cli, big: str, args: tuple[str, ...], prefix: str, which: str
) -> None:
    """Every flag that names a file refuses a device (/dev/zero would be read forever) and a
    file over 1 MiB, in one line, without opening the database."""
    path = "/dev/null" if which == "device" else big
    reason = "not a regular file" if which == "device" else "larger than 1 MiB"
    key = cli.writer.public_key
    result = cli(*(a.replace("{key}", key).replace("{}", path) for a in args))
    if which == "big" and "public key" in prefix:
        reason = "larger than 65536 bytes"  # a key file has a smaller cap
    assert (result.code, result.err) == (1, prefix.replace("{}", path) + reason + "\n")
    assert cli.opened == []


@pytest.mark.parametrize("which", ["device", "big"])
def test_locked_machine_file_is_capped_too(cli: Cli, big: str, which: str) -> None:
    """--node-locked-machine-file-path /dev/zero used to hang: now a one-line unlock failure."""
    cli.lock = full_lock(cli.writer)
    cli.machine = this_machine()
    path = "/dev/null" if which == "device" else big
    result = cli(
        "--node-locked-machine-file-path", path, "--node-locked-license-key", LICENSE_KEY, "ls"
    )
    assert result.code == 1
    assert result.err.startswith(
        f"Error: failed to unlock relay: machine file could not be read: open {path}: "
    )
    assert result.err.endswith(("not a regular file\n", "larger than 1 mib\n"))
    assert cli.opened == []


def test_reader_refuses_a_fifo_without_waiting(tmp_path: Path) -> None:
    """A FIFO nobody writes to is refused at once (opened non-blocking), not waited on."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(FileError, match="not a regular file"):
        read_bytes(fifo)


def test_add_with_a_bad_public_key_creates_no_database(cli: Cli) -> None:
    """A key that is not hex is reported before the store is opened (it used to create it)."""
    path, key = cli.license("a")
    result = cli("add", "--file", path, "--key", key, "--public-key", "zz")
    assert (result.code, result.err) == (
        1,
        "error: invalid public key: not hex (expected 64 hex digits)\n",
    )
    assert cli.opened == []


# -- out-of-range values -------------------------------------------------------------------------

HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("serve", "--cull-interval", "99999999999h"), {}, 'Error: invalid argument "99999999999h" for "--cull-interval" flag: must be at most 24h0m0s'),
        (("serve",), {"RELAY_CULL_INTERVAL": "48h"}, 'Error: invalid RELAY_CULL_INTERVAL "48h": must be at most 24h0m0s'),
        (("serve", "--ttl", "99999999999h"), {}, "Error: time-to-live value must be at most 87600h0m0s"),
        (("serve", "--max-wait", "2h"), {}, 'Error: invalid argument "2h" for "--max-wait" flag: must be at most 3600 seconds (1h0m0s)'),
        (("serve", "--max-wait=-5"), {}, 'Error: invalid argument "-5" for "--max-wait" flag: must not be negative'),
        (("logs", "--since", HUGE), {}, f'Error: invalid argument "{HUGE}" for "--since" flag: must be between 1970-01-01 and 9999-12-31 (UTC)'),
        (("logs", "--limit", "1" + "0" * 20), {}, 'Error: invalid argument "100000000000000000000" for "--limit" flag: must be 1-9223372036854775807'),
        (("report", "--since", HUGE), {}, f'Error: invalid argument "{HUGE}" for "--since" flag: must be between 1970-01-01 and 9999-12-31 (UTC)'),
        (("report", "--since", "1000000d"), {}, 'Error: invalid argument "1000000d" for "--since" flag: must be between 1970-01-01 and 9999-12-31 (UTC)'),
        (("report", "--until", "1700000000000"), {}, 'Error: invalid argument "1700000000000" for "--until" flag: must be between 1970-01-01 and 9999-12-31 (UTC)'),
        (("report", "--since", "9" * 400 + "d"), {}, 'Error: invalid argument "'),
        (("report", "--since", "abc"), {}, 'Error: invalid argument "abc" for "--since" flag: expected a date (2026-11-01), a date-time (2026-11-01T12:00:00Z), Unix seconds, or a duration ago (30d, 12h)'),
        (("leases", "--ttl", "99999999999h"), {}, "Error: time-to-live value must be at most 87600h0m0s"),
    ],
)  # fmt: skip
def test_out_of_range_values_are_usage_errors(
    cli: Cli, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    """Huge durations, times and limits are refused up front in one line (they used to crash the
    reaper thread or surface as "unexpected OverflowError")."""
    cli.env.update(env)
    result = cli(*args, *(("--print-config",) if args[0] == "serve" else ()))
    assert result.code == 1
    assert result.err.startswith(message)
    assert result.err.count("\n") == 1
    assert cli.opened == []


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cull_interval", '"48h"', 'cull_interval: must be at most 24h0m0s, got "48h"'),
        ("ttl", '"99999h"', 'ttl: must be at most 87600h0m0s, got "99999h"'),
        ("max_wait", "7200", "max_wait: must be at most 3600, got 7200"),
    ],
)
def test_config_file_durations_are_bounded(cli: Cli, key: str, value: str, message: str) -> None:
    """The config file's keys have the bounds of their flags."""
    config = cli.tmp / "relay.toml"
    config.write_text(f"{key} = {value}\n")
    result = cli("serve", "--config", str(config), "--print-config")
    assert (result.code, result.err) == (1, f"error: {config}: {message}\n")


@pytest.mark.parametrize("since", ["30d", "1w", "1d12h"])
def test_logs_takes_the_since_forms_of_report(cli: Cli, since: str) -> None:
    """One parser for both commands: days and weeks work for `logs` too."""
    result = cli("logs", "--since", since, "--plain")
    assert (result.code, result.out) == (0, "audit log is empty\n")


# -- comma-separated lists -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "--file", "no\nfile", "--key", "K"), 'Error: invalid argument "no\\nfile" for "--file" flag: new-line character seen in unquoted field'),
        (("add", "--file", "a.lic", "--key", "K\n2"), 'Error: invalid argument "K\\n2" for "--key" flag: new-line character seen in unquoted field'),
        (("del", "--license", "a\nb"), 'Error: invalid argument "a\\nb" for "--license" flag: new-line character seen in unquoted field'),
        (("logs", "--event", "a\nb"), 'Error: invalid argument "a\\nb" for "--event" flag: new-line character seen in unquoted field'),
        (("--pragma", "a=b\nc", "ls"), 'Error: invalid argument "a=b\\nc" for "--pragma" flag: new-line character seen in unquoted field'),
        (("add", "--file", "l3.lic,", "--key", "KEY-3,"), 'Error: invalid argument "l3.lic," for "--file" flag: empty element in the comma-separated list'),
        (("add", "--file", '"l3.lic', "--key", "K"), 'Error: invalid argument ""l3.lic" for "--file" flag: a quoted element has no closing "'),
        (("del", "--license", '"a"b'), 'Error: invalid argument ""a"b" for "--license" flag: \',\' expected after \'"\''),
    ],
)  # fmt: skip
def test_bad_comma_lists_are_usage_errors(cli: Cli, args: tuple[str, ...], message: str) -> None:
    """A list flag's value must be one CSV record without empty elements; a line break shows
    escaped, so the error stays one line."""
    result = cli(*args, *(("--public-key", cli.writer.public_key) if args[0] == "add" else ()))
    assert (result.code, result.err) == (1, message + "\n")
    assert cli.opened == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("release", "--fingerprint", ""), 'Error: invalid argument "" for "--fingerprint" flag: a fingerprint is required'),
        (("signing-key", "new", "-o", ""), 'Error: invalid argument "" for "-o, --out" flag: a file name is required'),
    ],
)  # fmt: skip
def test_empty_values_are_usage_errors(cli: Cli, args: tuple[str, ...], message: str) -> None:
    """An empty fingerprint or output path is a usage error, not "no lease held by node "."""
    result = cli(*args)
    assert (result.code, result.err) == (1, message + "\n")
    assert cli.opened == []

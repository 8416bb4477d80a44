"""Global flags, usage errors, version, help and completion through the real app."""

from __future__ import annotations

import logging

import pytest
import relay_cli
from relay_cli.cli import run

from .conftest import Cli


def test_version_prints_the_package_version_without_opening_the_database(cli: Cli) -> None:
    """`relay version` prints relay-cli's version and nothing else."""
    result = cli("version")
    assert (result.code, result.out, result.err) == (0, f"{relay_cli.__version__}\n", "")
    assert cli.opened == []


def test_version_flag(cli: Cli) -> None:
    """`relay --version` prints `relay version <v>`."""
    assert cli("--version").out == f"relay version {relay_cli.__version__}\n"
    assert cli.opened == []


@pytest.mark.parametrize(
    "args",
    [(), ("--help",), ("-h",), ("help",), ("help", "add"), ("add", "--help"), ("serve", "-h")],
)
def test_help_never_opens_the_database(cli: Cli, args: tuple[str, ...]) -> None:
    """Every help form prints usage on stdout, exits 0 and opens nothing."""
    result = cli(*args)
    assert result.code == 0
    assert "Usage: relay" in result.out
    assert cli.opened == []


def test_help_lists_every_command(cli: Cli) -> None:
    """The root help names each command with the reference's short descriptions."""
    out = cli("--help").out
    for line in (
        "push license(s) to the local relay server's pool",
        "delete license(s) from the local relay server's pool",
        "run the relay server to manage license distribution",
        "print stats for a license in the local relay server's pool",
        "print the current relay version",
    ):
        assert line in out


def test_help_for_an_unknown_command(cli: Cli) -> None:
    """`relay help foo` is one error line and exit 1."""
    result = cli("help", "foo")
    assert (result.code, result.err) == (1, 'Error: unknown command "foo" for "relay"\n')


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(cli: Cli, shell: str) -> None:
    """`completion <shell>` prints a script that completes relay's commands, opening nothing."""
    result = cli("completion", shell)
    assert result.code == 0
    assert "relay" in result.out
    assert "serve" in result.out
    assert cli.opened == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nosuch",), 'Error: unknown command "nosuch"'),
        (("ls", "--foo"), "Error: unknown option: --foo"),
        (("add", "--file"), "Error: "),
        (("serve", "--port", "abc"), "Error: invalid value for --port"),
        (("--database",), "Error: parameter --database requires an argument"),
        (("completion", "tcsh"), "Error: "),
        (("ls", "junk"), "Error: unexpected argument(s): junk"),
    ],
)
def test_usage_errors_are_one_line(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Usage errors print one `Error:` line (cobra's prefix) on stderr, nothing on stdout, exit 1."""
    code = run(args)
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert captured.err.startswith(message)
    assert captured.err.count("\n") == 1


def test_bad_pragma_is_rejected_before_opening(cli: Cli) -> None:
    """`--pragma bad` gives the reference's message and never opens the database."""
    result = cli("--pragma", "bad", "ls")
    assert (result.code, result.err) == (
        1,
        "Error: invalid pragma format: bad (expected key=value)\n",
    )
    assert cli.opened == []


def test_pragmas_and_database_reach_the_store(cli: Cli) -> None:
    """Repeated and comma-separated pragmas and --database are passed to the storage backend."""
    cli(
        "--database",
        "x.sqlite",
        "--pragma",
        "mmap_size=1,cache_size=-2000",
        "ls",
        "--pragma",
        "a=b=c",
    )
    assert cli.opened == [("x.sqlite", {"mmap_size": "1", "cache_size": "-2000", "a": "b=c"})]


def test_database_from_env_and_default(cli: Cli) -> None:
    """RELAY_DATABASE sets the default database; without it ./relay.sqlite is used."""
    cli("ls")
    cli.env["RELAY_DATABASE"] = "/data/relay.sqlite"
    cli("ls")
    assert [db for db, _ in cli.opened] == ["./relay.sqlite", "/data/relay.sqlite"]


@pytest.mark.parametrize(("flag", "env"), [(("--no-audit",), {}), ((), {"RELAY_NO_AUDIT": "t"})])
def test_no_audit_writes_no_audit_rows(
    cli: Cli, flag: tuple[str, ...], env: dict[str, str]
) -> None:
    """--no-audit or RELAY_NO_AUDIT=t: adding a license leaves the audit log empty."""
    cli.env.update(env)
    path, key = cli.license("a")
    assert (
        cli(*flag, "add", "--file", path, "--key", key, "--public-key", cli.writer.public_key).code
        == 0
    )
    assert cli.guids() != []
    assert cli.relay.audit_log() == []


def test_relay_no_audit_needs_an_exact_true_word(cli: Cli) -> None:
    """RELAY_NO_AUDIT=yes is not true (spec §1.4), so auditing stays on."""
    cli.env["RELAY_NO_AUDIT"] = "yes"
    path, key = cli.license("a")
    cli("add", "--file", path, "--key", key, "--public-key", cli.writer.public_key)
    assert len(cli.relay.audit_log()) == 1


@pytest.mark.parametrize(
    ("args", "env", "level"),
    [
        ((), {}, logging.ERROR),
        ((), {"DEBUG": "1"}, logging.DEBUG),
        (("-v",), {}, logging.ERROR),
        (("-vv",), {}, logging.WARNING),
        (("-vvv",), {}, logging.INFO),
        (("-v", "-v", "-v", "-v"), {}, logging.DEBUG),
        (("--verbose", "--verbose", "--verbose"), {}, logging.INFO),
    ],
)
def test_verbosity_sets_the_log_level(
    cli: Cli, args: tuple[str, ...], env: dict[str, str], level: int
) -> None:
    """The -v count maps to Keygen Relay's levels (spec §7)."""
    cli.env.update(env)
    cli(*args, "version")
    assert logging.getLogger("relay").level == level


def test_logs_go_to_stderr(cli: Cli) -> None:
    """With -vvvv the debug lines appear on stderr while stdout carries only the result."""
    result = cli("-vvvv", "ls")
    assert result.out == "license pool is empty\n"
    assert "DBG opening database ./relay.sqlite" in result.err


def test_global_flags_work_after_the_command(cli: Cli) -> None:
    """`relay ls --database x` works like `relay --database x ls` (persistent flags)."""
    cli("ls", "--database", "after.sqlite", "--no-audit")
    assert cli.opened[0][0] == "after.sqlite"

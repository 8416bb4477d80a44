"""Global flags, usage errors, version, help and completion through the real app."""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

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
        (("ls", "--foo"), "Error: unknown flag: --foo"),
        (("add", "--file"), "Error: "),
        (("serve", "--port", "abc"), 'Error: invalid argument "abc" for "-p, --port" flag'),
        (("--database",), "Error: flag needs an argument: --database"),
        (("completion", "tcsh"), "Error: "),
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


@pytest.mark.parametrize("stdout", ["/dev/full", None], ids=["full", "closed"])
@pytest.mark.parametrize(
    "args", [["version"], ["--version"], ["-v", "version"], ["-v", "--version"]]
)
def test_version_on_an_unwritable_stdout_is_one_line(
    stdout: object,
    args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`relay version > /dev/full` (or with stdout closed) is one `error:` line and exit 1."""
    from relay_cli.app import main

    with contextlib.ExitStack() as stack:
        stream = None if stdout is None else stack.enter_context(open(stdout, "w"))
        monkeypatch.setattr("sys.stdout", stream)
        with pytest.raises(SystemExit) as exited:
            main(args)
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write to stdout: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ls", "-x"), "Error: unknown shorthand flag: 'x' in -x\n"),
        (("add", "--file"), "Error: flag needs an argument: --file\n"),
        (("serve", "-p"), "Error: flag needs an argument: 'p' in -p\n"),
        (("serve", "-p", "abc"), 'Error: invalid argument "abc" for "-p, --port" flag: '),
        (("logs", "--limit", "abc"), 'Error: invalid argument "abc" for "--limit" flag: '),
        (("ls", "--plain=maybe"), 'Error: invalid argument "maybe" for "--plain" flag: '),
        (("--verbose=abc", "ls"), 'Error: invalid argument "abc" for "-v, --verbose" flag: '),
        (("serve", "--threads", "1e3"), 'Error: invalid argument "1e3" for "--threads" flag: '),
        (("foo",), "Error: unknown command \"foo\" for \"relay\". Run 'relay --help' for usage.\n"),
        (("db", "bogus"), 'Error: unknown command "bogus" for "relay db". '),
        (("add", "--version"), "Error: unknown flag: --version\n"),
        (("db", "copy", "--version"), "Error: unknown flag: --version\n"),
        (("ls", "junk", "--foo"), "Error: unknown flag: --foo\n"),
        (("--version", "--foo"), "Error: unknown flag: --foo\n"),
        (("--version", "extra"), "Error: unknown command \"extra\" for \"relay\". Run 'relay --help' for usage.\n"),
    ],
)  # fmt: skip
def test_parse_errors_use_pflag_wording(
    args: tuple[str, ...],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """cobra/pflag's messages (spec §1.1), one line, exit 1, no database created."""
    monkeypatch.chdir(tmp_path)
    code = run(args)
    captured = capsys.readouterr()
    assert (code, captured.out) == (1, "")
    assert captured.err.startswith(message)
    assert captured.err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_command_ignores_extra_words(cli: Cli) -> None:
    """`relay add junk --file ...` works: subcommands accept and ignore extra arguments."""
    path, key = cli.license("a")
    result = cli("add", "junk", "--file", path, "--key", key, "--public-key", cli.writer.public_key)
    assert (result.code, result.err) == (0, "")
    assert len(cli.guids()) == 1


def test_the_last_of_a_repeated_flag_wins(cli: Cli) -> None:
    """`--port 1 --port 2` is port 2, as pflag does; -v still counts every occurrence."""
    result = cli("serve", "--port", "1", "--port", "2", "--print-config")
    assert result.code == 0
    assert "port = 2\n" in result.out
    cli("--database", "a.sqlite", "--database", "b.sqlite", "ls")
    assert cli.opened[-1][0] == "b.sqlite"


def test_completion_knows_boolean_flags_and_strategies(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    """Boolean flags take no value in the bash script (so `relay --no-audit l<TAB>` completes),
    and `serve --strategy <TAB>` offers fifo, lifo and rand."""
    script = cli("completion", "bash").out
    line = next(line for line in script.splitlines() if "options_with_values=" in line)
    for flag in ("--no-audit", "--no-heartbeats", "--no-metrics", "--plain"):
        assert f" {flag} " not in line
    assert run(["__complete", "serve", "--strategy", ""]) == 0
    assert capsys.readouterr().out.split()[-3:] == ["fifo", "lifo", "rand"]


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        (("add",), ("--file", "--key", "--public-key")),
        (("del",), ("--license",)),
        (("stat",), ("--license",)),
        (("release",), ("--fingerprint",)),
        (("signing-key", "new"), ("--out",)),
        (("lock", "build"), ("--public-key", "--fingerprint", "--output")),
    ],
)
def test_help_marks_required_flags(
    cli: Cli, command: tuple[str, ...], flags: tuple[str, ...]
) -> None:
    """Like `db copy --help`, each required flag says so (its help text ends in [required...])."""
    out = cli(*command, "--help").out
    entries = re.split(r"\n│ (?=-)", out)
    for flag in flags:
        entry = next(e for e in entries if e.startswith(flag + " "))
        assert "[required" in entry, entry


def test_help_for_an_unknown_subcommand(cli: Cli) -> None:
    """`relay help db bogus` is an error like `relay help foo`, not the db help."""
    result = cli("help", "db", "bogus")
    assert (result.code, result.out, result.err) == (
        1,
        "",
        'Error: unknown command "bogus" for "relay db"\n',
    )

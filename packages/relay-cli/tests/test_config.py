"""`relay serve --config relay.toml`: keys, precedence, errors, and --print-config."""

from __future__ import annotations

import tomllib
from pathlib import Path

import attrs
import pytest
from relay_cli.config import ServeFile

from .conftest import Cli

FULL = """\
bind = "127.0.0.1"
port = 7001
signing_secret = "hunter2"
ttl = "2m"
no_heartbeats = false
strategy = "lifo"
cull_interval = "30s"
pool = "prod"
threads = 4
admin_token = "admin-secret"
no_metrics = true
max_wait = "2m"
max_waiting = 9
max_new_nodes_per_minute = 30
database = "./file.sqlite"
no_audit = true

[pragmas]
mmap_size = 268435456
synchronous = "FULL"
"""


def write(tmp: Path, text: str, name: str = "relay.toml") -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def printed(cli: Cli, *args: str) -> dict[str, object]:
    run = cli("serve", *args, "--print-config")
    assert run.code == 0, run.err
    assert run.err == ""
    return tomllib.loads(run.out)


def test_every_key_is_read_and_printed_back_with_secrets_masked(cli: Cli, tmp_path: Path) -> None:
    config = printed(cli, "--config", write(tmp_path, FULL))
    assert config == {
        "bind": "127.0.0.1",
        "port": 7001,
        "signing_secret": "********",
        "ttl": "2m0s",
        "no_heartbeats": False,
        "strategy": "lifo",
        "cull_interval": "30s",
        "pool": "prod",
        "threads": 4,
        "admin_token": "********",
        "no_metrics": True,
        "max_wait": 120,
        "max_waiting": 9,
        "max_new_nodes_per_minute": 30,
        "database": "./file.sqlite",
        "no_audit": True,
        "pragmas": {"mmap_size": "268435456", "synchronous": "FULL"},
    }
    assert cli.opened == []  # printing opens no database


def test_the_example_in_operations_md_is_complete_and_valid(cli: Cli, tmp_path: Path) -> None:
    """docs/operations.md shows every key of ServeFile in one example, and it loads."""
    docs = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
    example = docs.split("```toml\n", 1)[1].split("```", 1)[0]
    top_level = example.split("\n[", 1)[0]
    shown = {line.lstrip("# ").split(" ", 1)[0] for line in top_level.splitlines() if " = " in line}
    shown.update(tomllib.loads(example).keys() - shown)  # the tables (pragmas)
    assert shown == {field.name for field in attrs.fields(ServeFile)}
    (tmp_path / "admin-token").write_text("t0ken\n")
    (tmp_path / "signing-secret").write_text("s3cret\n")
    example = example.replace("/etc/relay/", f"{tmp_path}/")
    assert cli("serve", "--config", write(tmp_path, example), "--print-config").code == 0


def test_flags_then_environment_then_file_then_defaults(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 7001\nttl = "2m"\nstrategy = "lifo"\ndatabase = "f.sqlite"\n')
    cli.env.update({"RELAY_LEASE_TTL": "3m", "RELAY_CONFIG": path})
    config = printed(cli, "--port", "7002")
    assert (config["port"], config["ttl"], config["strategy"]) == (7002, "3m0s", "lifo")
    assert config["cull_interval"] == "15s"  # the default
    assert config["database"] == "f.sqlite"
    assert printed(cli, "--database", "flag.sqlite")["database"] == "flag.sqlite"
    cli.env["RELAY_DATABASE"] = "env.sqlite"
    assert printed(cli)["database"] == "env.sqlite"


def test_pragma_flags_win_over_the_file_per_pragma(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, '[pragmas]\nsynchronous = "FULL"\ncache_size = -8000\n')
    run = cli("--pragma", "synchronous=OFF", "serve", "--config", path, "--print-config")
    assert run.code == 0, run.err
    assert tomllib.loads(run.out)["pragmas"] == {"synchronous": "OFF", "cache_size": "-8000"}


def test_secret_files_are_read(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-a-file\n")
    path = write(tmp_path, f'signing_secret_file = "{tmp_path}/secret"\n')
    assert printed(cli, "--config", path)["signing_secret"] == "********"


def test_the_secret_file_key_is_read_from_the_file_only(cli: Cli, tmp_path: Path) -> None:
    """`signing_secret_file` is a key of the file; the server reads no RELAY_SIGNING_SECRET_FILE
    variable, so --print-config must not report one as if it signed with it."""
    (tmp_path / "secret").write_text("from-a-file\n")
    cli.env["RELAY_SIGNING_SECRET_FILE"] = str(tmp_path / "secret")
    shown = printed(cli)
    assert "signing_secret_file" not in shown
    assert "signing_secret" not in shown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('ttl = "2 minutes"', 'ttl: invalid duration "2 minutes"'),
        ("ttl = 120", 'ttl: expected a duration string like "1m30s", got 120'),
        ('ttl = "10s"', 'ttl: must be at least 30s, got "10s"'),
        ('cull_interval = "0s"', 'cull_interval: must be positive, got "0s"'),
        ('port = "80"', 'port: expected an integer, got "80"'),
        ("port = 70000", "port: must be 0-65535, got 70000"),
        ("threads = 0", "threads: must be at least 1, got 0"),
        ("no_metrics = 1", "no_metrics: expected true or false, got 1"),
        ('strategy = "fast"', 'strategy: must be one of "lifo", "fifo", or "rand", got "fast"'),
        ("colour = true", "colour: unknown key"),
        ("pragmas = 3", "pragmas: expected a table"),
        ("[pragmas]\nx = [1]", "pragmas.x: expected a string or a number, got an array"),
        (
            'admin_token_file = "/nonexistent/token"',
            "admin_token_file: no such file: /nonexistent/token",
        ),
        ("port = ", "invalid TOML: Invalid value (at line 1, column 8)"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_key(
    cli: Cli, tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text + "\n")
    run = cli("serve", "--config", path)
    assert (run.code, run.out) == (1, "")
    assert run.err == f"error: {path}: {message}\n"
    assert cli.opened == []


def test_a_missing_file_is_an_error(cli: Cli, tmp_path: Path) -> None:
    run = cli("serve", "--config", str(tmp_path / "nope.toml"))
    assert (run.code, run.err) == (1, f"error: {tmp_path / 'nope.toml'}: no such file\n")
    cli.env["RELAY_CONFIG"] = str(tmp_path / "gone.toml")
    assert cli("serve").err == f"error: {tmp_path / 'gone.toml'}: no such file\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_wait = -1", "max_wait: must not be negative, got -1"),
        ('max_wait = "1.5s"', 'max_wait: must be whole seconds and not negative, got "1.5s"'),
        ("max_wait = true", 'max_wait: expected seconds or a duration string like "1m", got true'),
        ("max_waiting = -2", "max_waiting: must not be negative, got -2"),
        ("max_new_nodes_per_minute = 0", "max_new_nodes_per_minute: must be at least 1, got 0"),
        ('node_token_file = "missing"', "node_token_file: no such file: missing"),
        (
            'allow_fingerprints = "missing"',
            "cannot read allow-list missing: No such file or directory",
        ),
    ],
)
def test_wait_and_trust_keys_are_checked(cli: Cli, tmp_path: Path, text: str, message: str) -> None:
    run = cli("serve", "--config", write(tmp_path, text + "\n"), "--print-config")
    assert run.code == 1
    assert run.err.strip().endswith(message), run.err


def test_wait_keys_lose_to_flags_and_variables(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "max_wait = 30\nmax_waiting = 5\n")
    assert printed(cli, "--config", path)["max_wait"] == 30
    assert printed(cli, "--config", path, "--max-wait", "1m")["max_wait"] == 60
    cli.env["RELAY_MAX_WAITING"] = "7"
    assert printed(cli, "--config", path)["max_waiting"] == 7

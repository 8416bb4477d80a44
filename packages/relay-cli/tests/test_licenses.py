"""`add`, `del`, `ls` and `stat` through the real app over a MemoryStore."""

from __future__ import annotations

import json
import random
from pathlib import Path

from relay_core import Strategy
from relay_core.model import NewLicense
from relay_core.testing import tamper

from .conftest import LICENSE_1_GUID, LICENSE_1_KEY, LICENSE_2_GUID, LICENSE_2_KEY, Cli


def test_add_prints_one_line_per_license_and_stores_them(cli: Cli) -> None:
    """Repeated and comma-separated --file/--key pairs are all stored, in order."""
    (a, ka), (b, kb), (c, kc) = cli.license("a"), cli.license("b"), cli.license("c")
    result = cli(
        "add",
        "--file",
        f"{a},{b}",
        "--file",
        c,
        "--key",
        f"{ka},{kb}",
        "--key",
        kc,
        "--public-key",
        cli.writer.public_key,
    )
    guids = cli.guids()
    assert result.code == 0
    assert result.err == ""
    assert result.out == "".join(f"license added successfully: {g}\n" for g in guids)
    assert len(guids) == 3


def test_add_real_keygen_files_before_they_expire(
    cli: Cli, fixtures: Path, keygen_public_key: str
) -> None:
    """The real Keygen files verify and decrypt under a clock set before their expiry."""
    result = cli(
        "add",
        "--file",
        f"{fixtures / 'license_1.lic'},{fixtures / 'license_2.lic'}",
        "--key",
        f"{LICENSE_1_KEY},{LICENSE_2_KEY}",
        "--public-key",
        keygen_public_key,
    )
    assert result.code == 0
    assert cli.guids() == [LICENSE_1_GUID, LICENSE_2_GUID]


def test_add_real_keygen_files_after_expiry_is_rejected(
    cli: Cli, fixtures: Path, keygen_public_key: str
) -> None:
    """After 2026-01-04 the real files are expired: one error line, exit 1, nothing stored."""
    cli.clock.set("2026-02-01T00:00:00Z")
    result = cli(
        "add",
        "--file",
        str(fixtures / "license_1.lic"),
        "--key",
        LICENSE_1_KEY,
        "--public-key",
        keygen_public_key,
    )
    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith("error: license decryption failed: license file is expired")
    assert result.err.count("\n") == 1
    assert cli.guids() == []


def test_add_is_all_or_nothing_and_reports_every_failure(cli: Cli) -> None:
    """One good and two bad pairs: two error lines naming the files, nothing stored."""
    (good, kg), (bad, _) = cli.license("good"), cli.license("bad")
    Path(bad).write_bytes(tamper(Path(bad).read_bytes()))
    missing = str(cli.tmp / "missing.lic")
    result = cli(
        "add",
        "--file",
        f"{good},{bad},{missing}",
        "--key",
        f"{kg},KEY-BAD,x",
        "--public-key",
        cli.writer.public_key,
    )
    lines = result.err.splitlines()
    assert result.code == 1
    assert result.out == ""
    assert lines[0].startswith("error: license verification failed: license file is invalid")
    assert lines[0].endswith(f"(file: {bad})")
    assert lines[1] == f"error: license file not found at '{missing}'"
    assert cli.guids() == []


def test_add_duplicate_is_rejected(cli: Cli) -> None:
    """Adding the same file twice fails the second time with the reference's message."""
    path, key = cli.license("a")
    args = ("add", "--file", path, "--key", key, "--public-key", cli.writer.public_key)
    assert cli(*args).code == 0
    result = cli(*args)
    assert (result.code, result.err) == (1, "error: license with the provided key already exists\n")
    assert len(cli.guids()) == 1


def test_add_mismatched_counts_fails_before_opening_the_database(cli: Cli) -> None:
    """Two files and one key: the reference's message, exit 1, the store never opened."""
    (a, ka), (b, _) = cli.license("a"), cli.license("b")
    result = cli(
        "add", "--file", a, "--file", b, "--key", ka, "--public-key", cli.writer.public_key
    )
    assert (result.code, result.err) == (1, "error: number of key and file flags must match\n")
    assert cli.opened == []


def test_add_missing_required_flags_are_named_sorted(cli: Cli) -> None:
    """Without flags, one line names file, key and public-key; the store is not opened."""
    result = cli("add")
    assert result.err == 'Error: required flag(s) "file", "key", "public-key" not set\n'
    assert result.code == 1
    assert cli.opened == []


def test_relay_public_key_satisfies_the_flag(cli: Cli) -> None:
    """RELAY_PUBLIC_KEY stands in for --public-key (Part A item 3)."""
    path, key = cli.license("a")
    cli.env["RELAY_PUBLIC_KEY"] = f"  {cli.writer.public_key}\n"
    result = cli("add", "--file", path, "--key", key)
    assert result.code == 0
    assert len(cli.guids()) == 1


def test_add_to_a_pool_from_flag_or_env(cli: Cli) -> None:
    """--pool, or RELAY_POOL when the flag is absent, creates and fills the pool."""
    (a, ka), (b, kb) = cli.license("a"), cli.license("b")
    assert (
        cli(
            "add", "--file", a, "--key", ka, "--public-key", cli.writer.public_key, "--pool", "prod"
        ).code
        == 0
    )
    cli.env["RELAY_POOL"] = "dev"
    assert cli("add", "--file", b, "--key", kb, "--public-key", cli.writer.public_key).code == 0
    assert [p.name for p in cli.relay.list_pools()] == ["prod", "dev"]
    assert len(cli.relay.list_licenses("prod")) == len(cli.relay.list_licenses("dev")) == 1


def test_add_with_zero_pairs_prints_nothing(cli: Cli) -> None:
    """`--file "" --key ""` is zero pairs: no output, exit 0, nothing stored."""
    result = cli("add", "--file", "", "--key", "", "--public-key", cli.writer.public_key)
    assert (result.code, result.out, result.err) == (0, "", "")
    assert cli.guids() == []


def test_add_with_a_bad_public_key_is_one_line(cli: Cli) -> None:
    """A public key that is neither Ed25519 hex nor PEM: one error line, exit 1."""
    path, key = cli.license("a")
    result = cli("add", "--file", path, "--key", key, "--public-key", "not-a-key")
    assert result.code == 1
    assert result.err.startswith("error: ")
    assert result.err.count("\n") == 1
    assert cli.guids() == []


def _add(cli: Cli, *names: str, pool: str | None = None) -> list[str]:
    for name in names:
        path, key = cli.license(name)
        args = ["add", "--file", path, "--key", key, "--public-key", cli.writer.public_key]
        assert cli(*args, *(["--pool", pool] if pool else [])).code == 0
    return cli.guids()


def test_del_removes_each_license(cli: Cli) -> None:
    """Repeated --license values are deleted, one success line each, as typed."""
    a, b = _add(cli, "a", "b")
    result = cli("del", "--license", a, "--license", b)
    assert result.out == f"license deleted successfully: {a}\nlicense deleted successfully: {b}\n"
    assert cli.guids() == []


def test_del_unknown_id_deletes_nothing(cli: Cli) -> None:
    """One unknown id among known ones: `license <id> not found`, exit 1, nothing deleted."""
    (a,) = _add(cli, "a")
    result = cli("del", "--license", f"{a},nope")
    assert (result.code, result.out, result.err) == (1, "", "error: license nope not found\n")
    assert cli.guids() == [a]


def test_del_with_pool_matches_only_that_pool(cli: Cli) -> None:
    """`del --pool dev` does not find a prod license; `--pool prod` deletes it."""
    (a,) = _add(cli, "a", pool="prod")
    _add(cli, "b", pool="dev")
    assert cli("del", "--license", a, "--pool", "dev").err == f"error: license {a} not found\n"
    assert cli("del", "--license", a, "--pool", "prod").code == 0
    assert a not in cli.guids()


def test_del_leased_license_releases_it_first(cli: Cli) -> None:
    """Deleting a leased license ends the lease and deactivates the node."""
    (a,) = _add(cli, "a")
    lease = cli.relay.claim("node-1")
    assert cli("del", "--license", a).code == 0
    node = cli.relay.get_node(lease.node.id)
    assert node is not None
    assert not node.active


def test_del_requires_license(cli: Cli) -> None:
    """Without --license: cobra's required-flag line, exit 1."""
    result = cli("del")
    assert (result.code, result.err) == (1, 'Error: required flag(s) "license" not set\n')


def test_ls_empty(cli: Cli) -> None:
    """An empty database prints `license pool is empty` on stdout."""
    result = cli("ls", "--plain")
    assert (result.code, result.out) == (0, "license pool is empty\n")


def test_ls_unknown_pool(cli: Cli) -> None:
    """An unknown pool is an error line and exit 1."""
    result = cli("ls", "--pool", "nonexistent", "--plain")
    assert (result.code, result.out, result.err) == (1, "", "error: pool not found\n")


def test_ls_plain_first_spec_example(cli: Cli, fixtures: Path, keygen_public_key: str) -> None:
    """Spec §1.8 example 1, byte for byte, followed by our file_expires_at column."""
    cli(
        "add",
        "--file",
        str(fixtures / "license_1.lic"),
        "--key",
        LICENSE_1_KEY,
        "--public-key",
        keygen_public_key,
    )
    result = cli("ls", "--plain")
    assert result.out == (
        "| id                                   | pool | claims | node_id | last_claimed_at | last_released_at | file_expires_at      |\n"
        "+--------------------------------------+------+--------+---------+-----------------+------------------+----------------------+\n"
        "| dcea31a4-1664-4633-9f52-4a1b0b5ea2ef | -    | 0      | -       | -               | -                | 2026-01-04T16:49:12Z |\n"
    )


def test_ls_plain_second_spec_example(cli: Cli) -> None:
    """Spec §1.8 example 2 (a leased pooled license with 12 claims, node 3), byte for byte."""
    with cli.store.transaction() as tx:
        prod = tx.create_pool("production", 1)
        tx.insert_license(NewLicense(LICENSE_1_GUID, b"f1", "k1", None), prod.id, 1)
        tx.insert_license(NewLicense(LICENSE_2_GUID, b"f2", "k2", None), None, 1)
        nodes = [tx.activate_node(f"fp-{i}", 1) for i in (1, 2, 3)]
        for claim in range(12):
            when = 1764953352 if claim == 11 else 100 + claim
            leased = tx.lease_free_license(
                prod.id, nodes[2].id, Strategy.FIFO, when, random.Random(0)
            )
            assert leased is not None
            if claim < 11:
                tx.release_license(leased.id, when)
        with_released = tx.get_license(LICENSE_1_GUID)
    assert with_released is not None
    result = cli("ls", "--plain")
    lines = result.out.splitlines()
    # The reference's example has last_released_at "-" for a license never released; ours was
    # released 11 times, so compare that cell separately.
    assert lines[0] == (
        "| id                                   | pool       | claims | node_id | last_claimed_at      "
        "| last_released_at     | file_expires_at |"
    )
    assert lines[2] == (
        "| dcea31a4-1664-4633-9f52-4a1b0b5ea2ef | production | 12     | 3       | 2025-12-05T16:49:12Z "
        "| 1970-01-01T00:01:50Z | -               |"
    )
    assert lines[3] == (
        "| 592d08c2-4045-462c-a981-dcd2bb78ce06 | -          | 0      | -       | -                    "
        "| -                    | -               |"
    )


def test_ls_lists_one_pool(cli: Cli) -> None:
    """`ls --pool prod` shows only prod's licenses; RELAY_POOL does the same."""
    (p,) = _add(cli, "p", pool="prod")
    _add(cli, "d", pool="dev")
    assert p in cli("ls", "--pool", "prod").out
    assert len(cli("ls", "--pool", "prod").out.splitlines()) == 3
    cli.env["RELAY_POOL"] = "prod"
    assert len(cli("ls").out.splitlines()) == 3


def test_ls_json(cli: Cli) -> None:
    """`ls --json` prints one JSON array with ISO times and nulls."""
    (a,) = _add(cli, "a", pool="prod")
    cli.relay.claim("node-1", pool="prod")
    rows = json.loads(cli("ls", "--json").out)
    assert rows == [
        {
            "id": a,
            "pool": "prod",
            "claims": 1,
            "node_id": 1,
            "last_claimed_at": "2025-12-10T00:00:00Z",
            "last_released_at": None,
            "file_expires_at": None,
        }
    ]
    assert json.loads(cli("ls", "--json", "--pool", "prod").out) == rows


def test_ls_rich_table_when_asked(cli: Cli) -> None:
    """`--plain=false` draws the rich table (used on a terminal) with the same cells."""
    (a,) = _add(cli, "a")
    result = cli("ls", "--plain=false")
    assert a in result.out
    assert "last_released_at" in result.out
    assert "+----" not in result.out


def test_plain_is_the_default_off_a_terminal_and_with_env(cli: Cli) -> None:
    """Captured stdout is not a terminal, so the plain layout is used without --plain."""
    _add(cli, "a")
    assert cli("ls").out.splitlines()[1].startswith("+---")
    cli.env["CI"] = "1"
    assert cli("ls").out.splitlines()[1].startswith("+---")


def test_stat_shows_one_license(cli: Cli) -> None:
    """`stat --license` prints the one-row table for that license."""
    a, _b = _add(cli, "a", "b")
    lines = cli("stat", "--license", a, "--plain").out.splitlines()
    assert len(lines) == 3
    assert lines[2].startswith(f"| {a} | -    | 0      |")


def test_stat_unknown_license(cli: Cli) -> None:
    """An unknown id: `license <id>: license not found`, exit 1."""
    result = cli("stat", "--license", "nope")
    assert (result.code, result.err) == (1, "error: license nope: license not found\n")


def test_stat_requires_license(cli: Cli) -> None:
    """Without --license: the required-flag line, before the store is opened."""
    result = cli("stat")
    assert (result.code, result.err) == (1, 'Error: required flag(s) "license" not set\n')
    assert cli.opened == []


def test_stat_json(cli: Cli) -> None:
    """`stat --json` prints a one-element array."""
    (a,) = _add(cli, "a")
    assert [row["id"] for row in json.loads(cli("stat", "--license", a, "--json").out)] == [a]


def test_leases_refuses_a_ttl_the_server_would_refuse(cli: Cli) -> None:
    """`leases --ttl` (or RELAY_LEASE_TTL) follows `serve`'s 30 s minimum: a negative or short
    TTL would print expiry times no server gives, so it gets serve's one-line error."""
    for args, env in (
        (("--ttl=-5s",), {}),
        (("--ttl", "10s"), {}),
        ((), {"RELAY_LEASE_TTL": "-5s"}),
    ):
        cli.env.clear()
        cli.env.update(env)
        result = cli("leases", *args)
        assert (result.code, result.out) == (1, "")
        assert result.err == "Error: time-to-live value must be at least 30s\n"
    cli.env.clear()
    assert cli("leases", "--ttl", "30s").code == 0

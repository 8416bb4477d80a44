"""The `relay` commands on a PostgreSQL URL: the same commands, and one-line errors."""

from __future__ import annotations

import json

from relay_postgres.testing.server import free_port

from .conftest import Workspace


def test_every_command_works_on_a_postgresql_url(ws: Workspace, db: str) -> None:
    lic = ws.license("one")
    ws.add(lic, pool="prod", database=db)
    alias = "postgres://" + db.removeprefix("postgresql://")
    for database in (db, alias):
        listing = ws.relay("--database", database, "ls", "--json")
        assert listing.code == 0, listing.err
        assert [row["id"] for row in json.loads(listing.out)] == [lic.guid]
    env = {"RELAY_DATABASE": db}
    stat = ws.relay("stat", "--license", lic.guid, "--json", env=env)
    assert stat.code == 0, stat.err
    logs = ws.relay("logs", "--json", env=env)
    assert [row["event"] for row in json.loads(logs.out)] == ["license.added", "pool.added"]
    removed = ws.relay("del", "--license", lic.guid, env=env)
    assert removed.code == 0, removed.err
    assert ws.relay("ls", env=env).out.strip() == "license pool is empty"


def test_an_unreachable_database_is_one_line_and_exit_1(ws: Workspace) -> None:
    url = f"postgresql://relay:hunter2@127.0.0.1:{free_port()}/relay"
    for args in (("ls",), ("logs",), ("serve", "--port", str(free_port()))):
        run = ws.relay("--database", url, *args, timeout=30)
        assert run.code == 1, args
        assert len(run.err_lines) == 1, run.err
        line = run.err_lines[0]
        assert line.startswith("error: database postgresql://relay@127.0.0.1:"), line
        assert "is unreachable" in line
        assert "hunter2" not in run.err


def test_an_unknown_option_is_refused(ws: Workspace, db: str) -> None:
    run = ws.relay("--database", db, "--pragma", "journal_mode=WAL", "ls")
    assert run.code == 1
    assert run.err_lines == [
        "error: unknown postgresql option 'journal_mode' (known: pool_size, pool_timeout)"
    ]

"""Acceptance of issue 15: `relay db copy` from SQLite to PostgreSQL and back, exactly."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

from tests.faults.conftest import start_server

from .conftest import Workspace, query, replica, request

DENIALS = "SELECT pool_id, minute, count FROM relay_denials ORDER BY minute, pool_id"


def _sqlite_denials(path: Path) -> list[tuple[int, int, int]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(DENIALS).fetchall()


def _views(ws: Workspace, database: str) -> tuple[object, object]:
    env = {"RELAY_DATABASE": database}
    listing = ws.relay("ls", "--json", env=env)
    assert listing.code == 0, listing.err
    logs = ws.relay("logs", "--json", "--limit", "100000", env=env)
    assert logs.code == 0, logs.err
    return json.loads(listing.out), json.loads(logs.out)


def test_copy_sqlite_to_postgresql_and_back(ws: Workspace, db: str) -> None:
    first = [ws.license(f"global-{n}") for n in range(3)]
    ws.add(*first)
    ws.add(*[ws.license(f"prod-{n}") for n in range(2)], pool="prod")
    server = start_server(ws)
    assert server.claim("node-1").status == 201
    assert server.claim("node-2").status == 201
    assert server.claim("node-3", pool="prod").status == 201
    assert server.claim("node-8", pool="prod").status == 201
    assert server.claim("node-9", pool="prod").status == 410  # counted, written on stop
    assert server.claim("node-1").status == 202
    assert server.release("node-2").status == 204
    assert server.stop()[0] == 0
    sqlite_views = _views(ws, str(ws.db))
    licenses, logs = sqlite_views
    assert len(licenses) == 5  # type: ignore[arg-type]
    assert len(logs) > 10  # type: ignore[arg-type]
    denials = _sqlite_denials(ws.db)
    assert [(pool, count) for pool, _, count in denials] == [(1, 1)]

    to_pg = ws.relay("db", "copy", "--from", str(ws.db), "--to", db)
    assert to_pg.code == 0, to_pg.err
    assert to_pg.out.startswith(
        f"copied 1 pool, 5 licenses, 4 nodes, {len(logs)} audit rows and 1 denial counter from "  # type: ignore[arg-type]
    )
    assert _views(ws, db) == sqlite_views
    assert [tuple(r) for r in query(db, DENIALS)] == denials

    back = ws.root / "back.sqlite"
    to_sqlite = ws.relay("db", "copy", "--from", db, "--to", str(back))
    assert to_sqlite.code == 0, to_sqlite.err
    assert _views(ws, str(back)) == sqlite_views
    assert _sqlite_denials(back) == denials

    again = ws.relay("db", "copy", "--from", str(ws.db), "--to", db)
    assert again.code == 1
    assert again.err_lines == [
        f"error: database {db} is not empty: copy into a new, empty database"
    ]
    assert _views(ws, db) == sqlite_views

    on_copy = replica(ws, db)
    assert request(on_copy.port, "PUT", "/v1/nodes/node-1")[0] == 202  # its lease came along
    assert request(on_copy.port, "DELETE", "/v1/nodes/node-1")[0] == 204
    for node, lic in (("node-5", first[0]), ("node-4", first[1]), ("node-6", first[2])):
        status, body = request(on_copy.port, "PUT", f"/v1/nodes/{node}")
        assert status == 201
        assert base64.b64decode(json.loads(body)["license_file"]) == lic.path.read_bytes()
    assert request(on_copy.port, "PUT", "/v1/nodes/node-7")[0] == 410
    assert on_copy.stop()[0] == 0  # writes the replica's denial counter
    # Next to the copied one (pool 1), the global pool's (stored as pool id 0).
    assert query(db, "SELECT pool_id, count FROM relay_denials ORDER BY pool_id") == [
        (0, 1),
        (1, 1),
    ]

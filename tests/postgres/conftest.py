"""Fixtures for replicas on PostgreSQL: real `relay serve` processes sharing one database.

Servers, workspaces and keep-alive clients come from the end-to-end and fault suites; the
database comes from relay-postgres's pytest plugin (`postgres_server`, `postgres_url`), a
throwaway server started for the session.
"""

from __future__ import annotations

import http.client
import uuid
from collections.abc import Mapping
from typing import Any

import psycopg
import pytest
from relay_postgres.testing import PostgresServer

from tests.e2e.conftest import LicenseFile, Workspace, writer, ws
from tests.faults.conftest import FaultServer, _stop_started_servers, start_server

__all__ = [
    "FaultServer",
    "LicenseFile",
    "Workspace",
    "_stop_started_servers",
    "add_licenses",
    "query",
    "replica",
    "request",
    "writer",
    "ws",
]


def add_licenses(ws: Workspace, url: str, count: int) -> list[LicenseFile]:
    """`count` fresh license files, added with one `relay add` to the database at `url`."""
    files = [ws.license(f"lic-{uuid.uuid4().hex[:12]}") for _ in range(count)]
    ws.add(*files, database=url)
    return files


def replica(ws: Workspace, url: str, *args: str, wait: bool = True) -> FaultServer:
    """A `relay serve` on a free loopback port over the database at `url`."""
    return start_server(ws, *args, env={"RELAY_DATABASE": url}, wait=wait)


def request(port: int, method: str, path: str, *, timeout: float = 15) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body); (0, reason) if the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return 0, str(exc).encode()
    finally:
        conn.close()


def query(url: str, sql: str, params: Mapping[str, Any] | tuple[Any, ...] = ()) -> list[Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql.encode(), params).fetchall()


@pytest.fixture
def db(postgres_server: PostgresServer) -> str:
    """A new, empty database for one test."""
    return postgres_server.create_database()

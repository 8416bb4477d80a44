"""pytest fixtures for tests that need PostgreSQL (loaded through the ``pytest11`` entry point).

- ``postgres_server`` (session): a server started for this test session, stopped at its end,
  or the one ``RELAY_TEST_POSTGRES_URL`` names. Never skips: a missing PostgreSQL fails.
- ``postgres_url``: a new, empty database on it, for one test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .server import PostgresServer, PostgresServerError, external_server, start_server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = os.environ.get("RELAY_TEST_POSTGRES_URL")
    try:
        server = external_server(url) if url else start_server()
    except PostgresServerError as exc:
        pytest.fail(f"no PostgreSQL for the tests: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()

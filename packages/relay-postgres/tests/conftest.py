"""Shared fixtures: one database for this package's tests, and a fresh schema per store."""

from __future__ import annotations

import pytest
from relay_core.testing import LicenseWriter
from relay_postgres.testing import PostgresServer


@pytest.fixture(scope="session")
def writer() -> LicenseWriter:
    return LicenseWriter.ed25519()


@pytest.fixture(scope="session")
def package_database(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database("relay_pkg")


@pytest.fixture
def schema_url(postgres_server: PostgresServer, package_database: str) -> str:
    """A URL whose search_path is a new, empty schema: as good as a new database, and faster."""
    return postgres_server.create_schema(package_database)

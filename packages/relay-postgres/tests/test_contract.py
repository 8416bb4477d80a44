from pathlib import Path

import pytest
from relay_core.testing import StorageContract
from relay_postgres import PostgresStore
from relay_postgres.testing import PostgresServer


class TestPostgresStore(StorageContract):
    """The storage contract, each store in a fresh schema of the session's server."""

    state_machine_examples = 100  # each example migrates a new schema: keep CI's time modest

    @pytest.fixture(autouse=True)
    def _server(self, postgres_server: PostgresServer, package_database: str) -> None:
        self.server = postgres_server
        self.database = package_database

    def make_store(self, path: Path) -> PostgresStore:
        return PostgresStore(self.server.create_schema(self.database))

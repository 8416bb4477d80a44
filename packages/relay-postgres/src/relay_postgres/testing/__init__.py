"""Test kit: a throwaway PostgreSQL server (`PostgresServer`) and pytest fixtures (`plugin`).

The fixtures are registered as a pytest plugin (entry point ``pytest11``), so any test in a
checkout with relay-postgres installed can ask for ``postgres_server`` or ``postgres_url``.
"""

from __future__ import annotations

from .server import PostgresServer, PostgresServerError, external_server, start_server

__all__ = ["PostgresServer", "PostgresServerError", "external_server", "start_server"]

"""A PostgreSQL server for tests: `initdb` and `pg_ctl` on a free loopback port in a temp folder.

`initdb` refuses to run as root (CI runs as root): then the server runs as the unprivileged
user `nobody` (through `runuser`), owning its temporary folder. Connections use TCP on
127.0.0.1 with trust authentication, for the superuser ``postgres``. With
``RELAY_TEST_POSTGRES_URL`` set, an existing server is used instead (`external_server`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import closing, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import attrs
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

__all__ = ["PostgresServer", "PostgresServerError", "external_server", "start_server"]

RUN_AS = "nobody"


class PostgresServerError(RuntimeError):
    """The test server could not be found, started or stopped."""


def bindir() -> Path:
    """The folder of PostgreSQL's programs, from `pg_config --bindir`."""
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            if (candidate / "initdb").exists():
                return candidate
        raise PostgresServerError(
            "pg_config not found: install PostgreSQL (Debian: apt-get install postgresql) "
            "or set RELAY_TEST_POSTGRES_URL"
        )
    found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
    path = Path(found.stdout.strip())
    if not (path / "initdb").exists():
        raise PostgresServerError(
            f"initdb not found in {path} (pg_config --bindir): install the PostgreSQL server "
            "(Debian: apt-get install postgresql) or set RELAY_TEST_POSTGRES_URL"
        )
    return path


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.define
class PostgresServer:
    """A PostgreSQL server for tests: databases on demand, and (if we started it) stop/start."""

    admin_url: str
    """A superuser connection URL (to the maintenance database)."""
    data_dir: Path | None = None
    bin_dir: Path | None = None
    run_as: str | None = None
    created: list[str] = attrs.field(factory=list)

    @property
    def owned(self) -> bool:
        """Whether these tests started the server (and may stop and start it)."""
        return self.data_dir is not None

    def url(self, dbname: str, **params: str) -> str:
        """A ``postgresql://`` URL (what `relay --database` takes) for `dbname` on this server."""
        return _url(self.admin_url, dbname=dbname, **params)

    def create_database(self, prefix: str = "relay_test") -> str:
        """A new empty database; returns its URL. Dropped by `close()` on a foreign server."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return self.url(name)

    def create_schema(self, database_url: str, prefix: str = "relay_test") -> str:
        """A new empty schema in the database; returns a URL whose search_path is that schema."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        return _url(database_url, options=f"-c search_path={name}")

    def execute(self, database_url: str, query: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement on `database_url` (autocommit) and return its rows, if any."""
        with psycopg.connect(database_url, autocommit=True) as conn:
            cur = conn.execute(query.encode(), params)
            return cur.fetchall() if cur.description is not None else []

    # -- a server we own ---------------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        assert self.bin_dir is not None
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd="/"
        )
        if done.returncode != 0:
            raise PostgresServerError(
                f"{args[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout}"
            )
        return done

    def start(self) -> None:
        """Start the server we own and wait until it accepts connections."""
        assert self.data_dir is not None
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log), "-w", "-t", "60", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server we own (``fast``: disconnect everyone, roll back, shut down)."""
        assert self.data_dir is not None
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop")

    @property
    def log(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir.parent / "postgres.log"

    def close(self) -> None:
        """Stop and delete a server we own; drop the databases we made on a foreign one."""
        if self.data_dir is None:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                for name in self.created:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
            return
        with suppress(PostgresServerError):
            self.stop("immediate")
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def _url(conninfo: str, **changes: str) -> str:
    """`conninfo` (URL or key=value) with `changes`, as a ``postgresql://`` URL."""
    parts = {**conninfo_to_dict(conninfo), **changes}
    user = quote(str(parts.pop("user", "")), safe="")
    password = parts.pop("password", None)
    host = str(parts.pop("host", "127.0.0.1"))
    port = str(parts.pop("port", "5432"))
    dbname = quote(str(parts.pop("dbname", "")), safe="")
    auth = f"{user}:{quote(str(password), safe='')}@" if password else f"{user}@" if user else ""
    query = f"?{urlencode(parts, quote_via=quote)}" if parts else ""
    return f"postgresql://{auth}{host}:{port}/{dbname}{query}"


def external_server(url: str) -> PostgresServer:
    """The server `url` (a superuser's URL) names; nothing is started or stopped."""
    try:
        conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise PostgresServerError(f"RELAY_TEST_POSTGRES_URL is not a valid URL: {exc}") from None
    return PostgresServer(admin_url=url)


def start_server(settings: dict[str, str] | None = None) -> PostgresServer:
    """initdb a new cluster in a temporary folder and start it on a free loopback port.

    As root, everything runs as `RUN_AS`. `settings` add to (or override) the server settings
    used for tests (fsync off: a test database need not survive a power cut).
    """
    bin_dir = bindir()
    run_as = RUN_AS if os.geteuid() == 0 else None
    # As root, the folder's parents must let `nobody` through: /tmp does, a TMPDIR may not.
    root = Path(tempfile.mkdtemp(prefix="relay-pg-", dir="/tmp" if run_as else None))
    data = root / "data"
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    root.chmod(0o700)
    port = free_port()
    server = PostgresServer(
        admin_url=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        data_dir=data,
        bin_dir=bin_dir,
        run_as=run_as,
    )
    conf = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{root}'",
        "max_connections": "300",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "shared_buffers": "64MB",
        "log_min_messages": "warning",
        **(settings or {}),
    }
    try:
        server._run(
            "initdb",
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            timeout=120,
        )
        with (data / "postgresql.conf").open("a") as handle:
            handle.write("".join(f"{key} = {value}\n" for key, value in conf.items()))
        server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(server.admin_url, connect_timeout=2):
                break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                server.close()
                raise
            time.sleep(0.1)
    return server

"""Start-up stays light: the fast commands never load the HTTP or crypto stack."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("falcon", "waitress", "cryptography", "relay_http", "relay_sqlite", "sqlite3")

PROBE = """
import json, sys
sys.argv = ["relay", *json.loads(sys.argv[1])]
from relay_cli.app import main
try:
    main()
except SystemExit:
    pass
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def loaded_modules(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    marker = done.stderr.rsplit("MODULES ", 1)[1]
    return {name.split(".")[0] for name in json.loads(marker)}


@pytest.mark.parametrize(
    "args",
    [("--help",), ("add", "--help"), ("help", "serve"), ("completion", "bash"), ("-v", "version")],
)
def test_help_and_completion_do_not_import_http_crypto_or_storage(args: tuple[str, ...]) -> None:
    """`relay --help` and friends load neither falcon, waitress, cryptography nor a store."""
    assert loaded_modules(*args).isdisjoint(HEAVY)


@pytest.mark.parametrize("args", [("version",), ("--version",)])
def test_version_imports_nothing_but_the_package(args: tuple[str, ...]) -> None:
    """`relay version` / `--version` answer before cyclopts, rich or attrs are imported."""
    modules = loaded_modules(*args)
    assert modules.isdisjoint({*HEAVY, "cyclopts", "rich", "attrs", "relay_core"})

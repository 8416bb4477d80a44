"""`import relay_core` stays light: no storage, HTTP, CLI or crypto modules."""

from __future__ import annotations

import subprocess
import sys


def test_import_loads_no_adapter_or_framework() -> None:
    """Importing relay_core (and its test kit's fakes) loads none of the adapters' libraries."""
    code = (
        "import sys, relay_core, relay_core.testing;"
        "print(','.join(m for m in ('sqlite3','falcon','waitress','cyclopts','cryptography','hypothesis','pytest') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(filter(None, out.stdout.strip().split(",")))
    assert loaded <= {"cryptography"}, loaded
    core_only = subprocess.run(
        [sys.executable, "-c", code.replace(", relay_core.testing", "")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert core_only.stdout.strip() == ""


def test_the_test_kits_lazy_names_import_from_the_package() -> None:
    """`from relay_core.testing import strategies, StorageContract`, as the README shows, in a
    fresh interpreter (a lazy import that looked itself up recursed without end)."""
    code = (
        "from relay_core.testing import StorageContract, strategies;"
        "import relay_core.testing as t;"
        "print(strategies.__name__, t.strategies is strategies, StorageContract.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["relay_core.testing.strategies", "True", "StorageContract"]

"""The code in relay-core's README and in docs/storage-adapters.md runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_embedding_example_runs(capsys: Any) -> None:
    """The embedding example leases, extends, exhausts, culls and prints the audit log."""
    (example,) = python_blocks(ROOT / "packages" / "relay-core" / "README.md")
    exec(compile(example, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "no licenses available"
    assert out[1:] == [
        "node.deactivated node-c prod",
        "license.released KEY-? prod".replace("KEY-?", out[2].split()[1]),
        "node.heartbeat_ping node-c prod",
    ]


def test_worked_storage_adapter_passes_the_contract(tmp_path: Path) -> None:
    """The doc's FileStore, tested exactly as the doc says, passes StorageContract in pytest."""
    blocks = python_blocks(ROOT / "docs" / "storage-adapters.md")
    (tmp_path / "relay_filestore.py").write_text(next(b for b in blocks if "class FileStore" in b))
    test_module = next(b for b in blocks if "class TestFileStore" in b)
    # Fewer state-machine examples than CI's 200: each commit of this store fsyncs a file.
    test_module += "\nTestFileStore.state_machine_examples = 30\n"
    (tmp_path / "test_filestore.py").write_text(test_module)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "test_filestore.py",
        ],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.search(r"\b(\d+) passed\b", run.stdout)
    assert "failed" not in run.stdout


def test_worked_storage_adapter_keeps_data_across_reopening(tmp_path: Path) -> None:
    """What the doc's FileStore commits is there when the file is opened again."""
    blocks = python_blocks(ROOT / "docs" / "storage-adapters.md")
    namespace: dict[str, Any] = {}
    exec(
        compile(next(b for b in blocks if "class FileStore" in b), "storage-adapters.md", "exec"),
        namespace,
    )
    store = namespace["open_store"](f"file://{tmp_path / 'persist.bin'}", pragmas={})
    with store.transaction() as tx:
        tx.create_pool("kept", 1)
    reopened = namespace["FileStore"](tmp_path / "persist.bin")
    with reopened.transaction() as tx:
        assert [p.name for p in tx.list_pools()] == ["kept"]

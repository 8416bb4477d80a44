"""schemathesis against a live `relay serve`: every documented operation, with and without the
admin token, answers without a 5xx and as the document says (status, content type, headers,
body). A small number of examples per operation keeps the run to well under a minute."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ServerFactory, Workspace

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)
TOKEN = "schemathesis-admin-token"


@pytest.mark.parametrize("with_token", [True, False], ids=["admin-token", "no-token"])
def test_schemathesis_finds_no_server_error_and_no_violation(
    ws: Workspace, serve: ServerFactory, with_token: bool
) -> None:
    ws.add(*[ws.license(f"lic{n}") for n in range(3)])
    ws.add(ws.license("pooled"), pool="prod")
    # A short --max-wait: a `Prefer: wait=N` claim on a full pool is answered within a second.
    server = serve("--admin-token", TOKEN, "--signing-secret", "sig", "--max-wait", "1")
    assert server.claim("held-node").status == 201
    base = f"http://{server.host}:{server.port}"
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{base}/v1/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        "20",
        "--seed",
        "1",
        "--workers",
        "1",
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-database",
        "none",
        "--no-color",
    ]
    if with_token:
        command += ["--header", f"Authorization: Bearer {TOKEN}"]
    done = subprocess.run(
        command, cwd=ws.root, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", done.stdout)
    tested = re.search(r"Tested: (\d+)", done.stdout)
    assert selected, done.stdout[-3000:]
    assert tested, done.stdout[-3000:]
    assert selected[1] == selected[2] == tested[1], "not every operation was tested"
    assert " failed" not in done.stdout.rpartition("Test cases:")[2], done.stdout[-3000:]
    code, _, err = server.stop()
    assert code == 0
    assert "Traceback" not in err

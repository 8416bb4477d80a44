"""docs/api.md's Ed25519 section: its test vectors hold, and its two verifiers work as written."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from relay_core.signing import header, message, public_key_hex, public_key_pem

DOC = Path(__file__).resolve().parents[3] / "docs" / "api.md"
SECTION = DOC.read_text().partition("## Ed25519 and request-bound signatures")[2]
KEY = Ed25519PrivateKey.from_private_bytes(
    bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
)
PUBLIC_HEX = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
T = 1764949490


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", SECTION, flags=re.S)


def vectors() -> list[dict[str, Any]]:
    (text,) = [b for b in blocks("text") if "request:" in b]
    found = []
    for chunk in text.strip().split("\n\n"):
        fields = dict(line.split(":", 1) for line in chunk.splitlines())
        request = fields["request"].strip()
        nonce = method = path = None
        if request != "no Relay-Nonce":
            target, _, nonce_part = request.partition(", Relay-Nonce: ")
            method, path = target.split(" ")
            nonce = nonce_part
        found.append(
            {
                "nonce": nonce,
                "method": method or "",
                "path": path or "",
                "body": ast.literal_eval(fields["body"].strip()),
                "message": ast.literal_eval(fields["message"].strip()),
                "header": fields["header"].strip(),
            }
        )
    return found


VECTORS = vectors()


def test_the_documented_key_is_the_rfc8032_key() -> None:
    assert public_key_hex(KEY) == PUBLIC_HEX
    assert PUBLIC_HEX in SECTION
    assert public_key_pem(KEY).strip() in SECTION


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['method']}{v['path']}")
def test_vectors(vector: dict[str, Any]) -> None:
    """Each documented message and header is what relay_core.signing produces."""
    bound = {"nonce": vector["nonce"], "method": vector["method"], "path": vector["path"]}
    assert message(T, vector["body"], **bound) == vector["message"]
    assert header(T, vector["body"], secret="hunter2", key=KEY, **bound) == vector["header"]


def test_five_vectors_with_both_kinds() -> None:
    assert len(VECTORS) == 5
    assert {v["nonce"] is None for v in VECTORS} == {True, False}


def test_python_verifier_runs_as_written() -> None:
    (code,) = [b for b in blocks("python") if "def verify_ed25519(" in b]
    assert len(code.strip().splitlines()) <= 17
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/api.md", "exec"), namespace)
    verify = namespace["verify_ed25519"]
    huge = 10**10  # the vectors' t is in the past
    for v in VECTORS:
        args = (v["header"], v["body"], PUBLIC_HEX, v["nonce"], v["method"], v["path"])
        assert verify(*args, tolerance=huge) is True
        assert verify(v["header"], v["body"] + b" ", *args[2:], tolerance=huge) is False
        assert verify(*args) is False  # stale: outside the default 300 s
    bound = VECTORS[2]
    assert (
        verify(
            bound["header"],
            bound["body"],
            PUBLIC_HEX,
            bound["nonce"],
            "PUT",
            "/v1/nodes/b",
            tolerance=huge,
        )
        is False
    )
    assert (
        verify(
            bound["header"],
            bound["body"],
            PUBLIC_HEX,
            "other",
            "PUT",
            "/v1/nodes/a",
            tolerance=huge,
        )
        is False
    )


@pytest.mark.parametrize(("path", "verified"), [("/v1/nodes/a", True), ("/v1/nodes/b", False)])
def test_openssl_verifier_runs_as_written(tmp_path: Path, path: str, verified: bool) -> None:
    """The shell recipe, minus its curl line, checks the third vector with openssl."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to check docs/api.md's shell verifier")
    (script,) = [b for b in blocks("sh") if "openssl pkeyutl" in b]
    kept = [
        line for line in script.splitlines() if not line.startswith(("nonce=", "path=", "curl "))
    ]
    assert len(kept) == len(script.splitlines()) - 3
    vector = VECTORS[2]
    (tmp_path / "headers.txt").write_bytes(
        b"HTTP/1.1 201 Created\r\nRelay-Signature: " + vector["header"].encode() + b"\r\n\r\n"
    )
    (tmp_path / "body.bin").write_bytes(vector["body"])
    (tmp_path / "relay.pub.pem").write_text(public_key_pem(KEY))
    run = subprocess.run(
        ["bash", "-c", f"nonce={vector['nonce']}\npath={path}\n" + "\n".join(kept)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (run.returncode == 0) is verified, run.stdout + run.stderr
    expected = "Signature Verified Successfully" if verified else "Signature Verification Failure"
    assert expected in run.stdout

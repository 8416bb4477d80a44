"""RSA-signed files added from the shell with a PEM key (issue 14.2), then handed out unchanged;
and an unencrypted file given with another key is refused (issue 14.3)."""

from __future__ import annotations

import base64
import json
import shlex
import subprocess

import pytest
from relay_core.testing import LicenseWriter

from .conftest import RELAY, LicenseFile, ServerFactory, Workspace, base_env


@pytest.fixture(scope="module")
def rsa_writer() -> LicenseWriter:
    return LicenseWriter.rsa()


@pytest.fixture
def rsa_ws(ws: Workspace, rsa_writer: LicenseWriter) -> Workspace:
    """`ws` (where `serve` runs) signing with an RSA key, its PEM in ./pub.pem."""
    ws.writer = rsa_writer
    (ws.root / "pub.pem").write_text(rsa_writer.public_key)
    return ws


def shell(ws: Workspace, script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in bash in the workspace, with `relay` the installed command."""
    return subprocess.run(
        ["bash", "-c", f'relay() {{ {shlex.quote(RELAY)} "$@"; }}\n{script}'],
        cwd=ws.root,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def claim_hands_out(ws: Workspace, serve: ServerFactory, files: list[LicenseFile]) -> None:
    """Each node's claim gets one of `files`, byte for byte, with that file's key."""
    server = serve()
    wanted = {lic.path.read_bytes(): lic.key for lic in files}
    got = {}
    for index in range(len(files)):
        resp = server.claim(f"node-{index}")
        assert resp.status == 201, resp.text
        data = json.loads(resp.body)
        got[base64.b64decode(data["license_file"])] = data["license_key"]
    assert got == wanted


@pytest.mark.parametrize("how", ["flag", "file"])
def test_rsa_pss_and_pkcs1_files_added_with_a_pem_key_are_handed_out_exactly(
    rsa_ws: Workspace, serve: ServerFactory, how: str
) -> None:
    pss = rsa_ws.license("pss", alg="aes-256-gcm+rsa-pss-sha256")
    pkcs1 = rsa_ws.license("pkcs1", alg="aes-256-gcm+rsa-sha256")
    source = '--public-key "$(cat pub.pem)"' if how == "flag" else "--public-key-file pub.pem"
    done = shell(
        rsa_ws,
        f"relay add --file pss.lic --key {pss.key} {source}\n"
        f"relay add --file pkcs1.lic --key {pkcs1.key} {source}",
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        f"license added successfully: {pss.guid}",
        f"license added successfully: {pkcs1.guid}",
    ]
    claim_hands_out(rsa_ws, serve, [pss, pkcs1])


def test_unencrypted_rsa_files_and_relay_public_key_from_the_shell(
    rsa_ws: Workspace, serve: ServerFactory
) -> None:
    """The two signed-only RSA algorithms, with the PEM in RELAY_PUBLIC_KEY."""
    pss = rsa_ws.license("pss", alg="base64+rsa-pss-sha256")
    pkcs1 = rsa_ws.license("pkcs1", alg="base64+rsa-sha256")
    done = shell(
        rsa_ws,
        'export RELAY_PUBLIC_KEY="$(cat pub.pem)"\n'
        f"relay add --file pss.lic,pkcs1.lic --key {pss.key},{pkcs1.key}",
    )
    assert (done.returncode, done.stderr) == (0, "")
    claim_hands_out(rsa_ws, serve, [pss, pkcs1])


def test_both_key_sources_or_a_missing_key_file_is_one_line(rsa_ws: Workspace) -> None:
    lic = rsa_ws.license("pss", alg="aes-256-gcm+rsa-pss-sha256")
    both = shell(
        rsa_ws,
        f'relay add --file pss.lic --key {lic.key} --public-key "$(cat pub.pem)" '
        "--public-key-file pub.pem",
    )
    assert (both.returncode, both.stdout) == (1, "")
    assert both.stderr == "Error: --public-key and --public-key-file cannot be used together\n"
    missing = rsa_ws.relay(
        "add", "--file", "pss.lic", "--key", lic.key, "--public-key-file", "no.pem"
    )
    assert (missing.code, missing.out) == (1, "")
    assert missing.err_lines == [
        "Error: cannot read public key file no.pem: no such file or directory"
    ]
    assert not rsa_ws.db.exists()


@pytest.mark.parametrize("alg", ["base64+ed25519", "base64+rsa-pss-sha256"])
def test_an_unencrypted_file_with_another_key_changes_nothing(
    ws: Workspace, rsa_writer: LicenseWriter, alg: str
) -> None:
    ws.writer = rsa_writer if "rsa" in alg else ws.writer
    kept = ws.license("kept")
    ws.add(kept)
    before = ws.relay("ls", "--plain")
    good = ws.license("good")
    plain = ws.license("plain", alg=alg)
    run = ws.relay(
        "add", "--file", "good.lic,plain.lic", "--key", f"{good.key},ANOTHER-KEY",
        "--public-key", ws.public_key,
    )  # fmt: skip
    assert (run.code, run.out) == (1, "")
    assert run.err_lines == ["error: license key does not match the license file 'plain.lic'"]
    assert ws.relay("ls", "--plain").out == before.out
    assert plain.guid not in before.out

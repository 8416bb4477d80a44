"""Public keys on the command line (issue 14.2): PEM values, `--public-key-file`, and the lock.

Also the CLI side of issue 14.3: an unencrypted file given with another key is a bad item.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from relay_cli.locking import LockConfig, unlock
from relay_core.testing import LicenseWriter

from .conftest import Cli

RSA_ALGORITHMS = (
    "aes-256-gcm+rsa-pss-sha256",
    "aes-256-gcm+rsa-sha256",
    "base64+rsa-pss-sha256",
    "base64+rsa-sha256",
)
FINGERPRINT = "ab" * 32


@pytest.fixture(scope="module")
def rsa() -> LicenseWriter:
    return LicenseWriter.rsa()


@pytest.fixture
def rsa_cli(cli: Cli, rsa: LicenseWriter) -> Cli:
    cli.writer = rsa
    return cli


def test_a_pem_public_key_is_a_value_not_a_flag(rsa_cli: Cli) -> None:
    """`--public-key "$(cat pub.pem)"`: the PEM text starts with `-----` and is still taken."""
    pem = rsa_cli.writer.public_key
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    files = [rsa_cli.license(alg.replace("+", "-"), alg=alg) for alg in RSA_ALGORITHMS]
    result = rsa_cli(
        "add",
        "--file",
        ",".join(path for path, _ in files),
        "--key",
        ",".join(key for _, key in files),
        "--public-key",
        pem.strip(),  # as "$(cat pub.pem)" gives it: no final newline
    )
    assert (result.code, result.err) == (0, "")
    assert result.out.count("license added successfully") == 4
    assert len(rsa_cli.guids()) == 4


def test_a_pem_public_key_may_come_before_other_flags_and_with_equals(rsa_cli: Cli) -> None:
    """The flag's value ends at its own token: the flags after it are still flags."""
    (a, ka), (b, kb) = rsa_cli.license("a"), rsa_cli.license("b")
    pem = rsa_cli.writer.public_key
    first = rsa_cli("add", "--public-key", pem, "--file", a, "--key", ka, "--pool", "prod")
    assert (first.code, first.err) == (0, "")
    second = rsa_cli("add", f"--public-key={pem}", "--file", b, "--key", kb)
    assert (second.code, second.err) == (0, "")
    assert len(rsa_cli.guids()) == 2


@pytest.mark.parametrize("command", ["add", "lock"])
def test_a_flag_after_public_key_is_not_taken_as_the_key(cli: Cli, command: str) -> None:
    """Taking PEM's leading hyphens must not make `--public-key --file x` read `--file` as the
    key: one line saying what the flag needs, exit 1, nothing stored."""
    path, key = cli.license("a")
    argv = (
        ("add", "--public-key", "--file", path, "--key", key)
        if command == "add"
        else ("lock", "build", "--public-key", "--fingerprint", FINGERPRINT)
    )
    result = cli(*argv)
    assert result.code == 1
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert '"--file"' in lines[0] or '"--fingerprint"' in lines[0]
    assert "--public-key needs the key after it" in lines[0]
    assert cli.guids() == []


def test_relay_public_key_may_hold_a_pem_block(rsa_cli: Cli) -> None:
    path, key = rsa_cli.license("a", alg="base64+rsa-pss-sha256")
    rsa_cli.env["RELAY_PUBLIC_KEY"] = rsa_cli.writer.public_key
    result = rsa_cli("add", "--file", path, "--key", key)
    assert (result.code, result.err) == (0, "")
    assert len(rsa_cli.guids()) == 1


@pytest.mark.parametrize("scheme", ["rsa", "ed25519"])
def test_public_key_file_holds_pem_or_hex(cli: Cli, rsa: LicenseWriter, scheme: str) -> None:
    """`--public-key-file PATH` reads either form; surrounding blank lines do not matter."""
    cli.writer = rsa if scheme == "rsa" else cli.writer
    key_file = cli.tmp / "pub.key"
    key_file.write_text("\n" + cli.writer.public_key + "\n\n")
    path, key = cli.license("a")
    result = cli("add", "--file", path, "--key", key, "--public-key-file", str(key_file))
    assert (result.code, result.err) == (0, "")
    assert len(cli.guids()) == 1


def test_relay_public_key_file_stands_in_for_the_flag(rsa_cli: Cli) -> None:
    key_file = rsa_cli.tmp / "pub.pem"
    key_file.write_text(rsa_cli.writer.public_key)
    path, key = rsa_cli.license("a")
    rsa_cli.env["RELAY_PUBLIC_KEY_FILE"] = str(key_file)
    result = rsa_cli("add", "--file", path, "--key", key)
    assert (result.code, result.err) == (0, "")
    assert len(rsa_cli.guids()) == 1


def test_a_flag_wins_over_the_environment(rsa_cli: Cli) -> None:
    """`--public-key-file` is used even when RELAY_PUBLIC_KEY holds another (wrong) key."""
    key_file = rsa_cli.tmp / "pub.pem"
    key_file.write_text(rsa_cli.writer.public_key)
    rsa_cli.env["RELAY_PUBLIC_KEY"] = LicenseWriter.ed25519().public_key
    path, key = rsa_cli.license("a")
    result = rsa_cli("add", "--file", path, "--key", key, "--public-key-file", str(key_file))
    assert (result.code, result.err) == (0, "")


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        ("both", "Error: --public-key and --public-key-file cannot be used together\n"),
        ("missing", "Error: cannot read public key file {tmp}/nope.pem: no such file or directory\n"),
        ("directory", "Error: cannot read public key file {tmp}: is a directory\n"),
        ("empty", "Error: public key file {tmp}/pub.pem is empty\n"),
        ("binary", "Error: public key file {tmp}/pub.pem is not text (expected Ed25519 hex or a PEM block)\n"),
        ("both-env", "Error: RELAY_PUBLIC_KEY and RELAY_PUBLIC_KEY_FILE cannot be used together\n"),
    ],
)  # fmt: skip
def test_bad_public_key_sources_are_one_line_and_open_nothing(
    rsa_cli: Cli, setup: str, error: str
) -> None:
    path, key = rsa_cli.license("a")
    key_file = rsa_cli.tmp / "pub.pem"
    key_file.write_text(rsa_cli.writer.public_key)
    flags = ["--public-key-file", str(key_file)]
    if setup == "both":
        flags += ["--public-key", rsa_cli.writer.public_key]
    elif setup == "missing":
        flags = ["--public-key-file", str(rsa_cli.tmp / "nope.pem")]
    elif setup == "directory":
        flags = ["--public-key-file", str(rsa_cli.tmp)]
    elif setup == "empty":
        key_file.write_text(" \n")
    elif setup == "binary":
        key_file.write_bytes(b"\xff\xfe-----")
    elif setup == "both-env":
        flags = []
        rsa_cli.env["RELAY_PUBLIC_KEY"] = rsa_cli.writer.public_key
        rsa_cli.env["RELAY_PUBLIC_KEY_FILE"] = str(key_file)
    result = rsa_cli("add", "--file", path, "--key", key, *flags)
    assert (result.code, result.err) == (1, error.format(tmp=rsa_cli.tmp))
    assert result.out == ""
    assert rsa_cli.opened == []


def test_a_key_file_with_a_wrong_key_is_the_usual_error(rsa_cli: Cli) -> None:
    key_file = rsa_cli.tmp / "pub.pem"
    key_file.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    path, key = rsa_cli.license("a")
    result = rsa_cli("add", "--file", path, "--key", key, "--public-key-file", str(key_file))
    assert (result.code, result.err) == (
        1,
        "error: invalid public key: not a readable PEM public key\n",
    )
    assert rsa_cli.guids() == []


def test_add_help_names_the_file_flag(cli: Cli) -> None:
    out = cli("add", "--help").out
    assert "--public-key-file" in out
    assert "RSA PEM" in out


def test_locked_add_has_no_public_key_file_flag(cli: Cli) -> None:
    """A node lock pins the key: --public-key-file is as unknown as --public-key."""
    cli.lock = LockConfig(public_key=cli.writer.public_key, fingerprint=FINGERPRINT)
    result = cli("add", "--public-key-file", "pub.pem", "--file", "x", "--key", "y")
    assert (result.code, result.err) == (1, "Error: unknown flag: --public-key-file\n")


@pytest.mark.parametrize("how", ["flag", "file"])
def test_lock_build_takes_a_pem_key_that_then_unlocks(rsa_cli: Cli, how: str) -> None:
    """`relay lock build` with an RSA key: the wheel holds the PEM, and it verifies machine files."""
    pem = rsa_cli.writer.public_key
    key_file = rsa_cli.tmp / "pub.pem"
    key_file.write_text(pem)
    source = (
        ["--public-key", pem.strip()] if how == "flag" else ["--public-key-file", str(key_file)]
    )
    out = rsa_cli.tmp / "dist"
    result = rsa_cli("lock", "build", *source, "--fingerprint", FINGERPRINT, "--output", str(out))
    assert (result.code, result.err) == (0, "")
    with zipfile.ZipFile(Path(result.out.strip())) as archive:
        namespace: dict[str, object] = {}
        exec(archive.read("relay_lock/__init__.py"), namespace)
    values = namespace["LOCK"]
    assert isinstance(values, dict)
    assert values["public_key"] == pem
    lock = LockConfig.from_values(values)  # what an installed lock is loaded with
    assert lock.public_key == pem

    class ThisMachine:  # the lock pins only the fingerprint, so nothing else is asked
        def fingerprint(self) -> str:
            return FINGERPRINT

        platform = hostname = private_ip = None

    machine_file = rsa_cli.tmp / "relay.lic"
    machine_file.write_bytes(
        rsa_cli.writer.machine(
            license_key="LK",
            fingerprint=FINGERPRINT,
            issued=rsa_cli.clock.now() - 60,
            alg="aes-256-gcm+rsa-pss-sha256",
        )
    )
    record = unlock(
        lock,
        machine_file_path=str(machine_file),
        license_key="LK",
        machine=ThisMachine(),  # type: ignore[arg-type]
        now=rsa_cli.clock.now(),
    )
    assert record.fingerprint == FINGERPRINT


def test_lock_build_rejects_a_bad_pem_and_two_sources(rsa_cli: Cli) -> None:
    bad = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
    out = str(rsa_cli.tmp / "d")
    result = rsa_cli(
        "lock", "build", "--public-key", bad, "--fingerprint", FINGERPRINT, "--output", out
    )
    assert (result.code, result.err) == (
        1,
        "Error: invalid public key: not a readable PEM public key\n",
    )
    key_file = rsa_cli.tmp / "pub.pem"
    key_file.write_text(rsa_cli.writer.public_key)
    both = rsa_cli(
        "lock", "build", "--public-key", rsa_cli.writer.public_key, "--public-key-file",
        str(key_file), "--fingerprint", FINGERPRINT, "--output", out,
    )  # fmt: skip
    assert (both.code, both.err) == (
        1,
        "Error: --public-key and --public-key-file cannot be used together\n",
    )
    assert not (rsa_cli.tmp / "d").exists()


@pytest.mark.parametrize("alg", ["base64+ed25519", "base64+rsa-sha256"])
def test_an_unencrypted_file_with_another_key_is_one_error_line(
    cli: Cli, rsa: LicenseWriter, alg: str
) -> None:
    """Issue 14.3: exit 1, one `error:` line naming the file, nothing stored."""
    cli.writer = rsa if "rsa" in alg else cli.writer
    (good, kg) = cli.license("good")
    (plain, _) = cli.license("plain", key="THE-FILES-KEY", alg=alg)
    single = cli(
        "add", "--file", plain, "--key", "ANOTHER-KEY", "--public-key", cli.writer.public_key
    )
    assert (single.code, single.out) == (1, "")
    assert single.err == f"error: license key does not match the license file '{plain}'\n"
    bulk = cli(
        "add", "--file", f"{good},{plain}", "--key", f"{kg},ANOTHER-KEY",
        "--public-key", cli.writer.public_key,
    )  # fmt: skip
    assert (bulk.code, bulk.out) == (1, "")
    assert bulk.err == f"error: license key does not match the license file '{plain}'\n"
    assert cli.guids() == []
    right = cli(
        "add", "--file", plain, "--key", "THE-FILES-KEY", "--public-key", cli.writer.public_key
    )
    assert (right.code, right.err) == (0, "")

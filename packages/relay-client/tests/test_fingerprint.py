"""Fingerprints: the README's machine recipe, the environment, and what the relay can route."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from relay_client import ConfigurationError, fingerprint


def test_machine_is_hmac_of_the_pool_keyed_by_the_machine_id(tmp_path: Path) -> None:
    """machine(pool) = lowercase hex HMAC-SHA256(key=machine id, msg=pool name)."""
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef\n")
    got = fingerprint.machine(pool="prod", paths=[machine_id])
    assert got == hmac.new(b"0123456789abcdef", b"prod", hashlib.sha256).hexdigest()
    assert got != fingerprint.machine(pool="dev", paths=[machine_id])
    assert (
        fingerprint.machine(paths=[machine_id])
        == hmac.new(b"0123456789abcdef", b"", "sha256").hexdigest()
    )


def test_machine_falls_back_to_the_next_machine_id_file(tmp_path: Path) -> None:
    """A missing or empty first file (dbus) falls back to the second (/etc/machine-id)."""
    empty = tmp_path / "dbus"
    empty.write_text("\n")
    second = tmp_path / "etc"
    second.write_text("feed")
    assert fingerprint.machine(pool="p", paths=[tmp_path / "nope", empty, second]) == (
        hmac.new(b"feed", b"p", hashlib.sha256).hexdigest()
    )


def test_machine_without_any_machine_id_says_what_to_do(tmp_path: Path) -> None:
    """No readable machine id is a configuration error pointing at fingerprint= and from_env."""
    with pytest.raises(ConfigurationError, match="from_env"):
        fingerprint.machine(pool="p", paths=[tmp_path / "none"])


def test_from_env_reads_the_variable() -> None:
    """from_env returns the variable's value, and names the variable when it is unset."""
    assert fingerprint.from_env("NODE_ID", environ={"NODE_ID": " pod-7 "}) == "pod-7"
    with pytest.raises(ConfigurationError, match="NODE_ID is not set"):
        fingerprint.from_env("NODE_ID", environ={})


@pytest.mark.parametrize(("value", "reason"), [("", "empty"), ("a/b", "'/'"), ("x" * 1025, "1024")])
def test_unroutable_fingerprints_are_rejected(value: str, reason: str) -> None:
    """Empty, slash-containing and over-long fingerprints are refused before any request."""
    with pytest.raises(ConfigurationError, match=reason):
        fingerprint.validate(value)

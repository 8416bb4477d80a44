"""The node lock's parts: machine facts, lock constants, the entry-point finder and the wheel."""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from relay_cli.cli import installed_lock
from relay_cli.lockfind import LockLoadError, find_lock, lock_entry_points, version_string
from relay_cli.locking import LockConfig, LockConfigError, UnlockError
from relay_cli.machine import (
    Interface,
    LocalMachine,
    MachineError,
    first_private_ipv4,
    go_platform,
    protected_id,
    read_machine_id,
    system_interfaces,
)
from relay_cli.nodelock import build_lock_wheel, lock_source
from relay_cli.wheel import write_wheel

PUBLIC_KEY = "e8601e48b69383ba520245fd07971e983d06d22c4257cfd82304601479cee788"
FINGERPRINT = "d79af7edac07c0273df28ab7cb304f623e483df88d6d667e3e3ae730fa6352b1"


def test_protected_id_is_keygens_hmac_of_the_app_id() -> None:
    """The fingerprint is HMAC-SHA256(key=machine id, msg="keygen-relay") in lowercase hex (checked with openssl)."""
    assert protected_id("3d1219c7c4c5404aaa1f6d2a48adfda4") == FINGERPRINT


def test_machine_id_comes_from_the_first_non_empty_file_trimmed(tmp_path: Path) -> None:
    """An empty or missing dbus id falls through to /etc/machine-id; whitespace is trimmed."""
    empty, missing, etc = tmp_path / "dbus", tmp_path / "none", tmp_path / "etc"
    empty.write_text("  \n")
    etc.write_text("  3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    assert read_machine_id([str(missing), str(empty), str(etc)]) == (
        "3d1219c7c4c5404aaa1f6d2a48adfda4"
    )


def test_no_machine_id_is_one_clear_error(tmp_path: Path) -> None:
    """Without any machine id the error names the files it looked in."""
    with pytest.raises(MachineError, match=r"no machine id found \(looked in .*/a, .*/b\)"):
        read_machine_id([str(tmp_path / "a"), str(tmp_path / "b")])


@pytest.mark.parametrize(
    ("system", "cpu", "bits", "expected"),
    [
        ("linux", "x86_64", 64, "linux/amd64"),
        ("linux", "aarch64", 64, "linux/arm64"),
        ("linux", "armv7l", 32, "linux/arm"),
        ("linux", "x86_64", 32, "linux/386"),
        ("darwin", "arm64", 64, "darwin/arm64"),
        ("win32", "AMD64", 64, "windows/amd64"),
        ("freebsd14", "amd64", 64, "freebsd/amd64"),
        ("linux", "ppc64le", 64, "linux/ppc64le"),
        ("linux", "s390x", 64, "linux/s390x"),
    ],
)
def test_platform_uses_gos_names(system: str, cpu: str, bits: int, expected: str) -> None:
    """Python's platform names map to Go's GOOS/GOARCH, as Keygen Relay's runtime reports them."""
    assert go_platform(system, cpu, bits) == expected


def test_unknown_platform_is_an_error() -> None:
    """A CPU Go has no name for cannot be compared, so it is an error, not a guess."""
    with pytest.raises(MachineError, match="unknown platform linux/vax"):
        go_platform("linux", "vax", 32)


def iface(index: int, name: str, *ips: str, up: bool = True, loopback: bool = False) -> Interface:
    return Interface(index=index, name=name, up=up, loopback=loopback, ipv4=ips)


def test_private_ip_skips_loopback_down_and_public_interfaces_in_index_order() -> None:
    """The first 10/8, 172.16/12 or 192.168/16 address of an up, non-loopback interface wins."""
    interfaces = [
        iface(5, "eth2", "10.1.2.3"),
        iface(1, "lo", "127.0.0.1", "10.9.9.9", loopback=True),
        iface(2, "eth0", "192.0.2.2", "172.15.0.1", "172.32.0.1"),
        iface(3, "docker0", "172.17.0.1", up=False),
        iface(4, "eth1", "8.8.8.8", "172.31.255.254", "192.168.1.1"),
    ]
    assert first_private_ipv4(interfaces) == "172.31.255.254"


def test_no_private_ip_is_keygen_relays_error() -> None:
    """Only public or loopback addresses: `no private ip found`."""
    with pytest.raises(MachineError, match="^no private ip found$"):
        first_private_ipv4([iface(1, "lo", "127.0.0.1", loopback=True), iface(2, "e", "192.0.2.2")])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIOCGIFCONF is Linux-only")
def test_system_interfaces_read_the_kernels_list() -> None:
    """The real ioctl lists the loopback interface as up, loopback, 127.0.0.1."""
    found = {i.name: i for i in system_interfaces()}
    assert "lo" in found
    assert found["lo"].up
    assert found["lo"].loopback
    assert "127.0.0.1" in found["lo"].ipv4


def test_local_machine_reads_through_its_providers() -> None:
    """Every fact comes from an injected provider: fingerprint, platform, hostname, ip."""
    machine = LocalMachine(
        machine_id=lambda: "3d1219c7c4c5404aaa1f6d2a48adfda4",
        platform_name=lambda: "linux/arm64",
        host_name=lambda: "relay-01",
        interfaces=lambda: [iface(2, "eth0", "192.168.7.8")],
    )
    assert (
        machine.fingerprint(),
        machine.platform(),
        machine.hostname(),
        machine.private_ip(),
    ) == (
        FINGERPRINT,
        "linux/arm64",
        "relay-01",
        "192.168.7.8",
    )


def test_lock_config_accepts_and_normalises_valid_constants() -> None:
    """Upper-case hex keys are normalised; empty optional values mean "not locked"."""
    lock = LockConfig.from_values(
        {
            "public_key": PUBLIC_KEY.upper(),
            "fingerprint": FINGERPRINT,
            "platform": "linux/amd64",
            "hostname": "relay-01",
            "ip": "10.0.0.5",
            "addr": "",
            "port": 7000,
            "signing_secret": None,
        }
    )
    assert lock == LockConfig(
        public_key=PUBLIC_KEY,
        fingerprint=FINGERPRINT,
        platform="linux/amd64",
        hostname="relay-01",
        ip="10.0.0.5",
        port=7000,
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("public_key", "zz", 'invalid public key "zz": expected 64 hex digits'),
        ("public_key", "abcd", "invalid public key: 2 bytes, an Ed25519 public key has 32"),
        ("fingerprint", "ABC", 'invalid fingerprint "ABC": expected the 64 lowercase hex digits'),
        ("platform", "linux", 'invalid platform "linux": expected <os>/<arch>'),
        ("platform", "linux/x86_64", 'invalid platform "linux/x86_64"'),
        ("hostname", "has space", 'invalid hostname "has space"'),
        ("ip", "10.0.0", 'invalid ip "10.0.0": expected an IPv4 address'),
        ("ip", "8.8.8.8", 'invalid ip "8.8.8.8": expected a private IPv4 address'),
        ("ip", "fd00::1", 'invalid ip "fd00::1": expected an IPv4 address'),
        ("addr", "not an address", 'invalid addr "not an address"'),
        ("port", 0, "invalid port 0: expected an integer from 1 to 65535"),
        ("port", 65536, "invalid port 65536"),
        ("port", "x", 'invalid port "x"'),
        ("colour", "red", "unknown lock constant(s): colour"),
    ],
)
def test_lock_config_rejects_bad_constants_in_one_line(
    field: str, value: object, message: str
) -> None:
    """Each malformed constant is one line naming the value and what was expected."""
    values: dict[str, object] = {"public_key": PUBLIC_KEY, "fingerprint": FINGERPRINT, field: value}
    with pytest.raises(LockConfigError) as caught:
        LockConfig.from_values(values)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_lock_needs_public_key_and_fingerprint() -> None:
    """Without both required constants there is no lock."""
    with pytest.raises(LockConfigError, match="needs both a public key and a fingerprint"):
        LockConfig.from_values({"public_key": PUBLIC_KEY})


def test_version_suffix_shows_the_fingerprint_ends() -> None:
    """`+node-locked.<first 4>..<last 4>` when the fingerprint has 16+ characters."""
    assert version_string("1.0", FINGERPRINT) == "1.0+node-locked.d79a..52b1"
    assert version_string("1.0", "short") == "1.0+node-locked"
    assert version_string("1.0", None) == "1.0"


def fake_dist(site: Path, dirname: str, entry_points_txt: str | None) -> None:
    info = site / dirname
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: x\nVersion: 1\n")
    if entry_points_txt is not None:
        (info / "entry_points.txt").write_text(entry_points_txt)


def test_finder_reads_entry_points_like_importlib_metadata(tmp_path: Path) -> None:
    """Sections other than relay.lock are ignored; the first distribution of a name wins."""
    first, second = tmp_path / "a", tmp_path / "b"
    fake_dist(
        first,
        "relay_lock-1.0.dist-info",
        "[console_scripts]\nx = y:z\n\n[relay.lock]\nnode = mod_a:LOCK\n",
    )
    fake_dist(first, "other-2.dist-info", None)
    fake_dist(second, "Relay.Lock-0.9.dist-info", "[relay.lock]\nnode = mod_b:LOCK\n")
    assert lock_entry_points([str(first), str(second), str(tmp_path / "missing")]) == [
        ("relay_lock", "node", "mod_a:LOCK")
    ]


def test_finder_agrees_with_importlib_metadata_on_the_real_path() -> None:
    """For the relay.storage group on this interpreter's path both find the same entry points."""
    ours = {(name, target) for _, name, target in lock_entry_points(group="relay.storage")}
    theirs = {(ep.name, ep.value) for ep in entry_points(group="relay.storage")}
    assert ours == theirs
    assert ("sqlite", "relay_sqlite:open_store") in ours


def test_two_locks_fail_closed(tmp_path: Path) -> None:
    """Two distributions registering relay.lock is an error, never a silent pick."""
    fake_dist(tmp_path, "lock_one-1.dist-info", "[relay.lock]\nnode = a:LOCK\n")
    fake_dist(tmp_path, "lock_two-1.dist-info", "[relay.lock]\nnode = b:LOCK\n")
    with pytest.raises(LockLoadError, match="more than one node lock is installed"):
        find_lock([str(tmp_path)])


def test_unloadable_or_malformed_lock_fails_closed(tmp_path: Path) -> None:
    """A lock whose module is missing, or whose object is not a mapping, is an error."""
    fake_dist(tmp_path, "relay_lock-1.dist-info", "[relay.lock]\nnode = no_such_module_xyz:LOCK\n")
    with pytest.raises(LockLoadError, match="cannot be loaded from no_such_module_xyz:LOCK"):
        find_lock([str(tmp_path)])
    other = tmp_path / "other"
    fake_dist(other, "relay_lock-1.dist-info", "[relay.lock]\nnode = relay_cli:__version__\n")
    with pytest.raises(LockLoadError, match="is not a mapping of constants"):
        find_lock([str(other)])


def test_no_lock_on_this_interpreter() -> None:
    """The shared development environment is not node-locked."""
    assert find_lock() is None


def test_wheel_has_a_record_with_true_hashes(tmp_path: Path) -> None:
    """Every RECORD line's sha256 and size match the archived bytes; RECORD is last."""
    path = write_wheel(
        tmp_path / "out",
        name="demo-pkg",
        version="1.2+abc",
        summary="demo",
        files={"demo_pkg/__init__.py": b"X = 1\n"},
        entry_points={"demo.group": {"one": "demo_pkg:X"}},
        requires=["relay-cli"],
    )
    assert path.name == "demo_pkg-1.2+abc-py3-none-any.whl"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert names[0] == "demo_pkg/__init__.py"
        assert names[-1] == "demo_pkg-1.2+abc.dist-info/RECORD"
        record = archive.read(names[-1]).decode().splitlines()
        for line in record[:-1]:
            name, digest, size = line.split(",")
            data = archive.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert (digest, int(size)) == ("sha256=" + expected.decode(), len(data))
        assert record[-1] == "demo_pkg-1.2+abc.dist-info/RECORD,,"
        assert set(names) == {line.split(",")[0] for line in record}
        metadata = archive.read("demo_pkg-1.2+abc.dist-info/METADATA").decode()
        assert "Name: demo-pkg\nVersion: 1.2+abc\n" in metadata
        assert "Requires-Dist: relay-cli" in metadata
        assert archive.read("demo_pkg-1.2+abc.dist-info/entry_points.txt") == (
            b"[demo.group]\none = demo_pkg:X\n"
        )


def test_lock_wheel_module_round_trips_the_constants(tmp_path: Path) -> None:
    """The generated relay_lock module evaluates to exactly the validated constants."""
    lock = LockConfig(
        public_key=PUBLIC_KEY,
        fingerprint=FINGERPRINT,
        hostname="h",
        port=1,
        signing_secret="s'\"\\",
    )
    namespace: dict[str, object] = {}
    exec(lock_source(lock), namespace)
    assert LockConfig.from_values(namespace["LOCK"]) == lock  # type: ignore[arg-type]
    wheel = build_lock_wheel(lock, tmp_path)
    again = build_lock_wheel(lock, tmp_path / "again")
    assert wheel.name == again.name
    assert wheel.read_bytes() == again.read_bytes()


def test_installed_lock_is_validated_and_fails_closed(tmp_path: Path) -> None:
    """A lock whose constants are malformed is an unlock error naming the distribution."""
    good, bad = tmp_path / "good", tmp_path / "bad"
    build_lock_wheel(LockConfig(public_key=PUBLIC_KEY, fingerprint=FINGERPRINT), tmp_path / "w")
    wheel = next((tmp_path / "w").glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(good)
    package = good / "relay_lock" / "__init__.py"
    sys.modules.pop("relay_lock", None)
    sys.path.insert(0, str(good))
    try:
        assert installed_lock([str(good)]) == LockConfig(
            public_key=PUBLIC_KEY, fingerprint=FINGERPRINT
        )
        sys.modules.pop("relay_lock", None)
        package.write_text(package.read_text().replace(FINGERPRINT, "f" * 10))
        with pytest.raises(
            UnlockError, match=r"node lock relay_lock is invalid: invalid fingerprint"
        ):
            installed_lock([str(good)])
    finally:
        sys.path.remove(str(good))
        sys.modules.pop("relay_lock", None)
    assert installed_lock([str(bad)]) is None

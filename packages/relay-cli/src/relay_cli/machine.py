"""What a node lock checks about this machine: fingerprint, Go platform, hostname, private IPv4.

The fingerprint is Keygen Relay's ``machineid.ProtectedID("keygen-relay")``: the lowercase hex
HMAC-SHA256 of ``keygen-relay`` keyed by the machine id, so the raw id never leaves the machine.
Each raw fact comes from a provider that tests replace; the system providers are Linux-only
where the standard library offers nothing portable, and say so in one line elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import struct
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

import attrs

__all__ = [
    "MACHINE_ID_PATHS",
    "Interface",
    "LocalMachine",
    "Machine",
    "MachineError",
    "first_private_ipv4",
    "go_platform",
    "protected_id",
    "read_machine_id",
    "system_interfaces",
]

MACHINE_ID_PATHS = ("/var/lib/dbus/machine-id", "/etc/machine-id")
APP_ID = "keygen-relay"
PRIVATE_NETWORKS = tuple(
    ipaddress.IPv4Network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)


class MachineError(Exception):
    """A fact about this machine cannot be read; the message is one line."""


class Machine(Protocol):
    """The facts a lock compares; each raises `MachineError` when it cannot be determined."""

    def fingerprint(self) -> str: ...

    def platform(self) -> str: ...

    def hostname(self) -> str: ...

    def private_ip(self) -> str: ...


@attrs.frozen
class Interface:
    """One network interface as the OS lists it: index order is the OS's interface order."""

    index: int
    name: str
    up: bool
    loopback: bool
    ipv4: tuple[str, ...]


def protected_id(machine_id: str, app_id: str = APP_ID) -> str:
    """Lowercase hex HMAC-SHA256(key = machine id, message = app id), as keygen-sh/machineid."""
    return hmac.new(machine_id.encode(), app_id.encode(), hashlib.sha256).hexdigest()


def read_machine_id(paths: Sequence[str] = MACHINE_ID_PATHS) -> str:
    """The first readable, non-empty machine id among `paths`, trimmed."""
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                value = handle.read().strip()
        except OSError:
            continue
        if value:
            return value
    raise MachineError(f"no machine id found (looked in {', '.join(paths)})")


_GOOS = {"linux": "linux", "darwin": "darwin", "win32": "windows", "cygwin": "windows"}
_GOOS_PREFIXES = ("freebsd", "openbsd", "netbsd", "dragonfly", "aix")
_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "x86": "386",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loongarch64": "loong64",
    "mips": "mips",
    "mips64": "mips64",
}
_32_BIT = {"amd64": "386", "arm64": "arm"}


def go_platform(system: str, machine: str, pointer_bits: int) -> str:
    """``<GOOS>/<GOARCH>`` for a Python `sys.platform`, CPU name and interpreter word size."""
    goos = _GOOS.get(system)
    if goos is None:
        goos = next((p for p in _GOOS_PREFIXES if system.startswith(p)), None)
    if goos is None and system.startswith("sunos"):
        goos = "solaris"
    cpu = machine.lower()
    goarch = "arm" if cpu.startswith("arm") and cpu not in _GOARCH else _GOARCH.get(cpu)
    if goos is None or goarch is None:
        raise MachineError(f"unknown platform {system}/{machine}")
    if pointer_bits == 32:
        goarch = _32_BIT.get(goarch, goarch)
    return f"{goos}/{goarch}"


def _system_platform() -> str:
    import platform

    return go_platform(sys.platform, platform.machine(), struct.calcsize("P") * 8)


def _system_hostname() -> str:
    try:
        name = socket.gethostname()
    except OSError as exc:
        raise MachineError(str(exc)) from None
    if not name:
        raise MachineError("the hostname is empty")
    return name


_SIOCGIFCONF = 0x8912
_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8
_IFNAMSIZ = 16


def system_interfaces() -> list[Interface]:
    """The IPv4 interfaces of this machine from the kernel (SIOCGIFCONF), Linux only.

    Lists each interface's primary address and labelled aliases (``eth0:1``); addresses added
    without a label are not reported by this ioctl.
    """
    if not sys.platform.startswith("linux"):
        raise MachineError(
            f"reading network interfaces is supported on linux only, not {sys.platform}"
        )
    import array
    import fcntl

    record = _IFNAMSIZ + (24 if struct.calcsize("P") == 8 else 16)  # sizeof(struct ifreq)
    size = 256 * record
    buffer = array.array("B", bytes(size))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            request = struct.pack("iP", size, buffer.buffer_info()[0])
            length = struct.unpack("iP", fcntl.ioctl(sock.fileno(), _SIOCGIFCONF, request))[0]
            data = buffer.tobytes()[:length]
            addresses: dict[str, list[str]] = {}
            for offset in range(0, length - record + 1, record):
                label = data[offset : offset + _IFNAMSIZ].split(b"\0", 1)[0].decode()
                family = struct.unpack_from("H", data, offset + _IFNAMSIZ)[0]
                if family != socket.AF_INET:
                    continue
                address = socket.inet_ntoa(data[offset + _IFNAMSIZ + 4 : offset + _IFNAMSIZ + 8])
                addresses.setdefault(label.partition(":")[0], []).append(address)
            interfaces = []
            for name, found in addresses.items():
                request = struct.pack(f"{_IFNAMSIZ}sH", name.encode(), 0).ljust(record, b"\0")
                result = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request)
                flags = struct.unpack_from("H", result, _IFNAMSIZ)[0]
                interfaces.append(
                    Interface(
                        index=socket.if_nametoindex(name),
                        name=name,
                        up=bool(flags & _IFF_UP),
                        loopback=bool(flags & _IFF_LOOPBACK),
                        ipv4=tuple(found),
                    )
                )
    except OSError as exc:
        raise MachineError(f"cannot read network interfaces: {exc}") from None
    return sorted(interfaces, key=lambda iface: iface.index)


def first_private_ipv4(interfaces: Iterable[Interface]) -> str:
    """Keygen Relay's rule: the first 10/8, 172.16/12 or 192.168/16 address of an interface that
    is up and not loopback, in interface order."""
    for iface in sorted(interfaces, key=lambda i: i.index):
        if not iface.up or iface.loopback:
            continue
        for text in iface.ipv4:
            try:
                address = ipaddress.IPv4Address(text)
            except ValueError:
                continue
            if any(address in net for net in PRIVATE_NETWORKS):
                return str(address)
    raise MachineError("no private ip found")


@attrs.frozen
class LocalMachine:
    """This machine, read through replaceable providers (the defaults read the real system)."""

    machine_id: Callable[[], str] = read_machine_id
    platform_name: Callable[[], str] = _system_platform
    host_name: Callable[[], str] = _system_hostname
    interfaces: Callable[[], Iterable[Interface]] = system_interfaces

    def fingerprint(self) -> str:
        return protected_id(self.machine_id())

    def platform(self) -> str:
        return self.platform_name()

    def hostname(self) -> str:
        return self.host_name()

    def private_ip(self) -> str:
        return first_private_ipv4(self.interfaces())


if TYPE_CHECKING:
    _: type[Machine] = LocalMachine

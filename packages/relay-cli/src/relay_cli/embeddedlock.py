"""A node lock baked into the one-file `relay`: the lock wheel's module, appended to the executable.

PyInstaller keeps its archive in an ELF section, so bytes appended after it are ignored by the
bootloader and can carry the lock: the ``relay-lock`` wheel's distribution name, its one
``relay.lock`` entry point and its module source, then a fixed-size footer. At start the frozen
`relay` reads the footer of its own file (one seek, a few dozen bytes), and `relay_cli.lockfind`
treats what it finds exactly like the same wheel installed in a venv: same distribution name,
same entry point, same module, so the same checks, messages and version suffix follow.

Reading is standard library only (`relay version` runs it); writing (`embed_lock_wheel`, used by
`relay lock build --binary` and `./dev dist --lock`) also needs `zipfile`.
"""

from __future__ import annotations

import os
import sys

__all__ = [
    "EmbedError",
    "EmbeddedLock",
    "embed_lock_wheel",
    "read_embedded",
    "unlocked_build",
]

MAGIC = b"\n#relay-embedded-lock-v1 "
_LENGTH_DIGITS = 12
FOOTER_SIZE = len(MAGIC) + _LENGTH_DIGITS + 1
MAX_BINARY_BYTES = 256 * 1024 * 1024
"""A one-file relay is some 25 MB; the cap only keeps `--binary /dev/zero` from eating memory."""
BUILD_MARKER = (
    b"relay-build.txt"  # a name in every PyInstaller build of relay (packaging/relay.spec)
)


class EmbedError(Exception):
    """The lock cannot be embedded (or an embedded one cannot be read); one line."""


class EmbeddedLock:
    """The lock carried by an executable: where `relay_cli.lockfind` would find a wheel's."""

    __slots__ = ("distribution", "module", "name", "source", "target")

    def __init__(self, distribution: str, name: str, target: str, module: str, source: str) -> None:
        self.distribution = distribution
        self.name = name
        self.target = target
        self.module = module
        self.source = source

    def install(self) -> None:
        """Make ``import <module>`` return the embedded module (as site-packages would)."""
        if self.module in sys.modules:
            return
        module = type(sys)(self.module)
        module.__file__ = f"{sys.executable}!{self.module}"
        try:
            code = compile(self.source, module.__file__, "exec")
            exec(code, module.__dict__)
        except Exception as exc:  # what importing a broken module would raise
            raise ImportError(f"{type(exc).__name__}: {exc}") from None
        sys.modules[self.module] = module

    def payload(self) -> bytes:
        head = (
            f"distribution: {self.distribution}\n"
            f"entry-point: {self.name} = {self.target}\n"
            f"module: {self.module}\n\n"
        )
        return head.encode() + self.source.encode()


def _parse(payload: bytes) -> EmbeddedLock:
    head, sep, body = payload.partition(b"\n\n")
    if not sep:
        raise EmbedError("the embedded node lock is damaged")
    fields: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(": ")
        fields[key] = value
    name, _, target = fields.get("entry-point", "").partition(" = ")
    if not (fields.get("distribution") and name and target and fields.get("module")):
        raise EmbedError("the embedded node lock is damaged")
    return EmbeddedLock(
        fields["distribution"], name, target, fields["module"], body.decode("utf-8", "replace")
    )


def read_embedded(path: str) -> EmbeddedLock | None:
    """The lock appended to the executable at `path`, or None when it carries none."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size < FOOTER_SIZE:
                return None
            handle.seek(size - FOOTER_SIZE)
            footer = handle.read(FOOTER_SIZE)
            if not footer.startswith(MAGIC):
                return None
            digits = footer[len(MAGIC) : -1]
            if not digits.isdigit() or int(digits) > size - FOOTER_SIZE:
                raise EmbedError("the embedded node lock is damaged")
            length = int(digits)
            handle.seek(size - FOOTER_SIZE - length)
            payload = handle.read(length)
    except OSError as exc:
        raise EmbedError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _parse(payload)


def _lock_from_wheel(wheel: str) -> EmbeddedLock:
    """The one ``relay.lock`` entry point of a lock wheel and its module's source."""
    import zipfile

    from .lockfind import ENTRY_POINT_GROUP, _distribution, _section_entries

    try:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            metadata = sorted(
                n for n in names if n.count("/") == 1 and n.endswith(".dist-info/entry_points.txt")
            )
            if len(metadata) != 1:
                raise EmbedError(f"{wheel} is not a relay-lock wheel (no entry_points.txt)")
            dist = _distribution(metadata[0].split("/")[0]) or ""
            text = archive.read(metadata[0]).decode("utf-8")
            points = list(_section_entries(text, ENTRY_POINT_GROUP))
            if len(points) != 1:
                raise EmbedError(
                    f"{wheel} is not a relay-lock wheel: it has {len(points)} "
                    f"{ENTRY_POINT_GROUP} entry points, a lock has one"
                )
            name, target = points[0]
            module = target.partition(":")[0].strip()
            code = [n for n in names if not n.split("/")[0].endswith(".dist-info")]
            candidates = [f"{module}/__init__.py", f"{module}.py"]
            source_name = next((c for c in candidates if c in code), None)
            if source_name is None or len(code) != 1:
                raise EmbedError(
                    f"{wheel} is not a relay-lock wheel: a lock wheel holds one module, "
                    f"{module}, and its metadata"
                )
            source = archive.read(source_name).decode("utf-8")
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise EmbedError(f"cannot read the lock wheel {wheel}: {exc}") from None
    return EmbeddedLock(dist, name, target, module, source)


def unlocked_build(executable: os.PathLike[str] | str) -> bytes:
    """The bytes of `executable`, checked to be an unlocked one-file relay."""
    source = os.fspath(executable)
    from relay_core.small_files import FileError, read_bytes

    try:
        binary = read_bytes(source, limit=MAX_BINARY_BYTES)
    except FileError as exc:
        raise EmbedError(f"cannot read {source}: {exc}") from None
    if not binary.startswith(b"\x7fELF") or BUILD_MARKER not in binary:
        raise EmbedError(f"{source} is not a one-file relay (build one with ./dev dist)")
    if binary[-FOOTER_SIZE:].startswith(MAGIC):
        raise EmbedError(f"{source} is already node-locked; lock an unlocked one-file relay")
    return binary


def embed_lock_wheel(executable: os.PathLike[str] | str, wheel: os.PathLike[str] | str,
                     target: os.PathLike[str] | str) -> str:  # fmt: skip
    """Write `target`: the one-file relay `executable` with the lock of `wheel` appended."""
    source, output = os.fspath(executable), os.fspath(target)
    lock = _lock_from_wheel(os.fspath(wheel))
    binary = unlocked_build(source)
    if os.path.exists(output) and os.path.samefile(source, output):
        raise EmbedError(f"refusing to overwrite {source} with its locked copy")
    payload = lock.payload()
    footer = MAGIC + str(len(payload)).zfill(_LENGTH_DIGITS).encode() + b"\n"
    folder = os.path.dirname(output) or "."
    partial = output + ".partial"
    try:
        os.makedirs(folder, exist_ok=True)
        with open(partial, "wb") as handle:
            handle.write(binary + payload + footer)
        os.chmod(partial, 0o755)
        os.replace(partial, output)
    except OSError as exc:
        raise EmbedError(f"cannot write {output}: {exc.strerror or exc}") from None
    return output

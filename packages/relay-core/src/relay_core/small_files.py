"""The one way Relay reads a file a user names (keys, tokens, allow-lists, config, machine files).

A path is whatever the user typed or put there, so it may name a device (``/dev/zero``), a FIFO
that nobody writes to, or a huge file by mistake. Reading such a path whole would wait forever or
exhaust memory; every file relay reads is small, so anything that is not a regular file within
a size cap (1 MiB unless the caller says otherwise) is refused with a one-line reason.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["MAX_FILE_BYTES", "FileError", "check_regular_file", "read_bytes", "read_text"]

MAX_FILE_BYTES = 1024 * 1024
"""The default cap: Keygen license and machine files, PEM keys, tokens and config files are a
few KB; a MiB leaves room for long allow-lists."""


class FileError(Exception):
    """The file cannot be used; the message is the reason alone (``Is a directory``), for the
    caller to prefix with the flag or the kind of file."""


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"


def _check(status: os.stat_result, limit: int) -> None:
    if stat.S_ISDIR(status.st_mode):
        raise FileError(os.strerror(errno.EISDIR))
    if not stat.S_ISREG(status.st_mode):
        raise FileError("not a regular file")
    if status.st_size > limit:
        raise FileError(f"larger than {_size(limit)}")


def read_bytes(path: str | os.PathLike[str], *, limit: int = MAX_FILE_BYTES) -> bytes:
    """The whole file, which must be a regular file of at most `limit` bytes; `FileError`
    (with the OS's reason, e.g. ``No such file or directory``) otherwise.

    The file is opened non-blocking, so a FIFO is refused at once instead of waiting for a
    writer, and checked with `fstat` on the open descriptor, so what is read is what was checked.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise FileError(exc.strerror or str(exc)) from None
    try:
        _check(os.fstat(fd), limit)
        with os.fdopen(fd, "rb") as handle:
            fd = -1  # the handle owns it now
            data = handle.read(limit + 1)  # the size may have grown since fstat
    except OSError as exc:
        raise FileError(exc.strerror or str(exc)) from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > limit:
        raise FileError(f"larger than {_size(limit)}")
    return data


def read_text(path: str | os.PathLike[str], *, limit: int = MAX_FILE_BYTES) -> str:
    """`read_bytes` decoded as UTF-8; `FileError` ``not UTF-8 text`` when it is not."""
    try:
        return read_bytes(path, limit=limit).decode("utf-8")
    except UnicodeDecodeError:
        raise FileError("not UTF-8 text") from None


def check_regular_file(path: str | os.PathLike[str], *, limit: int = MAX_FILE_BYTES) -> None:
    """For a path handed to code that reads it itself (relay-core's license reader, the
    server's token and allow-list watchers): `FileError` if it exists but is not a regular file
    or is larger than `limit`. A missing or unreadable path is left to that code, whose message
    says so in its own words."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return
    _check(status, limit)

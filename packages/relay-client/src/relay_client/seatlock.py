"""One live lease per fingerprint and relay on this machine: a lock file held for the lease's life.

The relay cannot tell two processes sharing a fingerprint apart: both heartbeats extend the one
seat (202). So before claiming, the client locks a file named after the fingerprint, the pool and
the relay URLs, in a private directory of this user (``$XDG_RUNTIME_DIR/relay-client-UID``, else the temp
directory). A second claim by this user on this machine finds it locked and is refused without
asking the relay. The OS drops the lock when its process dies, even by SIGKILL, so a 202 for a
fingerprint whose lock was free is a dead run's seat, which the client may safely take over.

Locks are advisory ``flock`` locks (``msvcrt.locking`` on Windows), per open file, so two clients
in one process exclude each other too. If the directory cannot be used, a warning is logged and
only the relay-side check remains (a second 202 after the takeover is refused).

A ``flock`` belongs to the open file description, which a child made by ``fork`` shares: so the
child closes its copies of the lock files at once (``os.register_at_fork``) and holds no lease,
else the lock would outlive the parent's release, even the parent's death.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from .errors import LeaseConflictError

__all__ = ["SeatLock", "take"]

log = logging.getLogger("relay_client")

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)  # msvcrt locks bytes from the file position: byte 0
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EDEADLK):  # held elsewhere (EDEADLOCK)
                return False
            raise  # cannot lock at all: the caller warns
        return True

    def _unlock(fd: int) -> None:
        # Windows frees a lock left on a closed file only eventually: unlock it first.
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    def _user() -> str:
        return "user"  # Windows' temp directory is already per user

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held elsewhere
            return False
        return True

    def _unlock(fd: int) -> None:
        # Explicit, not only by closing: a copy of the fd that escaped the fork handler (a
        # C-level fork) shares the lock, and unlocking drops it there too.
        fcntl.flock(fd, fcntl.LOCK_UN)

    def _user() -> str:
        return str(os.getuid())


class SeatLock:
    """The lock of one (fingerprint, relay) key, from before the claim until the lease's last request."""

    def __init__(self, key: str, fd: int | None) -> None:
        self.key = key
        self._fd = fd
        self.ending = False
        """Set when the lease is being released: a new claim in this process may wait for it."""
        self.ended = threading.Event()

    def release(self) -> None:
        """Unlock (idempotent); from now on another lease may claim the fingerprint."""
        with _registry:
            if self.ended.is_set():
                return
            if _held.get(self.key) is self:
                del _held[self.key]
            fd, self._fd = self._fd, None
            if fd is not None:
                try:
                    _unlock(fd)
                except OSError as exc:  # closing drops it anyway (on Windows, eventually)
                    log.debug("relay_client: cannot unlock a seat lock (%s)", exc)
                finally:
                    os.close(fd)
            self.ended.set()


_registry = threading.RLock()  # the SIGTERM handler may release a lease inside take()
_held: dict[str, SeatLock] = {}
_warned: list[str] = []  # warn once per process


def _before_fork() -> None:
    _registry.acquire()  # fork with `_held` and the lock files consistent, never mid-take


def _after_fork_in_parent() -> None:
    _registry.release()


def _after_fork_in_child() -> None:
    """The child holds no lease: close its copies of the lock files and forget the parent's."""
    for lock in _held.values():
        fd, lock._fd = lock._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # not unlocked: that would unlock the parent's lease too
    _held.clear()
    _registry.release()  # taken by `_before_fork` in this very thread: no other thread here


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


def take(urls: Sequence[str], pool: str | None, fingerprint: str, *, patience: float) -> SeatLock:
    """Lock the fingerprint for a new lease, or raise `LeaseConflictError` if a live one holds it.

    A lease of this process that is being released (a request still in flight) is waited for,
    at most `patience` seconds. The pool is part of the key: a claim in another pool never
    gets the 202 a takeover acts on (the relay answers 409 or 410).
    """
    text = "\n".join([fingerprint, pool or "", *sorted(urls)])
    key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    for _ in range(2):
        with _registry:
            other = _held.get(key)
            if other is None:
                lock = SeatLock(key, _lock_file(key, fingerprint))
                _held[key] = lock
                return lock
        if not (other.ending and other.ended.wait(patience)):
            break
    raise LeaseConflictError(
        fingerprint,
        "another client in this process holds its lease: release that lease first, or give "
        "each client its own fingerprint",
    )


def _lock_file(key: str, fingerprint: str) -> int | None:
    """An open, locked file for `key`; None (after a warning) when no lock file can be used."""
    directory = _directory()
    if directory is None:
        return None
    path = directory / f"{key}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        _warn(f"cannot open {path} ({exc})")
        return None
    try:
        locked = _try_lock(fd)
    except OSError as exc:  # e.g. no locks on this file system
        os.close(fd)
        _warn(f"cannot lock {path} ({exc})")
        return None
    if not locked:
        os.close(fd)
        raise LeaseConflictError(
            fingerprint,
            f"another live process of this user on this machine holds its lease (lock {path}): "
            "give each process its own fingerprint, or stop the other one first",
        )
    return fd


def _directory() -> Path | None:
    """This user's private lock directory, created on first use."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    base = Path(runtime) if os.path.isabs(runtime) else Path(tempfile.gettempdir())
    path = base / f"relay-client-{_user()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
        if sys.platform != "win32" and (
            not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022
        ):
            raise PermissionError("not a directory of this user, writable by it alone")
    except OSError as exc:
        _warn(f"cannot use {path} ({exc})")
        return None
    return path


def _warn(problem: str) -> None:
    if not _warned:
        _warned.append(problem)
        log.warning(
            "relay_client: %s; two processes sharing a fingerprint on this machine are then "
            "told apart only by the relay (a second 202 after a takeover)",
            problem,
        )

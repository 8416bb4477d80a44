"""Who may claim: node tokens, the fingerprint allow-list and the new-node rate limit.

All three are off unless configured, and only guard ``/v1/nodes/{fingerprint}`` (the health
check stays open). Their refusals are Falcon errors, so they are answered by the one error
table (``{"error": ...}``) and signed like every other response:

* a missing or unknown ``Authorization: Bearer <token>`` gets 401 (PUT and DELETE);
* a claim for a fingerprint the allow-list does not match gets 403 (releases stay allowed);
* a claim that would take a *new* seat beyond N per minute from one client address gets 429
  with ``Retry-After``. The limit is checked inside the claim's transaction, through
  `Relay.claim(admit=...)`, so heartbeats (extensions) and releases are never limited.

The token file and the allow-list are `WatchedFile`s: re-read when they change on disk
(checked at most once a second, on a request) and on `NodeAccess.reload()` (SIGHUP).
"""

from __future__ import annotations

import collections
import fnmatch
import hmac
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

import attrs
import falcon
from relay_core.small_files import FileError, read_bytes

__all__ = [
    "AccessFileError",
    "AllowList",
    "NewNodeLimit",
    "NodeAccess",
    "NodeTokens",
    "WatchedFile",
    "read_allow_list",
    "read_tokens",
]

logger = logging.getLogger("relay")

T = TypeVar("T")

NODES = "/v1/nodes/"
"""The node API's routes, the only ones these checks guard."""

WINDOW = 60.0
"""The rate limit's window in seconds: N new nodes per minute."""


class AccessFileError(ValueError):
    """A token or allow-list file cannot be read or is unusable; `str()` is one line."""


def _lines(text: str) -> list[str]:
    """Non-empty lines, stripped, without ``#`` comment lines."""
    return [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]


@attrs.frozen
class NodeTokens:
    """The accepted bearer tokens, compared in constant time."""

    tokens: tuple[bytes, ...]

    def accepts(self, token: str) -> bool:
        candidate = token.encode("utf-8", "surrogateescape")
        found = False
        for known in self.tokens:  # no early exit: every token costs the same
            found |= hmac.compare_digest(known, candidate)
        return found


def read_tokens(text: str) -> NodeTokens:
    """One token per line (blank lines and ``#`` lines ignored); at least one, no spaces."""
    tokens = _lines(text)
    if not tokens:
        raise AccessFileError("no tokens in the file (one token per line)")
    for number, token in enumerate(tokens, 1):
        if any(ch.isspace() for ch in token) or not token.isprintable():
            raise AccessFileError(f"token {number} contains spaces or control characters")
    return NodeTokens(tuple(token.encode("utf-8") for token in tokens))


@attrs.frozen
class AllowList:
    """Exact fingerprints, plus `fnmatch` patterns (lines with ``*``, ``?`` or ``[``)."""

    exact: frozenset[str]
    patterns: tuple[str, ...]

    def allows(self, fingerprint: str) -> bool:
        if fingerprint in self.exact:
            return True
        return any(fnmatch.fnmatchcase(fingerprint, pattern) for pattern in self.patterns)

    def __len__(self) -> int:
        return len(self.exact) + len(self.patterns)


def read_allow_list(text: str) -> AllowList:
    """One fingerprint or pattern per line (blank lines and ``#`` lines ignored); case-sensitive."""
    exact: set[str] = set()
    patterns: list[str] = []
    for line in _lines(text):
        if any(ch in line for ch in "*?["):
            patterns.append(line)
        else:
            exact.add(line)
    return AllowList(frozenset(exact), tuple(patterns))


class WatchedFile(Generic[T]):
    """A small file's parsed content, re-read when the file changes or on `reload()`.

    A change is noticed by (mtime, size, inode), looked at no more than once per `interval`
    seconds, on the request that asks for the value. A file that becomes unreadable or invalid
    keeps the last good value, with an ERROR log line; the first read raises instead.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        parse: Callable[[str], T],
        *,
        what: str,
        interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._parse = parse
        self._what = what
        self._interval = interval
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._checked = monotonic()
        self._stamp, self._value = self._read()

    def _stat(self) -> tuple[int, int, int]:
        st = self.path.stat()
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _read(self) -> tuple[tuple[int, int, int], T]:
        try:
            stamp = self._stat()
            # Re-read on every change while serving: a FIFO or a huge file swapped in later
            # must not hang or bloat the request thread holding this watcher's lock.
            text = read_bytes(self.path).decode("utf-8")
        except OSError as exc:
            raise AccessFileError(
                f"cannot read {self._what} {self.path}: {exc.strerror or exc}"
            ) from None
        except FileError as exc:
            raise AccessFileError(f"cannot read {self._what} {self.path}: {exc}") from None
        except UnicodeDecodeError:
            raise AccessFileError(f"{self._what} {self.path} is not UTF-8 text") from None
        try:
            return stamp, self._parse(text)
        except AccessFileError as exc:
            raise AccessFileError(f"{self._what} {self.path}: {exc}") from None

    @property
    def value(self) -> T:
        now = self._monotonic()
        if now - self._checked >= self._interval:
            with self._lock:
                if now - self._checked >= self._interval:
                    self._checked = now
                    try:
                        changed = self._stat() != self._stamp
                    except OSError:
                        changed = True
                    if changed:
                        self._reload_locked()
        return self._value

    def reload(self) -> None:
        """Re-read the file now (SIGHUP); keep the last good value if it fails."""
        with self._lock:
            self._checked = self._monotonic()
            self._reload_locked()

    def _reload_locked(self) -> None:
        try:
            self._stamp, self._value = self._read()
        except AccessFileError as exc:
            logger.error("%s; keeping the previous one", exc)
            return
        logger.info("reloaded %s %s", self._what, self.path)


class NewNodeLimit:
    """At most `per_minute` new seats per client address in any 60-second window.

    A sliding log of admission times per address; `clock` is monotonic seconds (injectable).
    """

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError("the new-node limit must be at least 1 per minute")
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._log: dict[str, collections.deque[float]] = {}
        self._next_sweep = clock() + WINDOW

    def take(self, address: str) -> float | None:
        """Admit one new node from `address` (None), or the seconds until one may come."""
        now = self._clock()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            times = self._log.get(address)
            if times is None:
                times = self._log[address] = collections.deque()
            while times and times[0] <= now - WINDOW:
                times.popleft()
            if len(times) >= self.per_minute:
                return max(times[0] + WINDOW - now, 0.0)
            times.append(now)
            return None

    def _sweep(self, now: float) -> None:
        """Forget addresses with nothing in the window, so memory follows active clients."""
        self._next_sweep = now + WINDOW
        for address in [a for a, t in self._log.items() if not t or t[-1] <= now - WINDOW]:
            del self._log[address]

    def __len__(self) -> int:
        """How many addresses are remembered (for tests)."""
        return len(self._log)


class _Gate:
    """`Relay.claim`'s ``admit`` for one request: takes at most one slot, however often called."""

    __slots__ = ("_address", "_fingerprint", "_limit", "_taken")

    def __init__(self, limit: NewNodeLimit, address: str, fingerprint: str) -> None:
        self._limit = limit
        self._address = address
        self._fingerprint = fingerprint
        self._taken = False

    def __call__(self) -> None:
        if self._taken:  # the store may run the claim's work twice (cache, then SQL)
            return
        wait = self._limit.take(self._address)
        if wait is not None:
            logger.warning(
                "refused new node fingerprint=%s remote_addr=%s: more than %d new nodes per minute",
                self._fingerprint[:64],
                self._address,
                self._limit.per_minute,
            )
            raise falcon.HTTPTooManyRequests(
                description="too many new nodes from this address",
                retry_after=max(1, math.ceil(wait)),
            )
        self._taken = True


class NodeAccess:
    """Falcon middleware: token, allow-list and rate limit for the node routes."""

    def __init__(
        self,
        *,
        tokens: WatchedFile[NodeTokens] | None = None,
        allow: WatchedFile[AllowList] | None = None,
        limit: NewNodeLimit | None = None,
    ) -> None:
        self.tokens = tokens
        self.allow = allow
        self.limit = limit

    def files(self) -> Iterable[WatchedFile[Any]]:
        return [f for f in (self.tokens, self.allow) if f is not None]

    def reload(self) -> None:
        """Re-read the token file and the allow-list (on SIGHUP)."""
        for watched in self.files():
            watched.reload()

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        fingerprint = params.get("fingerprint")
        if resource is None or not isinstance(fingerprint, str) or not req.path.startswith(NODES):
            return  # the health check, unknown routes, and any other API mounted beside

        if self.tokens is not None:
            scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not self.tokens.value.accepts(token.strip()):
                logger.warning(
                    "refused request without a valid node token method=%s remote_addr=%s",
                    req.method,
                    req.remote_addr,
                )
                raise falcon.HTTPUnauthorized(
                    description="missing or invalid node token", challenges=["Bearer"]
                )
        if req.method != "PUT":
            return
        if self.allow is not None and not self.allow.value.allows(fingerprint):
            logger.warning(
                "refused fingerprint not on the allow-list fingerprint=%s remote_addr=%s",
                fingerprint[:64],
                req.remote_addr,
            )
            raise falcon.HTTPForbidden(description="fingerprint is not allowed")
        if self.limit is not None:
            req.context.admit_new_node = _Gate(self.limit, req.remote_addr or "", fingerprint)

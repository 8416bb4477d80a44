"""Log lines on stderr at Keygen Relay's `-v` levels (spec §7), under the ``relay`` logger.

Every Relay package logs to a child of ``relay`` (``relay.http``, ``relay.sqlite`` ...), so one
handler here covers them all; stdout stays reserved for command output. waitress's own logger
goes through the same handler, so none of its lines is written raw.

Values come from clients (fingerprints, paths, user agents), so the formatter, and only it,
makes every event one line that cannot be forged: a ``key=%s`` value is quoted the way Keygen
Relay's tint handler quotes (Go's `strconv.Quote`) when it is empty or holds a space, ``"``,
``=`` or an unprintable character; any other argument, and the message itself, has its control
characters escaped. Ordinary values (``path=/v1/nodes/abc``) are written as they are.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

from .values import TRUE_WORDS

__all__ = ["LOGGER_NAME", "configure_logging", "escape", "level_for", "quote"]

LOGGER_NAME = "relay"
_ALSO = ("waitress",)
"""Other loggers written by the same handler (waitress warns on its own logger)."""

_LEVEL_NAMES = {
    logging.DEBUG: "DBG",
    logging.INFO: "INF",
    logging.WARNING: "WRN",
    logging.ERROR: "ERR",
    logging.CRITICAL: "ERR",
}
_COLORS = {"DBG": "\x1b[35m", "INF": "\x1b[32m", "WRN": "\x1b[33m", "ERR": "\x1b[31m"}


def level_for(verbosity: int, environ: Mapping[str, str]) -> int:
    """0 -> ERROR (DEBUG if `DEBUG` is true), 1 -> ERROR, 2 -> WARN, 3 -> INFO, 4+ -> DEBUG."""
    if verbosity <= 0:
        return logging.DEBUG if environ.get("DEBUG", "") in TRUE_WORDS else logging.ERROR
    return {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}.get(verbosity, logging.DEBUG)


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", '"': '\\"'}


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by "surrogateescape"
        return f"\\x{code - 0xDC00:02x}"
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape(text: str) -> str:
    """`text` with every unprintable character (CR, LF, NUL, bad bytes ...) backslash-escaped."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape_char(ch) for ch in text)


def quote(text: str) -> str:
    """A ``key=value`` value as tint writes it: as is, or in Go-style double quotes when it is
    empty or has a space, ``"``, ``=`` or an unprintable character."""
    if text and text.isprintable() and not any(ch.isspace() or ch in '"=' for ch in text):
        return text
    inner = "".join(ch if ch.isprintable() and ch not in '"\\' else _escape_char(ch) for ch in text)
    return f'"{inner}"'


_CONVERSION = re.compile(r"%(\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")
_KEY_BEFORE = re.compile(r"[A-Za-z0-9_.]=$")
_Plan = tuple[str, tuple[str, ...]]
"""A format with ``%r`` made ``%s``, and per argument: ``key`` (a ``key=%s`` value), ``text``
(another ``%s``) or ``keep`` (``%d`` ...)."""
_PLANS: dict[str, _Plan | None] = {}


def _make_plan(msg: str) -> _Plan | None:
    parts: list[str] = []
    kinds: list[str] = []
    last = 0
    for match in _CONVERSION.finditer(msg):
        mapping, width, precision, kind = match.groups()
        if kind == "%":
            continue
        if mapping or "*" in (width or "") + (precision or ""):
            return None  # mapping keys or starred widths: formatted as logged, escaped after
        if kind in "sr":
            parts.append(msg[last : match.start()] + "%s")
            last = match.end()
            key = _KEY_BEFORE.search(msg, 0, match.start()) is not None
            kinds.append(("key" if key else "text") + ("-repr" if kind == "r" else ""))
        else:
            kinds.append("keep")
    parts.append(msg[last:])
    return "".join(parts), tuple(kinds)


def _plan(msg: str) -> _Plan | None:
    try:
        return _PLANS[msg]
    except KeyError:
        plan = _make_plan(msg)
        if len(_PLANS) < 4096:  # messages are literals; a cap in case one is not
            _PLANS[msg] = plan
        return plan


def _render(msg: str, args: tuple[Any, ...]) -> str:
    """``msg % args`` with each ``%s``/``%r`` argument escaped, and quoted after ``key=``."""
    plan = _plan(msg)
    if plan is None or len(plan[1]) != len(args):
        return msg % args
    fmt, kinds = plan
    safe: list[Any] = []
    for kind, arg in zip(kinds, args, strict=True):
        if kind == "keep":
            safe.append(arg)
            continue
        text = repr(arg) if kind.endswith("-repr") else str(arg)
        safe.append(quote(text) if kind.startswith("key") else escape(text))
    return fmt % tuple(safe)


class _Formatter(logging.Formatter):
    """``2025-12-05 16:49:12 INF message key=value`` in local time, like Keygen Relay's tint lines."""

    def __init__(self, *, color: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
        self._color = color

    def format(self, record: logging.LogRecord) -> str:
        # A copy: other handlers of the record still see it as logged.
        record = logging.makeLogRecord(record.__dict__)
        short = _LEVEL_NAMES.get(record.levelno, record.levelname[:3])
        record.levelname = f"{_COLORS[short]}{short}\x1b[0m" if self._color else short
        msg, args = record.msg, record.args
        if isinstance(msg, str) and isinstance(args, tuple) and args:
            try:
                msg = _render(msg, args)
            except (TypeError, ValueError):
                msg = record.getMessage()
        else:
            msg = record.getMessage()
        # Whatever was built before logging (an f-string) still cannot break the line.
        record.msg, record.args = escape(msg), None
        return super().format(record)


class _Handler(logging.Handler):
    """Writes to whatever `sys.stderr` is at emit time (so tests capturing stderr see the lines)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def configure_logging(verbosity: int, environ: Mapping[str, str], *, color: bool) -> logging.Logger:
    """Install (or replace) the one stderr handler of the ``relay`` logger."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if isinstance(handler, _Handler):
            logger.removeHandler(handler)
    handler = _Handler()
    handler.setFormatter(_Formatter(color=color))
    logger.addHandler(handler)
    logger.setLevel(level_for(verbosity, environ))
    logger.propagate = False
    for name in _ALSO:
        other = logging.getLogger(name)
        for old in list(other.handlers):
            if isinstance(old, _Handler):
                other.removeHandler(old)
        other.addHandler(handler)
        other.propagate = False
    return logger

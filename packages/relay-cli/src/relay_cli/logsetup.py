"""Log lines on stderr at Keygen Relay's `-v` levels (spec §7), under the ``relay`` logger.

Every Relay package logs to a child of ``relay`` (``relay.http``, ``relay.sqlite`` ...), so one
handler here covers them all; stdout stays reserved for command output.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping

from .values import TRUE_WORDS

__all__ = ["LOGGER_NAME", "configure_logging", "level_for"]

LOGGER_NAME = "relay"

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


class _Formatter(logging.Formatter):
    """``2025-12-05 16:49:12 INF message key=value`` in local time, like Keygen Relay's tint lines."""

    def __init__(self, *, color: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
        self._color = color

    def format(self, record: logging.LogRecord) -> str:
        short = _LEVEL_NAMES.get(record.levelno, record.levelname[:3])
        record.levelname = f"{_COLORS[short]}{short}\x1b[0m" if self._color else short
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
    return logger

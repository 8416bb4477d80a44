"""The printers every command uses: results on stdout, `error: ...` lines on stderr.

Streams are looked up on each call (not captured at start-up) so that pytest's `capsys` and
redirections done after start-up are honoured.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO

import attrs

__all__ = ["Output", "color_wanted", "printable"]

_BOLD_GREEN = "\x1b[1;32m"
_BOLD_RED = "\x1b[1;31m"
_RESET = "\x1b[0m"


def printable(text: str) -> str:
    """`text` with each non-printable character (line breaks, ANSI escapes, bidi overrides)
    written as Python escapes it (``\\n``, ``\\x1b``, ``\\u202e``), so that a value a network
    client chose (a node fingerprint) cannot forge table rows or drive the terminal; ordinary
    text is returned unchanged."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def color_wanted(environ: Mapping[str, str], *, no_color: bool) -> bool:
    """Colour only on a terminal, unless `--no-color`, `NO_COLOR` or `TERM=dumb` (fatih/color's rule)."""
    if no_color or environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    return _isatty(sys.stdout)


@attrs.define
class Output:
    """Writes command results and one-line errors; colour is decided once, from stdout."""

    color: bool = False

    @property
    def stdout(self) -> TextIO:
        return sys.stdout

    @property
    def stderr(self) -> TextIO:
        return sys.stderr

    def stdout_is_terminal(self) -> bool:
        return _isatty(sys.stdout)

    def success(self, message: str) -> None:
        """A result line on stdout, bold green on a colour terminal."""
        text = f"{_BOLD_GREEN}{message}{_RESET}" if self.color else message
        self.stdout.write(text + "\n")

    def plain(self, text: str) -> None:
        """Text on stdout exactly as given, plus a newline."""
        self.stdout.write(text + "\n")

    def fatal(self, message: str) -> None:
        """``Error: <message>`` on stderr: the command could not run at all (bad usage, a node
        lock that does not unlock). Keygen Relay prints these through cobra, capital E; scripts
        written for it tell them from a command's own ``error:`` lines by that."""
        self._line("Error", message)

    def error(self, message: str) -> None:
        """``error: <message>`` on stderr, flattened to one line; only the word `error` is coloured."""
        self._line("error", message)

    def _line(self, word: str, message: str) -> None:
        line = " ".join(message.split("\n"))
        label = f"{_BOLD_RED}{word}{_RESET}" if self.color else word
        self.stderr.write(f"{label}: {line}\n")
        self.stderr.flush()

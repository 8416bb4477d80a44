"""The process's one cattrs converter (placeholder grows into the config file support)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import cattrs

__all__ = ["make_cli_converter"]


def make_cli_converter() -> cattrs.Converter:
    """`relay_core.convert`'s converter, for `--json` output, the config file and admin bodies."""
    from relay_core.convert import make_converter

    return make_converter()

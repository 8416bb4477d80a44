"""Tables for `ls`, `stat` and `logs`: Keygen Relay's exact plain layout, a rich table, or JSON.

The plain layout (spec §1.8) is what scripts parse, so it is byte-exact: the reference's columns
first, ours after them.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from .output import Output, printable
from .values import env_bool

__all__ = ["Layout", "choose_layout", "render", "render_plain", "rfc3339"]

Cell = str | int | None


class Layout(enum.Enum):
    RICH = "rich"
    PLAIN = "plain"
    JSON = "json"


def rfc3339(timestamp: int | None) -> str | None:
    """Unix seconds -> ``2025-12-05T16:49:12Z`` (UTC, whole seconds); None stays None."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def choose_layout(
    *, plain: bool | None, as_json: bool, environ: Mapping[str, str], out: Output
) -> Layout:
    """`--json` wins; then `--plain`; then RELAY_PLAIN/NO_COLOR/CI; then plain unless on a terminal."""
    if as_json:
        return Layout.JSON
    if plain is not None:
        return Layout.PLAIN if plain else Layout.RICH
    if env_bool(environ, "RELAY_PLAIN", "NO_COLOR", "CI") or not out.stdout_is_terminal():
        return Layout.PLAIN
    return Layout.RICH


def _text(cell: Cell) -> str:
    """A cell as printed: ``-`` for none; control characters escaped (`printable`), because
    fingerprints and pool names come from network clients and must not forge rows."""
    return "-" if cell is None else printable(str(cell))


def render_plain(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """Keygen Relay's plain table: ``| a | b |`` lines, a ``+---+`` separator, widths in bytes."""
    texts = [[_text(cell) for cell in row] for row in rows]
    widths = [
        max(len(title.encode()), *(len(row[i].encode()) for row in texts))
        for i, title in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        parts = [cell + " " * (widths[i] - len(cell.encode())) for i, cell in enumerate(cells)]
        return "| " + " | ".join(parts) + " |"

    separator = "+" + "+".join("-" * (width + 2) for width in widths) + "+"
    return "\n".join([line(headers), separator, *(line(row) for row in texts)]) + "\n"


def _render_rich(headers: Sequence[str], rows: Sequence[Sequence[Cell]], out: Output) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    texts = [[_text(cell) for cell in row] for row in rows]
    table = Table(header_style="bold", border_style="grey42")
    for title in headers:
        table.add_column(title, no_wrap=True)
    for row in texts:
        table.add_row(*(Text(cell) for cell in row))  # Text: "[red]" in a value is not markup
    console = Console(file=out.stdout, no_color=not out.color)
    # Never squeeze a GUID or a timestamp: widen past the terminal rather than wrap or truncate.
    needed = sum(max(len(h), *(len(r[i]) for r in texts)) + 3 for i, h in enumerate(headers)) + 1
    console.width = max(console.width, needed)
    console.print(table)


def render(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    layout: Layout,
    out: Output,
    *,
    records: Sequence[Mapping[str, object]] | None = None,
) -> None:
    """Print the rows; JSON prints `records` (or one object per row keyed by the headers)."""
    if layout is Layout.JSON:
        data = (
            records
            if records is not None
            else [dict(zip(headers, row, strict=True)) for row in rows]
        )
        out.plain(json.dumps(list(data), indent=2))
    elif layout is Layout.PLAIN:
        out.stdout.write(render_plain(headers, rows))
    else:
        _render_rich(headers, rows, out)

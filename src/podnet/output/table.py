"""Tables: rich on a terminal, kubectl's plain aligned columns when piped."""

from __future__ import annotations

import sys
from typing import TextIO


def render(headers: list[str], rows: list[list[str]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if out.isatty():
        from rich.console import Console  # deferred: rich only for a terminal (piped output is plain)
        from rich.table import Table, box  # with Console, only for a terminal

        table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False)
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*row)
        Console(file=out).print(table)
        return
    plain(headers, rows, out)


def plain(headers: list[str], rows: list[list[str]], out: TextIO) -> list[int]:
    """kubectl's plain columns; returns their widths (what later rows of a watch pad to)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        out.write(line(row, widths))
    return widths


def line(row: list[str], widths: list[int]) -> str:
    """One row padded to `widths` (a longer cell pushes the rest, as kubectl's watch rows do)."""
    return "   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n"

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
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        out.write("   ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() + "\n")

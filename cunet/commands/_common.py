"""What every command shares: JSON on stdout, tables and progress on stderr."""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Sequence

import click

from cunet.console import console
from cunet.io import jsonable

__all__ = ["emit_json", "print_table", "format_cell", "console", "json_option"]

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout and nothing else there.")


def emit_json(obj: Any) -> None:
    """Print `obj` as one JSON object on stdout (NaN/inf become null so strict parsers accept it)."""
    sys.stdout.write(json.dumps(jsonable(obj), indent=2) + "\n")
    sys.stdout.flush()


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                decimals: dict[int, int] | None = None) -> None:
    """Print a table to stderr: numbers right-aligned with one number of decimals per column, text left-aligned.

    Args:
        title: the table's title (never wrapped: a narrow terminal crops it rather than breaking a word).
        columns: headers; put units there ("NME %", "p50 ms"), not in the cells.
        rows: cells: float, int, str or None ("—").
        decimals: column index → decimals for its floats; other columns get them from their largest value
            (3 below 1, 2 below 100, 1 below 10,000, then 0), so `0.010` and `0.000` line up instead of `0.009563`
            beside `0`.
    """
    from rich.table import Table
    from rich.text import Text

    # The title is its own line: a table's title is wrapped to the table's width, which broke long model paths
    # mid-word above narrow tables.
    table = Table()
    # Cells and headers are plain Text: as markup, "pip install 'cunet[train]'" printed as "pip install 'cunet'".
    cells = [[Text(format_cell(v, _decimals(rows, i, decimals))) for i, v in enumerate(r)] for r in rows]
    for i, c in enumerate(columns):
        numeric = bool(rows) and all(_is_number(r[i]) or r[i] is None for r in rows if i < len(r))
        table.add_column(Text(c), justify="right" if numeric and i > 0 else "left")
    for r in cells:
        table.add_row(*r)
    out = console()
    out.print(title, markup=False, highlight=False, soft_wrap=True, style="italic")
    out.print(table)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _decimals(rows: Sequence[Sequence[Any]], i: int, given: dict[int, int] | None) -> int:
    if given and i in given:
        return given[i]
    values = [abs(r[i]) for r in rows if i < len(r) and isinstance(r[i], float) and math.isfinite(r[i])]
    top = max(values, default=0.0)
    return 3 if top < 1 else 2 if top < 100 else 1 if top < 1e4 else 0


def format_cell(v: Any, decimals: int = 2) -> str:
    """One table cell: floats with `decimals` decimals and thousands separators, ints with separators, NaN/None —."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:,.{decimals}f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)

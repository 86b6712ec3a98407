"""What every command shares: JSON on stdout, tables and progress on stderr."""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Sequence

import click

from cunet.console import console
from cunet.io import jsonable

__all__ = ["emit_json", "print_table", "console", "json_option"]

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout and nothing else there.")


def emit_json(obj: Any) -> None:
    """Print `obj` as one JSON object on stdout (NaN/inf become null so strict parsers accept it)."""
    sys.stdout.write(json.dumps(jsonable(obj), indent=2) + "\n")
    sys.stdout.flush()


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a table to stderr."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*[_fmt(v) for v in r])
    console().print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)

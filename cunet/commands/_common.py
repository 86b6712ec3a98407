"""What every command shares: JSON on stdout, tables and progress on stderr, and the CLI boundary of writing files.

Outputs: an option that names something a command writes is declared with `output_option` (its type is
`OutputPath`); nothing else may name an output (tests/reliability/test_write_matrix.py walks every command and fails
on one that does). `guard` wraps every command (`cunet.cli` applies it to all of them): it derives the command's write
policy from its parameters — the `OutputPath` values are its outputs, every other path parameter an input, `--force`
what it says — and runs the command under it (`cunet.io.writing`), so the rule of `cunet.io` holds for every command
by construction. It is also where an OS error or a missing optional package becomes one `error:` line.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from cunet.console import console
from cunet.io import jsonable

__all__ = ["emit_json", "print_table", "format_cell", "console", "json_option", "OutputPath", "output_option",
           "force_option", "write_policy", "guard"]

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout and nothing else there.")

force_option = click.option(
    "--force", is_flag=True,
    help="Replace an existing output file that cunet cannot prove it wrote (never an input of the command, never "
         "through a symbolic link).")

_FILE_RULE = (" An existing file is replaced only when cunet wrote it for this option (its folder's .cunet-outputs "
              "lists it unchanged) or with --force; never an input.")
_FOLDER_RULE = (" A file there is replaced only when cunet wrote it for this option (.cunet-outputs lists it "
                "unchanged); nothing is written outside it.")
_CACHE_RULE = (" Entries are replaced when stale or damaged; other files there are never touched; nothing is "
               "written outside it.")


class OutputPath(click.Path):
    """The type of every option that names something a command writes: one file (and its sidecars) or a folder.

    Attributes:
        folder: a folder the command writes files into.
        tag: the name shared by the outputs of several commands that write the same files (the calibration cache of
            `calibrate` and `quantize`); default: the command and the option.
        cache: a cache folder (content-addressed entries, see `cunet.io.policy.WritePolicy.check`).
    """

    def __init__(self, folder: bool = False, tag: str | None = None, cache: bool = False, path_type: Any = None):
        super().__init__(file_okay=not folder, dir_okay=folder, path_type=path_type)
        self.folder, self.tag, self.cache = folder, tag, cache


def output_option(*decls: str, help: str, folder: bool = False, tag: str | None = None, cache: bool = False,
                  path_type: Any = None, **kwargs: Any) -> Callable:
    """`click.option` for an output, with the write rule appended to its `--help` (see the module docstring)."""
    rule = _CACHE_RULE if cache else _FOLDER_RULE if folder else _FILE_RULE
    return click.option(*decls, type=OutputPath(folder, tag, cache, path_type), help=help.rstrip() + rule, **kwargs)


def _command_name(ctx: click.Context) -> str:
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(["cunet", *reversed(names)])


def write_policy(ctx: click.Context):
    """The `cunet.io.WritePolicy` of the command `ctx` runs: its `OutputPath` options are its outputs, every other
    path parameter (arguments and options) an input, `--force` applies to its file outputs."""
    from cunet.io import Output, WritePolicy

    command, force = _command_name(ctx), bool(ctx.params.get("force"))
    outputs, inputs = [], []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        values = value if isinstance(value, (tuple, list)) else () if value is None else (value,)
        if isinstance(param.type, OutputPath):
            option = max(param.opts, key=len)
            outputs += [Output(Path(v), command, option, folder=param.type.folder, force=force, tag=param.type.tag)
                        for v in values]
        elif isinstance(param.type, click.Path):
            inputs += [Path(v) for v in values]
    return WritePolicy(outputs, inputs)


def guard(command: click.Command) -> click.Command:
    """Run `command` (every subcommand of a group) under its write policy, with OS errors and missing optional
    packages as one `error:` line (`cunet.errors`); any other exception keeps its traceback."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            guard(sub)
        return command
    inner = command.callback
    if inner is None or getattr(inner, "cunet_guarded", False):
        return command

    @functools.wraps(inner)
    def run(*args: Any, **kwargs: Any) -> Any:
        from cunet.errors import CunetError, missing_package, os_error_line
        from cunet.io import writing

        ctx = click.get_current_context()
        try:
            with writing(write_policy(ctx)):
                return inner(*args, **kwargs)
        except ModuleNotFoundError as e:
            error = missing_package(e, _command_name(ctx))
            if error is None:
                raise
            raise error from e
        except OSError as e:
            line = os_error_line(e)
            if line is None:
                raise
            raise CunetError(line) from e

    run.cunet_guarded = True  # type: ignore[attr-defined]
    command.callback = run
    return command


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

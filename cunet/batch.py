"""The one rule for bad files in a batch, shared by every command that reads many files.

`evaluate`, `calibrate`, `quantize`, `bench`, `train`, `predict` and `metrics` read many files (images, `.pts`
files, JSON records, box-file entries). A file that cannot be used (unreadable, truncated, empty, malformed, a
`.pts` of 19 points, an image without annotation, a box outside its image, a key leaving the dataset folder) does
not stop the others:

- it is one line on stderr, `skipped FILE: why`;
- the rest is used, and the command says how many (`the closing line` below, and its own counts);
- the command's JSON carries them as "skipped": [{"file", "problem"}] (`predict`: "failed", its older name);
- the exit status is 1, after the work is done and written: `error: skipped N file(s) that cannot be used; M ...`;
- with `--strict` the first one stops the command instead: one line `error: FILE: why`, exit 1.

Library code collects them in a `Skips` (which raises at the first when strict); commands print them and close with
`finish`. Both live here so that every command words, counts and exits the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

from cunet.errors import CunetError

__all__ = ["Skip", "Skips", "print_skipped", "finish"]


@dataclass(frozen=True)
class Skip:
    """One file (or record, or entry) left out, and why, in one line each."""

    file: str
    problem: str

    def line(self) -> str:
        """`skipped FILE: why`."""
        return f"skipped {self.file}: {self.problem}"

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "problem": self.problem}


class Skips:
    """The files a batch left out, in the order met; with `strict` the first one raises instead.

    Args:
        strict: raise `CunetError("FILE: why")` at the first file instead of collecting it (`--strict`).
    """

    def __init__(self, strict: bool = False) -> None:
        self.strict = bool(strict)
        self.items: list[Skip] = []

    def add(self, file: str | os.PathLike, problem: str) -> None:
        """Leave `file` out because of `problem` (or, when strict, stop here).

        Raises:
            CunetError: when strict: one line "FILE: problem".
        """
        if self.strict:
            raise CunetError(f"{file}: {problem}")
        self.items.append(Skip(str(file), problem))

    def add_error(self, file: str | os.PathLike, error: CunetError) -> None:
        """`add` with the problem of a one-line error about `file` (its "FILE: " prefix removed)."""
        self.add(file, str(error).removeprefix(f"{file}: "))

    def extend(self, problems: Iterable[Any]) -> None:
        """`add` each of `problems`: objects with `.file` and `.problem`, or (file, problem) pairs."""
        for p in problems:
            file, problem = (p.file, p.problem) if hasattr(p, "problem") else p
            self.add(file, problem)

    def to_json(self) -> list[dict[str, str]]:
        """The "skipped" value of a command's JSON: [{"file", "problem"}]."""
        return [s.to_dict() for s in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __iter__(self):
        return iter(self.items)


def _as_skips(skipped: Iterable[Any]) -> list[Skip]:
    out = []
    for s in skipped:
        if isinstance(s, Skip):
            out.append(s)
        elif isinstance(s, dict):
            out.append(Skip(str(s["file"]), str(s["problem"])))
        else:
            out.append(Skip(str(s[0]), str(s[1])))
    return out


def print_skipped(skipped: Iterable[Any]) -> None:
    """One `skipped FILE: why` line per file on stderr (`Skip`s, {"file", "problem"} dicts or pairs)."""
    import click

    for s in _as_skips(skipped):
        click.echo(s.line(), err=True)


def finish(skipped: Iterable[Any], used: int, unit: str) -> None:
    """The closing line of a batch command: when anything was skipped, `error: skipped N file(s) that cannot be
    used; USED UNIT` on stderr and exit status 1 (the work is done and written by then).

    Args:
        skipped: what the command left out (as for `print_skipped`).
        used: how many inputs the command did use.
        unit: what they are, after the number ("image(s) scored", "calibration image(s) used", ...).

    Raises:
        click.exceptions.Exit: code 1 when `skipped` is not empty.
    """
    import click

    n = len(_as_skips(skipped))
    if n:
        click.echo(f"error: skipped {n} file(s) that cannot be used; {used} {unit} (--strict stops at the first)",
                   err=True)
        raise click.exceptions.Exit(1)

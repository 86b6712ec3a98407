"""The stderr console every layer prints tables and progress on, so `--json` output on stdout stays one object."""

from __future__ import annotations

import sys

__all__ = ["console"]


def console(width: int | None = None):
    """A rich console on stderr: tables and progress never mix with `--json` output.

    Markup is off: what cunet prints holds user paths and file names, and `[x]` in one of them would be read as a
    style tag and vanish from the line. `width` fixes the width where stderr is not a terminal.
    """
    from rich.console import Console

    # Logs and pipes are not terminals: rich would assume 80 columns and truncate table cells there.
    return Console(stderr=True, markup=False, width=None if sys.stderr.isatty() else (width or 160))

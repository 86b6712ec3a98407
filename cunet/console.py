"""The stderr console every layer prints tables and progress on, so `--json` output on stdout stays one object."""

from __future__ import annotations

import sys

__all__ = ["console"]


def console():
    """A rich console on stderr: tables and progress never mix with `--json` output."""
    from rich.console import Console

    # Logs and pipes are not terminals: rich would assume 80 columns and truncate table cells there.
    return Console(stderr=True, width=None if sys.stderr.isatty() else 160)

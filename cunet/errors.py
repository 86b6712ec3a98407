"""User-facing errors.

A `CunetError` means the user gave cunet something it cannot use (a bad path, a malformed annotation, a missing
backend). The CLI prints its message as one line and exits 1. Any other exception is a bug and keeps its traceback.
"""

__all__ = ["CunetError"]


class CunetError(Exception):
    """An error caused by the user's input or environment, reported as one line without a traceback."""

"""User-facing errors.

A `CunetError` means the user gave cunet something it cannot use (a bad path, a malformed annotation, a missing
backend). The CLI prints its message as one line and exits 1. Any other exception is a bug and keeps its traceback.
"""

import importlib.util

__all__ = ["CunetError", "require_torch"]


class CunetError(Exception):
    """An error caused by the user's input or environment, reported as one line without a traceback."""


def require_torch(what: str) -> None:
    """Raise a one-line `CunetError` saying `what` needs PyTorch when it is not installed (the `train` extra).

    Training, export and `.pt` checkpoints need torch; everything that reads an ONNX model or an engine does not, so
    the base install leaves it out and the commands that need it call this before importing it.
    """
    if importlib.util.find_spec("torch") is None:
        raise CunetError(f"{what} needs PyTorch, which this install lacks: pip install 'cunet[train]'")

"""User-facing errors.

A `CunetError` means the user gave cunet something it cannot use (a bad path, a malformed annotation, a missing
backend). The CLI prints its message as one line and exits 1. Any other exception is a bug and keeps its traceback.

Two kinds of environment trouble are user errors too, and this module words them: an operating-system error about a
path (a read-only or full disk, a missing permission, a name too long: `os_error_line`) and an optional package this
install lacks (`missing_package`, `require_torch`): each is one line that says what to do.
"""

from __future__ import annotations

import errno
import importlib.util

__all__ = ["CunetError", "OutputError", "require_torch", "missing_package", "os_error_line", "USER_ERRNOS",
           "EXTRAS"]


class CunetError(Exception):
    """An error caused by the user's input or environment, reported as one line without a traceback."""


class OutputError(CunetError):
    """A file cunet refused to write (it is not provably cunet's, is an input, or leaves the output folder) or could
    not write (the OS said why: `errno` is set and the `OSError` is the cause). It stops the whole command: a batch does
    not skip it, since every later write would meet the same folder."""

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_


#: The OS errors that are the user's environment, not a bug, with the advice printed after the system's words.
USER_ERRNOS: dict[int, str] = {
    errno.EROFS: "write to a writable folder",
    errno.EACCES: "check the permissions, or write elsewhere",
    errno.EPERM: "check the permissions, or write elsewhere",
    errno.ENOSPC: "free some space or write to another disk; nothing half-written was left",
    errno.EDQUOT: "free some space within your quota or write elsewhere; nothing half-written was left",
    errno.ENAMETOOLONG: "use a shorter name or folder",
    errno.EISDIR: "a folder is where a file should be",
    errno.ENOTDIR: "a file is where a folder should be",
    errno.EEXIST: "a file is where a folder should be",
}

#: Optional packages → the extra that installs them.
EXTRAS: dict[str, str] = {
    "torch": "train", "torchvision": "train", "onnxscript": "train", "onnxslim": "train",
    "onnxruntime": "cpu", "openvino": "openvino", "nncf": "nncf", "tensorrt": "gpu", "cuda": "gpu",
}


def os_error_line(e: OSError, path: object = None) -> str | None:
    """`PATH: <the system's words> (<advice>)` for an OS error in `USER_ERRNOS`, else None (a bug: keep the traceback).

    Args:
        e: the error.
        path: the path to name (default: the error's own filename; a path the user gave reads better than a
            temporary file's name).
    """
    if e.errno not in USER_ERRNOS:
        return None
    where = path if path is not None else e.filename
    why = e.strerror or errno.errorcode.get(e.errno, str(e.errno))
    return f"{where}: {why} ({USER_ERRNOS[e.errno]})" if where is not None else f"{why} ({USER_ERRNOS[e.errno]})"


def missing_package(e: ModuleNotFoundError, what: str) -> CunetError | None:
    """The one-line error for `e` when it is an optional package of cunet (`EXTRAS`), else None.

    Args:
        e: the failed import.
        what: who needs it, e.g. "cunet import-original".
    """
    root = (e.name or "").split(".")[0]
    if root not in EXTRAS:
        return None
    return CunetError(f"{what} needs {root}, which this install lacks: pip install 'cunet[{EXTRAS[root]}]'")


def require_torch(what: str) -> None:
    """Raise a one-line `CunetError` saying `what` needs PyTorch when it is not installed (the `train` extra).

    Training, export and `.pt` checkpoints need torch; everything that reads an ONNX model or an engine does not, so
    the base install leaves it out and the commands that need it call this before importing it.
    """
    if importlib.util.find_spec("torch") is None:
        raise CunetError(f"{what} needs PyTorch, which this install lacks: pip install 'cunet[train]'")

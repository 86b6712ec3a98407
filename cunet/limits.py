"""The size limit of every file cunet reads whole, and the one "empty file" message of every reader.

Annotation files (`.pts`, MPII and COCO JSON), detector box files (JSON and `.mat`), MPII's `gt_valid.mat`,
prediction files, reports given to `cunet compare`, output manifests (`.cunet-outputs`), engine manifests and
calibration caches are read into memory at once (and JSON grows several times over as Python objects). Images have
their pixel limit (`cunet.data.image_limit`); these files have this one, so a wrong path (a video given as a box
file, a multi-GB dump) is one line naming the file instead of a process that eats the machine's memory.

The limit is `DEFAULT_MAX_MB` (256 MiB, far above the largest real annotation file cunet reads: MPII's train.json
is about 10 MB) unless the environment variable `CUNET_MAX_FILE_MB` sets another (a positive number of MiB).
Models (ONNX, checkpoints, engines, IR) have no limit: their runtimes read them, and big models are legitimate.

Every reader of any kind (images and models included) reports a 0-byte file the same way: `PATH: empty file`.
"""

from __future__ import annotations

import os
from pathlib import Path

from cunet.errors import CunetError

__all__ = ["DEFAULT_MAX_MB", "ENV_VAR", "FileProblem", "max_file_bytes", "file_problem", "refuse_empty",
           "check_file", "read_limited_bytes", "read_limited_text"]

DEFAULT_MAX_MB = 256
ENV_VAR = "CUNET_MAX_FILE_MB"
EMPTY = "empty file"
_MB = 1 << 20


class FileProblem(CunetError):
    """One file that cannot be used: `file` names it, `problem` says why; the message is "FILE: problem".

    Batches turn it into a `skipped FILE: problem` line (`cunet.batch`); the annotation readers' `FormatError` is one.
    """

    def __init__(self, file: str | os.PathLike, problem: str) -> None:
        self.file = str(file)
        self.problem = problem
        super().__init__(f"{self.file}: {problem}")


def max_file_bytes() -> int:
    """The size limit in force, in bytes: `CUNET_MAX_FILE_MB` MiB when set, else `DEFAULT_MAX_MB` MiB.

    Raises:
        CunetError: the variable is set but is not a positive number.
    """
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_MAX_MB * _MB
    try:
        value = float(raw.replace("_", ""))
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise CunetError(f"{ENV_VAR}={raw!r}: must be a positive number of MiB (default {DEFAULT_MAX_MB})")
    return max(1, int(value * _MB))


def _amount(n: int) -> str:
    return f"{n / _MB:,.1f} MiB" if n >= _MB // 10 else f"{n:,} bytes"


def _over(size: int, limit: int) -> str:
    return f"{_amount(size)}, over the limit of {_amount(limit)} for files cunet reads whole (set {ENV_VAR} to allow it)"


def file_problem(path: str | os.PathLike, limited: bool = True) -> str | None:
    """What makes `path` unreadable before a byte is parsed, or None: "no such file", "empty file", or its size
    above `max_file_bytes()` (when `limited`)."""
    try:
        size = Path(path).stat().st_size
    except FileNotFoundError:
        return "no such file"
    except OSError as e:
        return f"cannot read ({e.strerror})"
    if not Path(path).is_file():
        return "not a file"
    if size == 0:
        return EMPTY
    if limited:
        limit = max_file_bytes()
        if size > limit:
            return _over(size, limit)
    return None


def refuse_empty(path: str | os.PathLike) -> None:
    """Raise `PATH: empty file` for an existing 0-byte file (any reader, models included; no size limit).

    Raises:
        FileProblem: the file exists and holds no byte.
    """
    p = Path(path)
    if p.is_file() and p.stat().st_size == 0:
        raise FileProblem(p, EMPTY)


def check_file(path: str | os.PathLike) -> None:
    """Raise one line when `path` is missing, empty or over the size limit (`file_problem`).

    Raises:
        FileProblem: "PATH: why" (a `CunetError`).
    """
    problem = file_problem(path)
    if problem is not None:
        raise FileProblem(path, problem)


def read_limited_bytes(path: str | os.PathLike) -> bytes:
    """The whole file, refused in one line when missing, empty or over the limit (also if it grew while read).

    Raises:
        FileProblem: "PATH: why" (a `CunetError`).
    """
    check_file(path)
    limit = max_file_bytes()
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise FileProblem(path, f"cannot read ({e.strerror})") from None
    if len(data) > limit:
        raise FileProblem(path, _over(len(data), limit))
    return data


def read_limited_text(path: str | os.PathLike, encoding: str = "utf-8-sig") -> str:
    """The whole file as text (`read_limited_bytes`, then decoded; `utf-8-sig` drops a BOM).

    Raises:
        FileProblem: "PATH: why" (a `CunetError`), also "not a UTF-8 text file".
    """
    data = read_limited_bytes(path)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise FileProblem(path, "not a UTF-8 text file") from None

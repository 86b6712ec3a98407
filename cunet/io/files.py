"""The primitives under `cunet.io`: a temporary sibling, fsync, rename, the one file hash and the one JSON cleaner.

Nothing here asks whether a write is allowed (that is `cunet.io.policy`); the public writers in `cunet.io` ask first
and then use these. The temporary file is created with mode 0o666 (the kernel applies the umask), so an artifact
gets the permissions a plain `open(path, "w")` would give it, not `tempfile.mkstemp`'s private 0o600 (a model
written for a team must be readable by the team).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import uuid
from pathlib import Path
from typing import Any

__all__ = ["TEMP_NAME", "create_temp", "fsync_dir", "commit", "discard", "sha256_file", "jsonable"]

#: Names of stray temporaries of an interrupted write (`.<name>.tmp-<12 hex>`): neither foreign nor ours to delete.
TEMP_NAME = re.compile(r"^\..+\.tmp-[0-9a-f]{12}$")


def create_temp(path: Path) -> tuple[int, str]:
    """Create `.<name>.tmp-<random>` beside `path` (O_EXCL, mode 0o666 under the umask); returns (fd, its path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = str(path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable; not every filesystem allows opening a directory, which is harmless."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def commit(tmp: str, path: Path) -> None:
    """Rename the finished temporary `tmp` over `path` and make the rename durable."""
    os.replace(tmp, path)
    fsync_dir(path.parent)


def discard(tmp: str) -> None:
    """Remove a temporary that will not be committed (gone already is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def jsonable(obj: Any) -> Any:
    """`obj` as plain JSON values: NaN and inf → None, numpy arrays and scalars → lists and numbers, paths → str,
    tuples → lists, dict keys → str."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if callable(getattr(obj, "tolist", None)):  # numpy arrays and scalars, without importing numpy here
        return jsonable(obj.tolist())
    return obj

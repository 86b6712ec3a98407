"""Atomic writes: every artifact cunet produces (checkpoints, ONNX models, engines, caches, reports) goes through here.

A file is written to a temporary sibling, flushed and fsynced, then renamed over the target, and the directory is
fsynced so the rename itself survives a power cut. A process killed mid-write leaves the previous file intact and at
worst a stray hidden `.<name>.tmp-*` file that the next write ignores. The temporary file is created with mode 0o666
(the kernel applies the umask), so the artifact gets the permissions a plain `open(path, "w")` would give it, not
`tempfile.mkstemp`'s private 0o600 (a model written for a team must be readable by the team).

Also here, because every layer writes JSON and hashes files: `jsonable`, the one cleaner that makes a result
strict JSON (NaN/inf → null, numpy → Python, paths → text), and `sha256_file`, the one file hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import uuid
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_write", "write_bytes", "write_text", "write_json", "jsonable", "sha256_file"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `path`; on a clean exit it replaces `path` atomically.

    Args:
        path: the final destination. Its parent directories are created.
        mode: "wb" or "w" (text, UTF-8).

    Yields:
        The open temporary file. If the block raises, the temporary file is removed and `path` is untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports 'w' and 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _create_temp(path: Path) -> tuple[int, str]:
    # O_EXCL with mode 0o666 is what mkstemp does, except that mkstemp forces 0o600; here the umask decides.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = str(path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every filesystem allows opening a directory, which is harmless.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write `data` to `path`."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write `text` (UTF-8) to `path`."""
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write `obj` as indented JSON, cleaned by `jsonable` (strict JSON readers accept it)."""
    write_text(path, json.dumps(jsonable(obj), indent=2) + "\n")


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


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

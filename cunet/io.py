"""Atomic writes: every artifact cunet produces (checkpoints, ONNX models, engines, caches, reports) goes through here.

A file is written to a temporary sibling, flushed and fsynced, then renamed over the target, and the directory is
fsynced so the rename itself survives a power cut. A process killed mid-write leaves the previous file intact and at
worst a stray hidden `.<name>.tmp-*` file that the next write ignores. The temporary file is created with mode 0o666
(the kernel applies the umask), so the artifact gets the permissions a plain `open(path, "w")` would give it, not
`tempfile.mkstemp`'s private 0o600 (a model written for a team must be readable by the team).

Also here, because every layer writes JSON and hashes files: `jsonable`, the one cleaner that makes a result
strict JSON (NaN/inf → null, numpy → Python, paths → text), and `sha256_file`, the one file hash.

`OwnedOutputs` is the overwrite rule every writer of many files into one folder follows: a command replaces only
files it can prove it wrote. It keeps a manifest of its own outputs (`.cunet-outputs` in the folder: each
file's relative path, size and sha256), refuses a non-empty folder holding a file the manifest does not list (or one
changed since) at a path it is about to write, or a folder holding none of its files, naming a file in one line,
and deletes only listed, unchanged files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import uuid
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

__all__ = ["atomic_write", "write_bytes", "write_text", "write_json", "jsonable", "sha256_file", "OwnedOutputs",
           "MANIFEST_NAME"]

#: The manifest of a folder's cunet-written files (see `OwnedOutputs`).
MANIFEST_NAME = ".cunet-outputs"
# Stray temporaries of an interrupted `atomic_write`: neither foreign nor ours to delete.
_TEMP = re.compile(r"^\..+\.tmp-[0-9a-f]{12}$")


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


class OwnedOutputs:
    """The files one cunet command wrote into `folder`, proved by a manifest of their sizes and hashes.

    Use: `owned = OwnedOutputs(folder, "data synth")`, then `owned.claim(overwrite=...)` before writing, `owned.write_*`
    (or `owned.record(path)` after writing a file some other way), and `owned.save()` at the end (also after a
    failure, so what was written stays provably ours). For a writer that only adds files beside others (e.g. a
    prediction folder), `owned.check_free(paths)` refuses before any work if a path it would write holds a file it
    did not write.
    """

    def __init__(self, folder: str | os.PathLike, command: str):
        self.folder = Path(folder)
        self.command = command
        self.files: dict[str, dict[str, Any]] = self._load()
        self.kept: list[Path] = []  # files of others that `claim` left in place

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST_NAME

    def _load(self) -> dict[str, dict[str, Any]]:
        from cunet.errors import CunetError
        from cunet.limits import read_limited_text

        try:
            doc = json.loads(read_limited_text(self.manifest))  # the size limit of every file read whole
            files = doc.get("files", {}) if isinstance(doc, dict) else {}
            return {str(k): v for k, v in files.items() if isinstance(v, dict)}
        except (CunetError, ValueError):
            return {}  # no manifest (or an empty, oversized, unreadable one): nothing here is provably ours

    def _rel(self, path: str | os.PathLike) -> str:
        # A path inside the folder (as given or resolved), or one already relative to it.
        p = Path(path)
        with contextlib.suppress(ValueError):
            return p.relative_to(self.folder).as_posix()
        if p.is_absolute():
            return p.resolve().relative_to(self.folder.resolve()).as_posix()
        return p.as_posix()

    def owns(self, path: str | os.PathLike) -> bool:
        """True when `path` is listed in the manifest and unchanged since this command wrote it."""
        entry = self.files.get(self._rel(path))
        full = self.folder / self._rel(path)
        if entry is None or not full.is_file():
            return False
        return full.stat().st_size == entry.get("size") and sha256_file(full) == entry.get("sha256")

    def _present(self) -> Iterator[Path]:
        if not self.folder.is_dir():
            return
        for p in sorted(self.folder.rglob("*")):
            if p.is_file() or p.is_symlink():
                if p.name == MANIFEST_NAME or _TEMP.match(p.name):
                    continue
                yield p

    def foreign(self) -> list[Path]:
        """Files in the folder this command cannot prove it wrote."""
        return [p for p in self._present() if not self.owns(p)]

    def claim(self, overwrite: bool) -> None:
        """Make the folder ready for a fresh set of outputs.

        An empty or missing folder is used as is. A non-empty one needs `overwrite` and at least one file of an
        earlier run of this command (listed and unchanged); those are deleted. Any other file is kept, listed in
        `self.kept`, and writing over one later raises (see `check_free`).

        Raises:
            CunetError: the folder is a file, is non-empty without `overwrite`, or holds no file of this command
                (one line naming a file found there).
        """
        from cunet.errors import CunetError

        if self.folder.exists() and not self.folder.is_dir():
            raise CunetError(f"{self.folder}: exists and is not a folder")
        present = list(self._present())
        self.kept: list[Path] = []
        if not present:
            self.files = {}
            return
        if not overwrite:
            raise CunetError(f"{self.folder}: folder is not empty; choose a new folder or allow overwriting "
                             f"(--overwrite replaces only files an earlier `cunet {self.command}` wrote there)")
        ours = [p for p in present if self.owns(p)]
        if not ours:
            raise CunetError(f"{self.folder}: holds {present[0].relative_to(self.folder).as_posix()} and "
                             f"{len(present) - 1} other file(s), none written by `cunet {self.command}` (no "
                             f"{MANIFEST_NAME} lists them); refusing to overwrite: choose a new folder")
        for p in ours:
            os.unlink(p)
        self.kept = [p for p in present if p not in set(ours)]
        self.files = {}
        self.save()

    def check_free(self, paths: Iterable[str | os.PathLike]) -> None:
        """Refuse (before any work) when one of `paths` holds a file this command did not write.

        Raises:
            CunetError: naming the first such file.
        """
        from cunet.errors import CunetError

        for path in paths:
            full = self.folder / self._rel(path)
            if (full.exists() or full.is_symlink()) and not self.owns(full):
                raise CunetError(f"{full}: exists and was not written by `cunet {self.command}`; refusing to "
                                 "overwrite it: choose another output folder or move it away")

    def free(self, path: str | os.PathLike) -> Path:
        """The full path of `path`, after checking it holds no file this command did not write (see `check_free`)."""
        self.check_free([path])
        return self.folder / self._rel(path)

    def record(self, path: str | os.PathLike) -> None:
        """List a file this command has just written (its size and hash as it is now)."""
        full = self.folder / self._rel(path)
        self.files[self._rel(path)] = {"size": full.stat().st_size, "sha256": sha256_file(full)}

    def write_bytes(self, path: str | os.PathLike, data: bytes) -> None:
        """`write_bytes` (refused over a file this command did not write) + `record`."""
        write_bytes(self.free(path), data)
        self.files[self._rel(path)] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def write_json(self, path: str | os.PathLike, obj: Any) -> None:
        """`write_json` (refused over a file this command did not write) + `record`."""
        write_json(self.free(path), obj)
        self.record(path)

    def save(self) -> None:
        """Write the manifest (atomically)."""
        write_json(self.manifest, {"command": f"cunet {self.command}", "files": dict(sorted(self.files.items()))})

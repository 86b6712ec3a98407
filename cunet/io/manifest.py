"""`.cunet-outputs`: the proof of which files in a folder cunet wrote, and for which output.

One manifest per output folder (the folder an output option names, or the folder a named output file is in). Each
entry is a file's path relative to that folder, its size and sha256 as cunet wrote it, and `by`: the output that
wrote it, e.g. "cunet export --output" or "cunet data synth --out". A file is proved cunet's for an output when the
manifest lists it, by that output, with the same size and sha256 it has now: a user's edit, or a file of another
command, is not proof.

    {"format": "cunet-outputs", "format_version": 2,
     "files": {"model.onnx": {"size": 123, "sha256": "…", "by": "cunet export --output"}}}

Version 1 (written by `data synth` and `predict` before every command kept one) named one "command" for the whole
file ("cunet predict"); its entries count as written by that command through any of its outputs.

Changes are kept in memory and saved in one go (`save`), under an exclusive lock on the folder so that two commands
writing into one folder at once merge their entries instead of losing one's. The lock is `flock` on the folder itself,
which leaves no lock file behind (where `fcntl` does not exist, a `filelock` lock file beside the manifest).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from cunet.io.files import commit, create_temp, discard, sha256_file

__all__ = ["MANIFEST_NAME", "Manifest"]

#: The manifest's file name in every folder cunet writes into.
MANIFEST_NAME = ".cunet-outputs"
_FORMAT, _VERSION = "cunet-outputs", 2


class Manifest:
    """The `.cunet-outputs` of one folder: what it lists now, plus this process's unsaved changes."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._files = self._load()
        self._changes: dict[str, dict[str, Any] | None] = {}  # rel → new entry, or None: forget it

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST_NAME

    def _load(self) -> dict[str, dict[str, Any]]:
        from cunet.errors import CunetError
        from cunet.limits import read_limited_text

        try:
            doc = json.loads(read_limited_text(self.path))  # the size limit of every file read whole
        except (CunetError, ValueError):
            return {}  # no manifest (or an empty, oversized, unreadable one): nothing here is provably cunet's
        if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
            return {}
        legacy = doc.get("command") if isinstance(doc.get("command"), str) else None
        return {str(rel): {**e, "by": e.get("by", legacy)} for rel, e in doc["files"].items() if isinstance(e, dict)}

    def entry(self, rel: str) -> dict[str, Any] | None:
        """The entry of `rel` as this process sees it (its own unsaved changes included)."""
        if rel in self._changes:
            return self._changes[rel]
        return self._files.get(rel)

    def proof(self, rel: str, by: str) -> str | None:
        """None when the file at `rel` is provably written by output `by` and unchanged since; else why not."""
        e = self.entry(rel)
        if e is None:
            return f"no {MANIFEST_NAME} entry proves cunet wrote it"
        command = by.rsplit(" ", 1)[0]  # a version-1 entry names the command only
        if e.get("by") not in (by, command):
            return f"it was written by `{e.get('by')}`, not by `{by}`"
        full = self.folder / rel
        if full.is_symlink() or not full.is_file():
            return "it is not the file cunet wrote there"
        if full.stat().st_size != e.get("size") or sha256_file(full) != e.get("sha256"):
            return f"it changed since `{e.get('by')}` wrote it"
        return None

    def record(self, rel: str, size: int, sha256: str, by: str) -> None:
        """List `rel` as written by `by` with this size and hash (saved by `save`)."""
        self._changes[rel] = {"size": size, "sha256": sha256, "by": by}

    def forget(self, rel: str) -> None:
        """Drop `rel` (a file cunet has just deleted)."""
        self._changes[rel] = None

    def save(self) -> None:
        """Merge this process's changes into the manifest on disk, under the folder's lock, atomically."""
        if not self._changes or not self.folder.is_dir():
            return
        with _locked(self.folder):
            self._files = self._load()  # another process may have saved since we read it
            for rel, e in self._changes.items():
                if e is None:
                    self._files.pop(rel, None)
                else:
                    self._files[rel] = e
            files = {rel: e for rel, e in sorted(self._files.items()) if (self.folder / rel).is_file()}
            data = json.dumps({"format": _FORMAT, "format_version": _VERSION, "files": files}, indent=1) + "\n"
            fd, tmp = create_temp(self.path)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                commit(tmp, self.path)
            except BaseException:
                discard(tmp)
                raise
        self._changes.clear()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no flock; a lock file it is
        from filelock import FileLock

        with FileLock(str(folder / (MANIFEST_NAME + ".lock"))):
            yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock

"""The calibration cache: activation ranges on disk, reused only when model, data, method and sample count all match.

A stale cache is the quiet way INT8 goes wrong (ranges of last week's weights applied to today's model), so the key
is strict: the sha256 of the model file's bytes, a fingerprint of the calibration inputs (selected files' paths,
sizes, mtimes and crop boxes, or the arrays' bytes), the method and the requested sample count. The file name is a
hash of that key and the file repeats the key, so a hash collision or a hand-edited file is still a miss.

Concurrency: a per-entry `filelock` serialises processes calibrating the same model on the same data; the second
one waits and then reuses the first one's result. Files are replaced atomically through `cunet.io`, so a reader
never sees half a file, and an unreadable file is treated as a miss and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cunet.io import make_dirs, write_json

__all__ = ["CacheKey", "default_cache_dir", "entry_path", "read_entry", "write_entry", "entry_lock"]

CACHE_FORMAT = "cunet-calibration"
CACHE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class CacheKey:
    """Everything calibration ranges depend on."""

    model_sha256: str
    data_fingerprint: str
    method: str
    samples: int

    def digest(self) -> str:
        """A stable hex digest of the key (the cache file's name)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/cunet/calib`, i.e. `~/.cache/cunet/calib` on most systems."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cunet" / "calib"


def entry_path(cache_dir: str | os.PathLike, key: CacheKey) -> Path:
    """Where the ranges for `key` live: `<cache_dir>/<model sha[:12]>-<key digest[:24]>.json`."""
    return Path(cache_dir) / f"{key.model_sha256[:12]}-{key.digest()[:24]}.json"


def entry_lock(path: Path):
    """An inter-process lock guarding one cache entry (a `filelock.FileLock` on `<entry>.lock`)."""
    from filelock import FileLock

    make_dirs(path.parent)
    return FileLock(str(path) + ".lock")


def read_entry(path: Path, key: CacheKey) -> dict[str, Any] | None:
    """The cached payload at `path` if it exists, parses, and was written for exactly `key`; otherwise None."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or doc.get("key") != asdict(key):
        return None
    return doc.get("ranges")


def write_entry(path: Path, key: CacheKey, ranges: dict[str, Any]) -> None:
    """Atomically write `ranges` for `key` to `path`: a cache entry (`cache_entry`), so a stale or damaged file at its
    name is replaced, under the write rule of `cunet.io` otherwise."""
    doc = {"format": CACHE_FORMAT, "format_version": CACHE_FORMAT_VERSION, "key": asdict(key), "ranges": ranges}
    write_json(path, doc, cache_entry=True)

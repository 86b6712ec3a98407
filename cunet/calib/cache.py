"""The calibration cache: activation ranges on disk, reused only when everything they depend on is the same.

A stale cache is the quiet way INT8 goes wrong (ranges of last week's weights, or of another folder's pixels,
applied to today's model), so the key is strict and made of content, never of file names or times:

- the sha256 of the model file's bytes (its cunet metadata, the preprocessing included);
- the calibration inputs' fingerprint: a hash of every selected image file's bytes and its crop box, in order
  (`cunet.calib.reader.select_calibration_images`), or of the preprocessed arrays' bytes — two folders with the same
  names, sizes and modification times but other pixels get different keys;
- the preprocessing (input size, mean, std, stretch, face margin) spelled out, the method, the requested sample
  count, the calibrator's settings (`CALIBRATOR_SETTINGS` of `cunet.calib.calibrate`) and the ONNX Runtime version
  whose calibrator computed the ranges.

The file name is a hash of that key and the file repeats the key, so a hash collision or a hand-edited file is a
miss. A file that does not parse into exactly what it should (not JSON, a `null` where a range belongs, a range that
is not two finite numbers in order, an empty file, a file over the readers' size limit `cunet.limits`) is a miss
too: recomputed and rewritten, never a traceback.

Concurrency: a per-entry `filelock` serialises processes calibrating the same model on the same data; the second
one waits and then reuses the first one's result. Files are replaced atomically through `cunet.io`, so a reader
never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cunet.errors import CunetError
from cunet.io import make_dirs, write_json
from cunet.limits import read_limited_text

__all__ = ["CacheKey", "default_cache_dir", "entry_path", "read_entry", "write_entry", "entry_lock"]

CACHE_FORMAT = "cunet-calibration"
#: 2: content-keyed (file bytes, preprocessing, calibrator settings, runtime version); version-1 files are misses.
CACHE_FORMAT_VERSION = 2
_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class CacheKey:
    """Everything calibration ranges depend on (see the module docstring)."""

    model_sha256: str
    data_fingerprint: str
    method: str
    samples: int
    preprocess: dict[str, Any] = field(default_factory=dict)
    calibrator: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)

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


def _finite_pair(v: Any) -> bool:
    return (isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                        and math.isfinite(x) for x in v) and v[0] <= v[1])


def _valid_ranges(r: Any, key: CacheKey) -> bool:
    """The payload `Ranges.to_dict` writes, and nothing else: every field of the right type, every range finite."""
    if not isinstance(r, dict):
        return False
    count = r.get("samples")
    return (r.get("method") == key.method and r["method"] in _METHODS
            and type(count) is int and count >= 1 and type(r.get("requested")) is int
            and r.get("model_sha256") == key.model_sha256 and r.get("data_fingerprint") == key.data_fingerprint
            and isinstance(r.get("skipped"), list)
            and all(isinstance(s, list) and len(s) == 2 and all(isinstance(x, str) for x in s) for s in r["skipped"])
            and isinstance(r.get("tensors"), dict) and len(r["tensors"]) > 0
            and all(isinstance(k, str) and _finite_pair(v) for k, v in r["tensors"].items()))


def _read_small(path: Path) -> str | None:
    """The entry's text, or None when it is missing, empty, not UTF-8 or over the readers' size limit."""
    try:
        return read_limited_text(path)
    except CunetError:
        return None


def read_entry(path: Path, key: CacheKey) -> dict[str, Any] | None:
    """The cached payload at `path` if it exists, parses into valid ranges, and was written for exactly `key`;
    otherwise None (the caller recomputes and rewrites it)."""
    text = _read_small(path)
    if text is None:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    as_json = json.loads(json.dumps(asdict(key)))  # tuples read back as lists
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or doc.get("key") != as_json:
        return None
    ranges = doc.get("ranges")
    return ranges if _valid_ranges(ranges, key) else None


def write_entry(path: Path, key: CacheKey, ranges: dict[str, Any]) -> None:
    """Atomically write `ranges` for `key` to `path`: a cache entry (`cache_entry`), so a stale or damaged file at its
    name is replaced, under the write rule of `cunet.io` otherwise."""
    doc = {"format": CACHE_FORMAT, "format_version": CACHE_FORMAT_VERSION, "key": asdict(key), "ranges": ranges}
    write_json(path, doc, cache_entry=True)

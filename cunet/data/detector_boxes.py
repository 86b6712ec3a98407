"""Face detector boxes for `evaluate --boxes` and `predict --boxes`: cunet's box JSON or iBUG's `bounding_boxes_*.mat`.

Two files give boxes:
- the box JSON `{relative_image_path: [x1, y1, x2, y2]}` (0-based pixels, `cunet.data.formats.read_box_file`);
- the MATLAB files iBUG distributes with 300-W (`bounding_boxes_afw.mat`, `bounding_boxes_lfpw_testset.mat`, ...):
  a 1 x N struct array `bounding_boxes` whose entries hold `imgName`, `bb_detector` and `bb_ground_truth` as
  [x1, y1, x2, y2] in MATLAB's 1-based pixels. cunet takes `bb_detector` (the boxes the original CU-Net code and the
  300-W papers crop from) and subtracts 1, as its `.pts` reader does for the landmarks. A folder stands for every
  `bounding_boxes_*.mat` in it.

Each `.mat` entry is keyed `<file tag>/<imgName>` (tag: the name after `bounding_boxes_`, e.g. `lfpw_testset`).
An entry that cannot be used (a box that is not 4 finite numbers with x2 > x1 and y2 > y1, a key that is absolute
or has a `..` part) does not refuse the whole file: it is kept in `DetectorBoxes.invalid`, and the image that
would use it is skipped with that reason under the batch rule (`DetectorBoxes.problem`). A file that is not a box
file at all (not JSON, no `bounding_boxes` struct, an entry without `imgName`) is refused in one line.

An image finds its box by its relative path or by file name; a file name that several `.mat` files list (LFPW's
train and test sets both have `image_0001.png`) is settled by the tag's words in the image's path
(`lfpw/testset/image_0001.png`), and stays an error naming both files when the path does not settle it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from cunet.errors import CunetError

__all__ = ["DetectorBoxes", "read_detector_boxes", "MAT_PREFIX"]

MAT_PREFIX = "bounding_boxes_"


@dataclass(frozen=True)
class DetectorBoxes:
    """Detector boxes by key (0-based [x1, y1, x2, y2] float64) and where they came from.

    Attributes:
        boxes: key → box; JSON keys are the file's image paths, `.mat` keys `<tag>/<imgName>`.
        source: the file or folder read.
        files: the files read (one JSON, or the `.mat` files).
        invalid: key → why, for each entry that is not a usable box ("FILE: problem", one line).
    """

    boxes: dict[str, np.ndarray]
    source: Path
    files: tuple[Path, ...]
    invalid: dict[str, str] = field(default_factory=dict)
    _by_name: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for key in [*self.boxes, *self.invalid]:
            self._by_name.setdefault(PurePosixPath(key).name, []).append(key)

    def problem(self, key: str) -> str | None:
        """Why the entry `key` (from `find_key`) cannot be used, or None when it is a box."""
        return self.invalid.get(key)

    def find_key(self, *names: str) -> str | None:
        """The key of the box for an image known by any of `names` (relative path first), or None.

        Raises:
            CunetError: the file name is listed by several `.mat` files and the path does not say which.
        """
        for name in names:
            if name in self.boxes or name in self.invalid:
                return name
        ambiguous: list[str] = []
        for name in names:
            keys = self._by_name.get(PurePosixPath(name).name, [])
            if len(keys) == 1:
                return keys[0]
            parts = {p.lower() for p in PurePosixPath(name).parts[:-1]}
            fitting = [k for k in keys if set(PurePosixPath(k).parts[0].lower().split("_")) <= parts]
            if len(fitting) == 1:
                return fitting[0]
            ambiguous = ambiguous or keys
        if ambiguous:
            raise CunetError(f"{self.source}: {PurePosixPath(ambiguous[0]).name!r} is listed by "
                             f"{', '.join(PurePosixPath(k).parts[0] for k in ambiguous)}; give the image with its "
                             "folders (e.g. lfpw/testset/...) or pass only the matching .mat file")
        return None

    def find(self, *names: str) -> np.ndarray | None:
        """The box of an image known by any of `names`, or None (also when its entry is invalid: `problem`)."""
        key = self.find_key(*names)
        return None if key is None else self.boxes.get(key)


def read_detector_boxes(path: str | os.PathLike) -> DetectorBoxes:
    """Read a box JSON, one iBUG `bounding_boxes_*.mat` file, or a folder of them.

    Raises:
        CunetError: a missing path, a folder without `bounding_boxes_*.mat`, an unreadable, empty, oversized
            (`cunet.limits`) or malformed file. Bad entries are not errors: see `DetectorBoxes.invalid`.
    """
    from cunet.data.formats import parse_box_file

    path = Path(path)
    if path.is_dir():
        files = tuple(sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().startswith(MAT_PREFIX)
                             and p.suffix.lower() == ".mat"))
        if not files:
            raise CunetError(f"{path}: no {MAT_PREFIX}*.mat files in this folder")
    elif path.is_file():
        files = (path,)
    else:
        raise CunetError(f"{path}: no such box file or folder")
    if len(files) == 1 and files[0].suffix.lower() != ".mat":
        boxes, invalid = parse_box_file(files[0])
        return DetectorBoxes(boxes, path, files, {k: f"{files[0]}: {why}" for k, why in invalid.items()})
    boxes = {}
    invalid = {}
    for f in files:
        good, bad = _read_mat(f)
        boxes.update(good)
        invalid.update(bad)
    return DetectorBoxes(boxes, path, files, invalid)


def _read_mat(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    import scipy.io

    from cunet.data.layout import key_text_problem
    from cunet.limits import check_file

    check_file(path)  # scipy reads the whole file: the size limit and "empty file" of every reader
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as e:  # scipy raises many types (IndexError, ValueError, ...) for foreign or damaged files
        first = (str(e).strip().splitlines() or ["no detail"])[0][:120]
        raise CunetError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {first})") from e
    if "bounding_boxes" not in mat:
        names = sorted(k for k in mat if not k.startswith("__"))
        raise CunetError(f"{path}: no 'bounding_boxes' struct array (holds {names or 'nothing'}); expected iBUG's "
                         "300-W bounding_boxes_*.mat")
    stem = path.stem
    tag = stem[len(MAT_PREFIX):] if stem.lower().startswith(MAT_PREFIX) else stem
    out: dict[str, np.ndarray] = {}
    invalid: dict[str, str] = {}
    for i, entry in enumerate(np.atleast_1d(mat["bounding_boxes"]).ravel()):
        name = getattr(entry, "imgName", None)
        det = getattr(entry, "bb_detector", None)
        if not isinstance(name, str) or det is None:
            raise CunetError(f"{path}: entry {i} has no imgName / bb_detector")
        try:
            box = np.asarray(det, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            box = np.zeros(0)
        key = f"{tag}/{name}"
        bad_key = key_text_problem(name)
        if bad_key is not None:
            invalid[key] = f"{path}: imgName {name!r} {bad_key}"
        elif box.shape != (4,) or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
            invalid[key] = f"{path}: bb_detector of {name!r} must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1"
        else:
            out[key] = box - 1.0  # MATLAB's 1-based pixels → cunet's 0-based ones
    return out, invalid

"""Dataset folders → annotated samples: which files form which split and subset, and what each sample is.

Layouts (DESIGN.md):
- Faces, 300-W download: `lfpw/trainset`, `helen/trainset`, `afw` → split "train"; `lfpw/testset`, `helen/testset` →
  "test"/"common"; `ibug` → "test"/"challenging"; `300W/01_Indoor`, `300W/02_Outdoor` (the private test set, also
  accepted as `01_Indoor`, `02_Outdoor` in the root) → "test"/"300w-private". The "full" test set is common +
  challenging, as in the literature; the private set is its own benchmark and is used only when asked for.
- Faces, any other folder: `train/` (searched recursively) and `test/`, where `test/<subset>/` subfolders are subsets;
  "full" is every subset. Each image (.png .jpg .jpeg .bmp) sits beside a `.pts` of the same stem.
- Pose: `train.json` and `valid.json` (MPII JSON) in the root (or in `annot/`), image paths relative to the root
  (or to `images/`, the layout of common PyTorch MPII code).

A bad file never aborts a load: it becomes a `Problem` and its sample is left out, so `cunet data check` can list
every problem at once and training can go ahead on the good files. Only a split with nothing usable is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cunet.data.formats import FormatError, parse_mpii_json, read_box_file, read_pts
from cunet.data.preprocess import Box, box_from_center_scale, box_from_points, box_from_xyxy
from cunet.data.spec import get_spec
from cunet.errors import CunetError

__all__ = [
    "IMAGE_SUFFIXES",
    "SPLITS",
    "Sample",
    "Problem",
    "LoadResult",
    "load_samples",
    "dataset_parts",
    "read_image",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: Accepted split names; "valid" is an alias of "test" (MPII calls its held-out set "valid").
SPLITS = ("train", "test", "valid")

_300W_PARTS: tuple[tuple[str, str, str | None], ...] = (
    ("lfpw/trainset", "train", None),
    ("helen/trainset", "train", None),
    ("afw", "train", None),
    ("lfpw/testset", "test", "common"),
    ("helen/testset", "test", "common"),
    ("ibug", "test", "challenging"),
    ("300W/01_Indoor", "test", "300w-private"),
    ("300W/02_Outdoor", "test", "300w-private"),
    ("01_Indoor", "test", "300w-private"),
    ("02_Outdoor", "test", "300w-private"),
)
_300W_FULL = ("common", "challenging")
_POSE_FILES = {"train": "train.json", "test": "valid.json"}
#: A point more than this fraction of the image size outside the image is flagged by `check_images`.
_FAR_OUTSIDE = 0.5


@dataclass(frozen=True, eq=False)
class Sample:
    """One annotated face or person.

    Attributes:
        image: absolute path of the image file.
        key: stable id relative to the dataset root: faces the image's relative path ("test/common/0001.png"),
            pose f"{image}#{i}" with i the record index in the JSON.
        points: [K, 2] float64, 0-based pixels, NaN where not annotated.
        visible: [K] bool, True where annotated (MPII's `joints_vis` means annotated, not visible).
        box: the crop box: faces from the points (or the detector box file), pose from centre and scale.
        headbox: [4] 0-based x1, y1, x2, y2 head box (pose, when the JSON has one), else None.
        subset: faces: the test subset ("common", "challenging", a `test/` subfolder name); None otherwise.
    """

    image: Path
    key: str
    points: np.ndarray
    visible: np.ndarray
    box: Box
    headbox: np.ndarray | None = None
    subset: str | None = None


@dataclass
class Problem:
    """A file (or a record of one) that cannot be used, and why, in one line."""

    file: str
    problem: str


@dataclass
class LoadResult:
    """The usable samples of a split and the problems of every file that was left out."""

    samples: list[Sample] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as BGR uint8 [H, W, 3] (grayscale and 16-bit images are converted, alpha is dropped).

    Raises:
        CunetError: when the file is missing, unreadable, a truncated PNG/JPEG, or declares more pixels than
            `cunet.data.image_limit.max_pixels()` (checked before decoding).
    """
    import cv2

    from cunet.data.image_limit import check_pixel_limit

    path = Path(path)
    if not path.is_file():
        raise CunetError(f"{path}: no such image")
    check_pixel_limit(path)
    # The end-marker check comes first: it names the real problem, and libpng would print its own "libpng error"
    # line on the process's stderr for a truncated file before cv2.imread returns None. OpenCV's own log lines for
    # a broken file ("IHDR chunk shall be first") are silenced too: the CunetError below is the one line.
    truncated = _truncation(path)
    if truncated:
        raise CunetError(f"{path}: {truncated}")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as e:  # OpenCV's own limits (e.g. CV_IO_MAX_IMAGE_PIXELS below a raised cunet limit)
        raise CunetError(f"{path}: OpenCV cannot decode it ({str(e).strip().splitlines()[-1]})") from None
    finally:
        cv2.utils.logging.setLogLevel(level)
    if image is None:
        raise CunetError(f"{path}: unreadable or unsupported image")
    return image


def _truncation(path: Path) -> str | None:
    # OpenCV decodes a truncated JPEG with only a warning (the missing rows come out grey), so check the end marker.
    with open(path, "rb") as f:
        head = f.read(16)
        f.seek(max(0, path.stat().st_size - 64))
        tail = f.read().rstrip(b"\0\r\n ")
    if head.startswith(b"\xff\xd8") and not tail.endswith(b"\xff\xd9"):
        return "truncated JPEG (no end-of-image marker)"
    # A PNG whose IHDR header is intact but whose IEND never came: a writer that stopped (garbage is "unreadable").
    if head.startswith(b"\x89PNG") and head[12:16] == b"IHDR" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    return None


def _normalise_split(split: str) -> str:
    if split not in SPLITS:
        raise CunetError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    return "test" if split == "valid" else split


# -------------------------------------------------------------------------------------------------------- faces
def _is_300w(root: Path) -> bool:
    return any((root / d).is_dir() for d, _, _ in _300W_PARTS)


def _generic_test_subsets(root: Path) -> list[str]:
    test = root / "test"
    return sorted(p.name for p in test.iterdir() if p.is_dir() and not p.name.startswith(".")) if test.is_dir() else []


def _face_sources(root: Path, split: str, subset: str | None) -> list[tuple[Path, str | None, bool]]:
    """(folder, subset, recursive) triples holding the split's files."""
    full = subset in (None, "full")
    if _is_300w(root):
        parts = [(root / d, s) for d, sp, s in _300W_PARTS if sp == split and (root / d).is_dir()]
        if split == "test":
            available = sorted({s for _, s in parts if s})
            wanted = _300W_FULL if full else (subset,)
            if not full and subset not in available:
                raise CunetError(f"{root}: no 300-W test subset {subset!r} (found: {', '.join(available) or 'none'})")
            parts = [(d, s) for d, s in parts if s in wanted]
        return [(d, s, False) for d, s in parts]
    folder = root / split
    if split == "train" or full:
        return [(folder, None, True)] if folder.is_dir() else []
    available = _generic_test_subsets(root)
    if subset not in available:
        raise CunetError(f"{root}: no test subset folder test/{subset} (found: {', '.join(available) or 'none'})")
    return [(folder / subset, subset, True)]


def _face_samples(
    root: Path, split: str, subset: str | None, boxes: dict[str, np.ndarray] | None, check_images: bool
) -> LoadResult:
    sources = _face_sources(root, split, subset)
    if not sources:
        raise CunetError(
            f"{root}: no {split} folder (expected {split}/ or the 300-W layout: lfpw/, helen/, afw/, ibug/)"
        )
    k = get_spec("face").num_landmarks
    result = LoadResult()
    for folder, sub, recursive in sources:
        files = (folder.rglob("*") if recursive else folder.iterdir()) if folder.is_dir() else iter(())
        stems: dict[Path, dict[str, list[Path]]] = {}
        for f in files:
            suffix = f.suffix.lower()
            if f.name.startswith(".") or not f.is_file() or (suffix != ".pts" and suffix not in IMAGE_SUFFIXES):
                continue
            kind = "pts" if suffix == ".pts" else "image"
            stems.setdefault(f.with_suffix(""), {"pts": [], "image": []})[kind].append(f)
        for stem in sorted(stems):
            found = stems[stem]
            if not found["pts"]:
                result.problems.append(Problem(str(found["image"][0]), "no .pts annotation beside the image"))
                continue
            pts_file = found["pts"][0]
            if not found["image"]:
                result.problems.append(Problem(str(pts_file), f"no image ({' '.join(IMAGE_SUFFIXES)}) beside it"))
                continue
            if len(found["image"]) > 1 or len(found["pts"]) > 1:
                names = ", ".join(sorted(p.name for p in found["image"] + found["pts"]))
                result.problems.append(Problem(str(pts_file), f"ambiguous: several files share the stem ({names})"))
                continue
            sub_here = sub
            if sub is None and split == "test":  # the full generic test/ folder: a subfolder names the subset
                rel_to_test = found["image"][0].relative_to(folder).parts
                sub_here = rel_to_test[0] if len(rel_to_test) > 1 else None
            sample = _face_sample(root, found["image"][0], pts_file, sub_here, k, boxes, check_images, result)
            if sample is not None:
                result.samples.append(sample)
    result.samples.sort(key=lambda s: s.key)
    return result


def _face_sample(
    root: Path,
    image: Path,
    pts_file: Path,
    subset: str | None,
    k: int,
    boxes: dict[str, np.ndarray] | None,
    check_images: bool,
    result: LoadResult,
) -> Sample | None:
    try:
        points = read_pts(pts_file)
    except FormatError as e:
        result.problems.append(Problem(e.file, e.problem))
        return None
    if len(points) != k:
        result.problems.append(Problem(str(pts_file), f"{len(points)} points, the face task needs {k}"))
        return None
    key = image.relative_to(root).as_posix()
    if boxes is not None:
        if key not in boxes:
            result.problems.append(Problem(str(image), "no detector box for this image in the box file"))
            return None
        box = box_from_xyxy(*(float(v) for v in boxes[key]))
    else:
        box = box_from_points(points)
    if check_images and not _image_ok(image, pts_file, points, result):
        return None
    return Sample(image.resolve(), key, points, np.ones(k, dtype=bool), box, None, subset)


def _image_ok(image: Path, annotation: Path | str, points: np.ndarray, result: LoadResult, where: str = "") -> bool:
    try:
        h, w = read_image(image).shape[:2]
    except CunetError as e:
        result.problems.append(Problem(str(image), str(e).removeprefix(f"{image}: ")))
        return False
    size = np.array([w, h], dtype=np.float64)
    finite = np.isfinite(points).all(axis=1)
    far = finite & ((points < -_FAR_OUTSIDE * size) | (points > (1 + _FAR_OUTSIDE) * size - 1)).any(axis=1)
    if far.any():
        i = int(np.flatnonzero(far)[0])
        x, y = points[i]
        result.problems.append(
            Problem(
                str(annotation),
                f"{where}point {i} at ({x + 1:.1f}, {y + 1:.1f}) (1-based) is far outside the {w}x{h} image"
                + (f" ({int(far.sum())} such points)" if far.sum() > 1 else ""),
            )
        )
        return False
    return True


# --------------------------------------------------------------------------------------------------------- pose
def _pose_json(root: Path, split: str) -> Path | None:
    name = _POSE_FILES[split]
    for candidate in (root / name, root / "annot" / name):
        if candidate.is_file():
            return candidate
    return None


def _pose_samples(root: Path, split: str, check_images: bool) -> LoadResult:
    path = _pose_json(root, split)
    if path is None:
        raise CunetError(f"{root}: no {_POSE_FILES[split]} (expected in the folder or in annot/)")
    result = LoadResult()
    try:
        records = parse_mpii_json(path, get_spec("pose").num_landmarks)
    except FormatError as e:
        result.problems.append(Problem(e.file, e.problem))
        return result
    for i, rec in enumerate(records):
        if isinstance(rec, FormatError):
            result.problems.append(Problem(rec.file, rec.problem))
            continue
        image = next((p for p in (root / rec.image, root / "images" / rec.image) if p.is_file()), None)
        if image is None:
            result.problems.append(Problem(str(path), f"record {i}: image {rec.image!r} does not exist"))
            continue
        if check_images and not _image_ok(image, path, rec.joints, result, where=f"record {i}: "):
            continue
        box = box_from_center_scale((float(rec.center[0]), float(rec.center[1])), rec.scale)
        result.samples.append(
            Sample(image.resolve(), f"{rec.image}#{i}", rec.joints, rec.visible, box, rec.headbox, None)
        )
    return result


# ---------------------------------------------------------------------------------------------------------- API
def load_samples(
    root: str | os.PathLike,
    task: str,
    split: str = "train",
    subset: str | None = None,
    boxes: str | os.PathLike | None = None,
    check_images: bool = False,
    *,
    allow_empty: bool = False,
) -> LoadResult:
    """Load one split of a dataset folder (layouts in the module docstring).

    Args:
        root: the dataset folder.
        task: "face" or "pose".
        split: "train", "test" or "valid" (an alias of "test"; pose reads `valid.json` for both).
        subset: faces, split "test" only: a subset name ("common", "challenging", "300w-private" or a `test/`
            subfolder); None or "full" is the full test set.
        boxes: faces only: a detector box file (`read_box_file`) to crop from instead of the landmark box.
        check_images: also decode every image (unreadable or truncated → problem) and flag points lying more
            than half the image size outside it. Without it only the image's existence is checked.
        allow_empty: return an empty result instead of raising when the split has no usable sample.

    Returns:
        The samples (faces sorted by key, poses in file order) and the problems of every file left out.

    Raises:
        CunetError: unknown task/split/subset, a missing folder or annotation file, an unreadable box file, or
            (unless `allow_empty`) a split without a single usable sample.
    """
    root = Path(root)
    spec = get_spec(task)
    split = _normalise_split(split)
    if split == "train" and subset not in (None, "full"):
        raise CunetError(f"subsets apply to the test split only (got split 'train', subset {subset!r})")
    if not root.is_dir():
        raise CunetError(f"{root}: dataset folder does not exist")
    if spec.task == "face":
        box_map = read_box_file(boxes) if boxes is not None else None
        result = _face_samples(root, split, subset, box_map, check_images)
    else:
        if boxes is not None:
            raise CunetError(f"{boxes}: detector box files apply to faces only; poses are cropped from centre/scale")
        if subset not in (None, "full"):
            raise CunetError(f"{root}: pose datasets have no subsets (got {subset!r})")
        result = _pose_samples(root, split, check_images)
    if not result.samples and not allow_empty:
        first = result.problems[0] if result.problems else None
        # Name what is wrong with the first bad file, not only which file: "not valid JSON" is the fix-it hint.
        detail = f" ({len(result.problems)} bad file(s), first: {first.file}: {first.problem})" if first else ""
        raise CunetError(f"{root}: no usable {task} samples in split {split!r}{detail}")
    return result


def dataset_parts(root: str | os.PathLike, task: str) -> list[tuple[str, str | None]]:
    """The (split, subset) parts that together hold every annotated file of the folder, each file in one part.

    Faces in the 300-W layout give one part per test subset found (so the private set is included); other
    folders give ("train", None) and ("test", None). Pose gives the splits whose JSON exists.

    Raises:
        CunetError: unknown task, missing folder, or a folder with no recognisable split at all.
    """
    root = Path(root)
    spec = get_spec(task)
    if not root.is_dir():
        raise CunetError(f"{root}: dataset folder does not exist")
    if spec.task == "pose":
        parts: list[tuple[str, str | None]] = [(s, None) for s in _POSE_FILES if _pose_json(root, s) is not None]
        layout = "train.json / valid.json"
    elif _is_300w(root):
        found = [s for d, sp, s in _300W_PARTS if sp == "test" and (root / d).is_dir()]
        subsets = list(dict.fromkeys(found))  # common, challenging, 300w-private: the order of the literature
        train = any((root / d).is_dir() for d, sp, _ in _300W_PARTS if sp == "train")
        parts = ([("train", None)] if train else []) + [("test", s) for s in subsets]
        layout = "the 300-W layout"
    else:
        parts = [(s, None) for s in ("train", "test") if (root / s).is_dir()]
        layout = "train/ and test/ folders or the 300-W layout"
    if not parts:
        raise CunetError(f"{root}: not a {task} dataset (expected {layout})")
    return parts

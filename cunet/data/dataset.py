"""Dataset folders → annotated samples: which files form which split and subset, and what each sample is.

The layouts and their part names come from `cunet.data.layout.detect_layout`, the one detector every command uses:
the 300-W download (test subsets "common", "challenging" = "full", and "300w-private/indoor", "/outdoor" =
"300w-private"), `train/` + `test/<subset>/` folders, a flat folder of images with `.pts` files (one split), a
COCO-keypoint face JSON (one split) and, for pose, MPII's `train.json` / `valid.json` (image paths relative to the
root or to `images/`), with head boxes from the JSON or from a `gt_valid.mat` (`cunet.data.mpii_mat`).
Each face image (any suffix of `IMAGE_SUFFIXES`, any case) sits beside a `.pts` of the same stem.

A bad file never aborts a load: it becomes a `Problem` and its sample is left out, so `cunet data check` can list
every problem at once and training can go ahead on the good files. Only a split with nothing usable is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cunet.data.formats import FormatError, parse_mpii_json, read_box_file, read_coco_keypoints, read_pts
from cunet.data.layout import (
    FULL,
    FULL_300W,
    IMAGE_SUFFIXES,
    ONE_SPLIT,
    PARTS_300W,
    PRIVATE,
    Layout,
    detect_layout,
    find_key_file,
    key_problem,
    pose_json,
)
from cunet.data.preprocess import Box, box_from_center_scale, box_from_points, box_from_xyxy, box_problem
from cunet.data.spec import get_spec
from cunet.errors import CunetError
from cunet.limits import FileProblem

__all__ = [
    "IMAGE_SUFFIXES",
    "SPLITS",
    "Sample",
    "Problem",
    "LoadResult",
    "load_samples",
    "dataset_parts",
    "read_image",
    "pose_json",
]

#: Accepted split names; "valid" is an alias of "test" (MPII calls its held-out set "valid").
SPLITS = ("train", "test", "valid")
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
        headbox: [4] 0-based x1, y1, x2, y2 head box (pose, from the JSON or the `gt_valid.mat`), else None.
        subset: faces: the test subset ("common", "challenging", "300w-private/indoor", a `test/` subfolder
            name); None otherwise.
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
        CunetError: when the file is missing, empty, unreadable, a truncated PNG/JPEG, or declares more pixels than
            `cunet.data.image_limit.max_pixels()` (checked before decoding).
    """
    import cv2

    from cunet.data.image_limit import check_pixel_limit
    from cunet.limits import refuse_empty

    path = Path(path)
    if not path.is_file():
        raise CunetError(f"{path}: no such image")
    refuse_empty(path)
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
def _private_or(subset: str) -> tuple[str, ...]:
    return (f"{PRIVATE}/indoor", f"{PRIVATE}/outdoor") if subset == PRIVATE else (subset,)


def _face_sources(layout: Layout, split: str, subset: str | None) -> list[tuple[Path, str | None, bool]]:
    """(folder, subset, recursive) triples holding the split's files."""
    root = layout.root
    if layout.kind == "flat":
        return [(root, None, False)]
    if layout.kind == "300w":
        parts = [(root / d, s) for d, sp, s in PARTS_300W if sp == split and (root / d).is_dir()]
        if split == "test":
            chosen = layout.default_subset() if subset is None else subset
            wanted = FULL_300W if chosen == FULL else _private_or(chosen)
            available = layout.test_subsets()
            if not any(s in wanted for s in available):
                names = ", ".join(dict.fromkeys([*available, *([PRIVATE] if any(
                    s.startswith(PRIVATE) for s in available) else [])])) or "none"
                raise CunetError(f"{root}: no 300-W test subset {chosen!r} (found: {names})")
            parts = [(d, s) for d, s in parts if s in wanted]
        return [(d, s, False) for d, s in parts]
    folder = root / split
    if split == "train" or subset in (None, FULL):
        return [(folder, None, True)] if folder.is_dir() else []
    available = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if subset not in available:
        raise CunetError(f"{root}: no test subset folder test/{subset} (found: {', '.join(available) or 'none'})")
    return [(folder / subset, subset, True)]


def _face_samples(
    layout: Layout, split: str, subset: str | None, boxes: dict[str, np.ndarray] | None, check_images: bool
) -> LoadResult:
    root = layout.root
    sources = _face_sources(layout, split, subset)
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
            escape = key_problem(root, f.relative_to(root).as_posix())
            if escape is not None:  # a symlink out of the dataset: neither read nor a key to write predictions at
                result.problems.append(Problem(str(f), escape))
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
            if sub is None and split == "test" and layout.kind == "splits":  # test/<subfolder> names the subset
                rel_to_test = found["image"][0].relative_to(folder).parts
                sub_here = rel_to_test[0] if len(rel_to_test) > 1 else None
            try:
                points = read_pts(pts_file)
            except FormatError as e:
                result.problems.append(Problem(e.file, e.problem))
                continue
            key = found["image"][0].relative_to(root).as_posix()
            sample = _face_sample(found["image"][0], key, points, np.ones(len(points), dtype=bool), pts_file,
                                  sub_here, k, boxes, check_images, result)
            if sample is not None:
                result.samples.append(sample)
    result.samples.sort(key=lambda s: s.key)
    return result


def _coco_samples(layout: Layout, boxes: dict[str, np.ndarray] | None, check_images: bool) -> LoadResult:
    """A COCO-keypoint face JSON: one sample per annotation, images beside the file, in `images/` beside it, or in
    `../images/` (MMPose keeps `annotations/face_landmarks_300w_*.json` beside `images/`)."""
    path, folder = layout.root, layout.root.parent
    k = get_spec("face").num_landmarks
    result = LoadResult()
    try:
        records = read_coco_keypoints(path)
    except FormatError as e:
        result.problems.append(Problem(e.file, e.problem))
        return result
    seen: set[str] = set()
    for i, rec in enumerate(records):
        key = Path(rec.image).as_posix()
        # beside the file, in images/ there, or MMPose's layout: annotations/*.json beside images/
        try:
            image = find_key_file((folder, folder / "images", folder.parent / "images"), key, path,
                                  f"annotation {i}: file_name")
        except FileProblem as e:
            result.problems.append(Problem(e.file, e.problem))
            continue
        if key in seen:
            result.problems.append(Problem(str(path), f"annotation {i}: a second face for {key!r}; "
                                                      "cunet scores one face per image"))
            continue
        seen.add(key)
        if image is None:
            result.problems.append(Problem(str(path), f"annotation {i}: image {key!r} is neither beside the file "
                                                      "nor in images/ (there or beside its folder)"))
            continue
        sample = _face_sample(image, key, rec.points, rec.visible, f"{path} (annotation {i})", None, k, boxes,
                              check_images, result)
        if sample is not None:
            result.samples.append(sample)
    result.samples.sort(key=lambda s: s.key)
    return result


def _face_sample(
    image: Path,
    key: str,
    points: np.ndarray,
    visible: np.ndarray,
    annotation: Path | str,
    subset: str | None,
    k: int,
    boxes: dict[str, np.ndarray] | None,
    check_images: bool,
    result: LoadResult,
) -> Sample | None:
    if len(points) != k:
        result.problems.append(Problem(str(annotation), f"{len(points)} points, the face task needs {k}"))
        return None
    if not visible.any():
        result.problems.append(Problem(str(annotation), "no annotated point"))
        return None
    if boxes is not None:
        if key not in boxes:
            result.problems.append(Problem(str(image), "no detector box for this image in the box file"))
            return None
        box = box_from_xyxy(*(float(v) for v in boxes[key]))
    else:
        box = box_from_points(points[visible])
    if check_images and not _image_ok(image, annotation, points, box, result):
        return None
    return Sample(image.resolve(), key, points, visible, box, None, subset)


def _image_ok(image: Path, annotation: Path | str, points: np.ndarray, box: Box, result: LoadResult,
              where: str = "") -> bool:
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
    bad_box = box_problem(box, w, h)  # after the points: a box far outside comes from points far outside
    if bad_box is not None:
        result.problems.append(Problem(str(annotation), f"{where}{bad_box}"))
        return False
    return True


# --------------------------------------------------------------------------------------------------------- pose
def _pose_samples(layout: Layout, split: str, check_images: bool, headboxes: Path | None) -> LoadResult:
    from cunet.data.layout import POSE_FILES
    from cunet.data.mpii_mat import attach_headboxes, find_headbox_file, read_gt_mat

    root = layout.root
    if layout.kind == "mpii-json":  # the file itself, its images beside it or in images/ there
        path, images_in = root, root.parent
        split = "test" if layout.parts[0][0] in ("test", ONE_SPLIT) else "train"  # where gt_valid.mat may apply
    else:
        path, images_in = pose_json(root, _normalise_split(split)), root
        if path is None:
            raise CunetError(f"{root}: no {POSE_FILES[split]} (expected in the folder or in annot/)")
    result = LoadResult()
    try:
        records = parse_mpii_json(path, get_spec("pose").num_landmarks)
    except FormatError as e:
        result.problems.append(Problem(e.file, e.problem))
        return result
    mat_file = headboxes if headboxes is not None else (find_headbox_file(path) if split == "test" else None)
    mat_boxes = None
    if mat_file is not None:  # a wrong .mat is refused as a whole: its boxes would score every record wrongly
        joints = [None if isinstance(r, FormatError) else r.joints for r in records]
        mat_boxes = attach_headboxes(joints, read_gt_mat(mat_file), path, Path(mat_file))
    for i, rec in enumerate(records):
        if isinstance(rec, FormatError):
            result.problems.append(Problem(rec.file, rec.problem))
            continue
        try:
            image = find_key_file((images_in, images_in / "images"), rec.image, path, f"record {i}: image")
        except FileProblem as e:
            result.problems.append(Problem(e.file, e.problem))
            continue
        if image is None:
            result.problems.append(Problem(str(path), f"record {i}: image {rec.image!r} does not exist"))
            continue
        box = box_from_center_scale((float(rec.center[0]), float(rec.center[1])), rec.scale)
        if check_images and not _image_ok(image, path, rec.joints, box, result, where=f"record {i}: "):
            continue
        headbox = mat_boxes[i] if mat_boxes is not None else rec.headbox
        result.samples.append(Sample(image.resolve(), f"{rec.image}#{i}", rec.joints, rec.visible, box, headbox, None))
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
    headboxes: str | os.PathLike | None = None,
    layout: Layout | None = None,
) -> LoadResult:
    """Load one split of a dataset (layouts in `cunet.data.layout`).

    Args:
        root: the dataset folder, or (faces) a COCO-keypoint JSON.
        task: "face" or "pose".
        split: "train", "test" or "valid" (an alias of "test"; pose reads `valid.json` for both). A one-split
            dataset (flat folder, COCO file) serves every split.
        subset: faces, split "test" only: a subset name ("common", "challenging", "300w-private",
            "300w-private/indoor", a `test/` subfolder); "full" is common + challenging (300-W) or every subset;
            None is the layout's default test set (`Layout.default_subset`).
        boxes: faces only: a detector box file (`read_box_file`) to crop from instead of the landmark box.
        check_images: also decode every image (unreadable or truncated → problem), flag points lying more
            than half the image size outside it and crop boxes mostly outside it (`preprocess.box_problem`).
            Without it only the image's existence is checked.
        allow_empty: return an empty result instead of raising when the split has no usable sample.
        headboxes: pose only: a `gt_valid.mat` whose head boxes replace the JSON's (default: `gt_valid.mat`
            beside `valid.json`, for the test split).
        layout: the already detected layout of `root` (detected here when None).

    Returns:
        The samples (faces sorted by key, poses in file order) and the problems of every file left out.

    Raises:
        CunetError: unknown task/split/subset, a missing folder or annotation file, an unreadable box file, a
            head-box file that does not match, or (unless `allow_empty`) a split without a single usable sample.
    """
    root = Path(root)
    spec = get_spec(task)
    layout = layout or detect_layout(root, spec.task)
    split = split if layout.one_split and split == ONE_SPLIT else _normalise_split(split)
    if split == "train" and subset not in (None, "full"):
        raise CunetError(f"subsets apply to the test split only (got split 'train', subset {subset!r})")
    if spec.task == "face":
        if headboxes is not None:
            raise CunetError(f"{headboxes}: head boxes apply to pose (PCKh) only")
        if layout.one_split and subset not in (None, "full"):
            raise CunetError(f"{root}: a one-split dataset has no test subsets (got {subset!r})")
        box_map = read_box_file(boxes) if boxes is not None else None
        if layout.kind == "coco":
            result = _coco_samples(layout, box_map, check_images)
        else:
            result = _face_samples(layout, split, subset, box_map, check_images)
    else:
        if boxes is not None:
            raise CunetError(f"{boxes}: detector box files apply to faces only; poses are cropped from centre/scale")
        if subset not in (None, "full"):
            raise CunetError(f"{root}: pose datasets have no subsets (got {subset!r})")
        result = _pose_samples(layout, split, check_images, Path(headboxes) if headboxes is not None else None)
    if not result.samples and not allow_empty:
        first = result.problems[0] if result.problems else None
        # Name what is wrong with the first bad file, not only which file: "not valid JSON" is the fix-it hint.
        detail = f" ({len(result.problems)} bad file(s), first: {first.file}: {first.problem})" if first else ""
        raise CunetError(f"{root}: no usable {task} samples in split {split!r}{detail}")
    return result


def dataset_parts(root: str | os.PathLike, task: str) -> list[tuple[str, str | None]]:
    """The (split, subset) parts that together hold every annotated file of the dataset, each file in one part.

    Faces in the 300-W layout give one part per test subset found ("common", "challenging",
    "300w-private/indoor", "300w-private/outdoor"); train/ + test/ folders give ("train", None) and ("test", None);
    a one-split dataset gives its one part ("all", or the COCO file's split). Pose gives the splits whose JSON
    exists.

    Raises:
        CunetError: unknown task, missing folder, or a path that is not a dataset of the task.
    """
    spec = get_spec(task)
    return list(detect_layout(root, spec.task).parts)

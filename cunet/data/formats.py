"""Readers and writers of the annotation formats cunet meets: 300-W `.pts`, the MPII list-of-people JSON, the
COCO-keypoint face JSON used by MMPose, and detector box files.

Every reader is strict and every problem is a `FormatError` (a `CunetError`) whose one-line message names the
file (and the record, for multi-record files), so `cunet data check` can list bad files and a training run never
silently learns from a misread annotation. Files are read whole under the size limit of `cunet.limits` (a 0-byte
file is "empty file"), and keys naming other files (box-file keys) may not be absolute or hold `..`. Inside cunet coordinates are 0-based pixels with NaN for missing points;
the conversions to and from each file's convention happen here and nowhere else:

- `.pts`: 1-based (the iBUG files are MATLAB coordinates).
- MPII JSON: `joints`, `center` and `headbox` are all 1-based (MPII's annolist is MATLAB 1-based; the common JSON
  copies `objpos` into `center` unchanged, and common loaders subtract 1 from the centre as from the joints).
  Missing joints are `[-1, -1]` with `joints_vis` 0.
- COCO keypoints and box files: 0-based (COCO convention).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cunet.errors import CunetError
from cunet.data.layout import key_text_problem
from cunet.io import write_json, write_text
from cunet.limits import FileProblem, read_limited_text

__all__ = [
    "FormatError",
    "PoseRecord",
    "KeypointRecord",
    "read_pts",
    "write_pts",
    "read_mpii_json",
    "parse_mpii_json",
    "write_mpii_json",
    "read_coco_keypoints",
    "read_box_file",
    "parse_box_file",
    "MPII_NUM_JOINTS",
]

#: Joints per person in the MPII JSON.
MPII_NUM_JOINTS = 16


class FormatError(FileProblem):
    """A malformed annotation file: `file` names it, `problem` says what is wrong (one line each)."""


@dataclass(frozen=True)
class PoseRecord:
    """One annotated person of the MPII JSON, in cunet's 0-based coordinates.

    Attributes:
        image: image path as written in the file (relative to the dataset root).
        center: [2] person centre (x, y), 0-based.
        scale: person height / 200 px.
        joints: [16, 2] float64, NaN where not annotated.
        visible: [16] bool, True where annotated (MPII's `joints_vis` means annotated, not visible).
        headbox: [4] head box x1, y1, x2, y2 (0-based), or None when the file has none.
    """

    image: str
    center: np.ndarray
    scale: float
    joints: np.ndarray
    visible: np.ndarray
    headbox: np.ndarray | None = None


@dataclass(frozen=True)
class KeypointRecord:
    """One annotation of a COCO-keypoint JSON, in 0-based coordinates.

    Attributes:
        image: the image's `file_name`.
        image_id: the COCO image id.
        points: [K, 2] float64, NaN where the visibility flag is 0.
        visible: [K] bool, True where the visibility flag is 1 or 2 (labelled).
        box: [4] the annotation's `bbox` converted from x, y, w, h to x1, y1, x2, y2.
        image_size: (width, height) from the `images` entry, or None when it gives none.
    """

    image: str
    image_id: int
    points: np.ndarray
    visible: np.ndarray
    box: np.ndarray
    image_size: tuple[int, int] | None


def _number(value: Any) -> float | None:
    """A finite float from a JSON number, or None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # a JSON integer beyond float range (e.g. 400 digits) is no coordinate either
        return None
    return value if math.isfinite(value) else None


def _is_id(value: Any) -> bool:
    # COCO ids are integers (some tools write strings); a list or object id would crash the lookup table.
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _numbers(value: Any, n: int) -> np.ndarray | None:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        return None
    out = [_number(v) for v in value]
    return None if any(v is None for v in out) else np.array(out, dtype=np.float64)


def _read_text(path: Path) -> str:
    # One reader for every annotation file: missing, empty and oversized files (`cunet.limits`) read the same.
    try:
        return read_limited_text(path)
    except FileProblem as e:
        raise FormatError(e.file, e.problem) from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise FormatError(path, f"not valid JSON (line {e.lineno}: {e.msg})") from None


# --------------------------------------------------------------------------------------------------------- .pts
def read_pts(path: str | os.PathLike) -> np.ndarray:
    """Read a 300-W `.pts` file.

    Tolerates what real files contain: varying whitespace (`n_points:  68`), CRLF line ends, a UTF-8 BOM, blank
    lines, no newline after `}`. Rejects a missing `n_points` header or braces, lines that are not two numbers,
    NaN/inf, text after `}` and a point count that differs from `n_points`.

    Args:
        path: the `.pts` file.

    Returns:
        [K, 2] float64 points, 0-based (the file's 1-based coordinates minus 1).

    Raises:
        FormatError: naming the file and the problem.
    """
    path = Path(path)
    lines = [(i, line.strip()) for i, line in enumerate(_read_text(path).splitlines(), 1)]
    lines = [(i, line) for i, line in lines if line]
    n_points: int | None = None
    body = 0
    for body, (lineno, line) in enumerate(lines):
        if line == "{":
            break
        key, sep, value = line.partition(":")
        if not sep:
            raise FormatError(path, f"line {lineno}: expected 'key: value' or '{{', got {line[:40]!r}")
        if key.strip() == "n_points":
            try:
                n_points = int(value.strip())
            except ValueError:
                raise FormatError(path, f"line {lineno}: n_points is not an integer: {value.strip()[:20]!r}") from None
            if n_points < 1:
                raise FormatError(path, f"line {lineno}: n_points must be positive, got {n_points}")
    else:
        raise FormatError(path, "no '{' opening the point list")
    if n_points is None:
        raise FormatError(path, "no 'n_points:' header before '{'")
    points: list[tuple[float, float]] = []
    for lineno, line in lines[body + 1 :]:
        if line == "}":
            break
        fields = line.split()
        if len(fields) != 2:
            raise FormatError(path, f"line {lineno}: expected 'x y', got {line[:40]!r}")
        try:
            x, y = float(fields[0]), float(fields[1])
        except ValueError:
            raise FormatError(path, f"line {lineno}: not a number in {line[:40]!r}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise FormatError(path, f"line {lineno}: non-finite coordinate {line[:40]!r}")
        points.append((x, y))
    else:
        raise FormatError(path, "no '}' closing the point list")
    trailing = lines[body + 1 + len(points) + 1 :]
    if trailing:
        raise FormatError(path, f"line {trailing[0][0]}: text after the closing '}}'")
    if len(points) != n_points:
        raise FormatError(path, f"n_points is {n_points} but the file lists {len(points)} points")
    return np.array(points, dtype=np.float64) - 1.0


def _fmt(v: float) -> str:
    return np.format_float_positional(float(v), unique=True, trim="-")


def write_pts(path: str | os.PathLike, points: np.ndarray) -> None:
    """Atomically write a 300-W `.pts` file (`version: 1`, `n_points: K`, `{`, 1-based `x y` lines, `}`).

    Args:
        path: destination `.pts` file (parents are created).
        points: [K, 2] 0-based points; all must be finite (`.pts` cannot express a missing point).

    Raises:
        FormatError: for a wrong shape or a non-finite point.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise FormatError(path, f"points must be [K, 2] with K >= 1, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise FormatError(path, ".pts files cannot store missing (NaN) or infinite points")
    lines = [f"{_fmt(x + 1.0)} {_fmt(y + 1.0)}" for x, y in pts]
    write_text(path, "version: 1\nn_points: {}\n{{\n{}\n}}\n".format(len(pts), "\n".join(lines)))


# --------------------------------------------------------------------------------------------------------- MPII
_MPII_KEYS = ("image", "center", "scale", "joints", "joints_vis")


def _mpii_record(path: Path, index: int, obj: Any, num_joints: int) -> PoseRecord:
    where = f"record {index}"
    if not isinstance(obj, dict):
        raise FormatError(path, f"{where}: expected an object, got {type(obj).__name__}")
    missing = [k for k in _MPII_KEYS if k not in obj]
    if missing:
        raise FormatError(path, f"{where}: missing key(s) {', '.join(missing)}")
    image = obj["image"]
    if not isinstance(image, str) or not image.strip():
        raise FormatError(path, f"{where}: 'image' must be a non-empty string")
    center = _numbers(obj["center"], 2)
    if center is None:
        raise FormatError(path, f"{where}: 'center' must be two finite numbers")
    scale = _number(obj["scale"])
    if scale is None or scale <= 0:
        raise FormatError(path, f"{where}: 'scale' must be a positive number, got {obj['scale']!r}")
    joints_in, vis_in = obj["joints"], obj["joints_vis"]
    if not isinstance(joints_in, list) or len(joints_in) != num_joints:
        count = len(joints_in) if isinstance(joints_in, list) else type(joints_in).__name__
        raise FormatError(path, f"{where}: expected {num_joints} joints, got {count}")
    if not isinstance(vis_in, list) or len(vis_in) != num_joints:
        count = len(vis_in) if isinstance(vis_in, list) else type(vis_in).__name__
        raise FormatError(path, f"{where}: expected {num_joints} joints_vis flags, got {count}")
    joints = np.full((num_joints, 2), np.nan)
    visible = np.zeros(num_joints, dtype=bool)
    for j, (xy, v) in enumerate(zip(joints_in, vis_in)):
        pt = _numbers(xy, 2)
        if pt is None:
            raise FormatError(path, f"{where}: joint {j} must be two finite numbers, got {xy!r}"[:200])
        if _number(v) not in (0.0, 1.0):
            raise FormatError(path, f"{where}: joints_vis[{j}] must be 0 or 1, got {v!r}")
        # [-1, -1] is the file's "not annotated", whatever its flag says.
        if v and not (pt[0] == -1.0 and pt[1] == -1.0):
            joints[j] = pt - 1.0
            visible[j] = True
    headbox = None
    if obj.get("headbox") is not None:
        headbox = _numbers(obj["headbox"], 4)
        if headbox is None or headbox[2] <= headbox[0] or headbox[3] <= headbox[1]:
            raise FormatError(path, f"{where}: 'headbox' must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1")
        headbox = headbox - 1.0
    return PoseRecord(image.strip(), center - 1.0, scale, joints, visible, headbox)


def parse_mpii_json(path: str | os.PathLike, num_joints: int = MPII_NUM_JOINTS) -> list[PoseRecord | FormatError]:
    """Read an MPII JSON without stopping at a bad record: one entry per record, a `FormatError` for each bad one.

    Args:
        path: the JSON file (a list of person records).
        num_joints: joints expected per record.

    Returns:
        Per record, its `PoseRecord` or the `FormatError` (naming the file and record index) describing it.

    Raises:
        FormatError: when the file as a whole is unreadable, not JSON or not a list.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, list):
        raise FormatError(path, f"expected a JSON list of person records, got {type(data).__name__}")
    out: list[PoseRecord | FormatError] = []
    for i, obj in enumerate(data):
        try:
            out.append(_mpii_record(path, i, obj, num_joints))
        except FormatError as e:
            out.append(e)
    return out


def read_mpii_json(path: str | os.PathLike, num_joints: int = MPII_NUM_JOINTS) -> list[PoseRecord]:
    """Read an MPII JSON strictly (see the module docstring for its conventions).

    Args:
        path: the JSON file: a list of `{"image", "center", "scale", "joints", "joints_vis"[, "headbox"]}`.
        num_joints: joints expected per record.

    Returns:
        The records in file order, 0-based.

    Raises:
        FormatError: for the first malformed record, naming the file and record index.
    """
    records = parse_mpii_json(path, num_joints)
    for r in records:
        if isinstance(r, FormatError):
            raise r
    return records  # type: ignore[return-value]


def write_mpii_json(path: str | os.PathLike, records: list[PoseRecord]) -> None:
    """Atomically write records as MPII JSON (1-based; a NaN or unannotated joint becomes `[-1, -1]`, flag 0).

    Raises:
        FormatError: for a record with a wrong shape or a non-finite centre, scale or head box.
    """
    out = []
    for i, r in enumerate(records):
        joints = np.asarray(r.joints, dtype=np.float64)
        visible = np.asarray(r.visible, dtype=bool)
        center = np.asarray(r.center, dtype=np.float64)
        if joints.ndim != 2 or joints.shape[1] != 2 or visible.shape != (len(joints),) or center.shape != (2,):
            raise FormatError(path, f"record {i}: joints must be [K, 2], visible [K] and center [2]")
        if not (np.isfinite(center).all() and math.isfinite(r.scale) and r.scale > 0):
            raise FormatError(path, f"record {i}: centre and scale must be finite (scale > 0)")
        keep = visible & np.isfinite(joints).all(axis=1)
        rec: dict[str, Any] = {
            "image": r.image,
            "center": (center + 1.0).tolist(),
            "scale": float(r.scale),
            "joints": [(xy + 1.0).tolist() if k else [-1.0, -1.0] for xy, k in zip(joints, keep)],
            "joints_vis": [int(k) for k in keep],
        }
        if r.headbox is not None:
            hb = np.asarray(r.headbox, dtype=np.float64)
            if hb.shape != (4,) or not np.isfinite(hb).all():
                raise FormatError(path, f"record {i}: headbox must be 4 finite numbers")
            rec["headbox"] = (hb + 1.0).tolist()
        out.append(rec)
    write_json(path, out)


# --------------------------------------------------------------------------------------------------------- COCO
def read_coco_keypoints(path: str | os.PathLike, num_keypoints: int | None = None) -> list[KeypointRecord]:
    """Read a COCO-keypoint JSON (`images`, `annotations` with `keypoints` x, y, v triples and `bbox`).

    Coordinates are taken as 0-based pixels (the COCO convention), so they are returned unchanged. This is the
    format of MMPose's 300-W files (`face` category, 68 keypoints).

    Args:
        path: the JSON file.
        num_keypoints: keypoints expected per annotation; None accepts any count shared by all annotations.

    Returns:
        One record per annotation, in file order.

    Raises:
        FormatError: naming the file and the annotation index.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise FormatError(path, "not a COCO file: no 'images' list")
    if not isinstance(data.get("annotations"), list):
        raise FormatError(path, "not a COCO file: no 'annotations' list")
    images: dict[int, tuple[str, tuple[int, int] | None]] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not isinstance(img.get("file_name"), str) or not _is_id(img.get("id")):
            raise FormatError(path, f"image {i}: needs an integer or string 'id' and a 'file_name'")
        w, h = _number(img.get("width")), _number(img.get("height"))
        images[img["id"]] = (img["file_name"], (int(w), int(h)) if w and h else None)
    out = []
    for i, ann in enumerate(data["annotations"]):
        where = f"annotation {i}"
        if not isinstance(ann, dict):
            raise FormatError(path, f"{where}: expected an object")
        if not _is_id(ann.get("image_id")) or ann["image_id"] not in images:
            raise FormatError(path, f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        kps = ann.get("keypoints")
        if not isinstance(kps, list) or len(kps) == 0 or len(kps) % 3:
            raise FormatError(path, f"{where}: 'keypoints' must be a non-empty list of x, y, v triples")
        k = len(kps) // 3
        expected = num_keypoints if num_keypoints is not None else (len(out[0].points) if out else k)
        if k != expected:
            raise FormatError(path, f"{where}: expected {expected} keypoints, got {k}")
        triples = _numbers(kps, len(kps))
        if triples is None:
            raise FormatError(path, f"{where}: keypoints must be finite numbers")
        triples = triples.reshape(k, 3)
        if not np.isin(triples[:, 2], (0.0, 1.0, 2.0)).all():
            raise FormatError(path, f"{where}: visibility flags must be 0, 1 or 2")
        visible = triples[:, 2] > 0
        points = np.where(visible[:, None], triples[:, :2], np.nan)
        bbox = _numbers(ann.get("bbox"), 4)
        if bbox is None or bbox[2] <= 0 or bbox[3] <= 0:
            raise FormatError(path, f"{where}: 'bbox' must be [x, y, w, h] with positive w and h")
        name, size = images[ann["image_id"]]
        box = np.array([bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]])
        out.append(KeypointRecord(name, ann["image_id"], points, visible, box, size))
    return out


# -------------------------------------------------------------------------------------------------------- boxes
def parse_box_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a face detector box file without stopping at a bad entry (see `read_box_file` for the format).

    Returns:
        (boxes, invalid): image path (POSIX, relative to the dataset root) → [4] float64 box for every good entry,
        and key → why (without the file's name) for every entry that is not one: a box that is not 4 finite numbers with x2 > x1 and
        y2 > y1, or a key that is absolute or has a `..` part (keys never leave the dataset folder). An image whose
        entry is invalid is skipped with that reason under the batch rule, instead of the whole file being refused.

    Raises:
        FormatError: an unreadable, empty, oversized, non-JSON file, or one that is not a JSON object.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise FormatError(path, f"expected a JSON object {{image: [x1, y1, x2, y2]}}, got {type(data).__name__}")
    boxes: dict[str, np.ndarray] = {}
    invalid: dict[str, str] = {}
    for name, value in data.items():
        key = Path(name).as_posix() if name.strip() else name
        bad_key = key_text_problem(name)
        box = _numbers(value, 4)
        if bad_key is not None:
            invalid[key] = f"key {name!r} {bad_key}"
        elif box is None or not (box[2] > box[0] and box[3] > box[1]):
            invalid[key] = (f"box of {name!r} must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1, got "
                            f"{json.dumps(value)[:80]}")
        else:
            boxes[key] = box
    return boxes, invalid


def read_box_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a face detector box file strictly: a JSON object `{relative_image_path: [x1, y1, x2, y2]}` (0-based
    pixels).

    Returns:
        Image path (POSIX, relative to the dataset root) → [4] float64 box.

    Raises:
        FormatError: for a non-object file, a box that is not 4 finite numbers with x2 > x1 and y2 > y1, or a key
            that is absolute or has a `..` part (the first bad entry named).
    """
    boxes, invalid = parse_box_file(path)
    if invalid:
        raise FormatError(path, next(iter(invalid.values())))
    return boxes

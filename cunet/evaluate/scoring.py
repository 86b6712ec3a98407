"""Score predictions stored in the dataset formats against ground truth, producing the metric JSON of `cunet metrics`.

Predictions use the same formats as the data, so any model's output can be scored (`cunet metrics`):

- Faces: a folder of 300-W `.pts` files. `gt_root` is either a dataset root (a `test/` folder or the 300-W download
  layout: the "test" split is scored, with its subsets) or any folder of `.pts` files (every one is scored, no
  subsets). A prediction lives at the ground truth's path relative to `gt_root` (image suffix replaced by `.pts`);
  every ground-truth file needs exactly one prediction and the prediction folder holds nothing else.
- Pose: an MPII JSON (a list of person records). `gt` is that JSON or a dataset root (its "test" split file); the
  prediction is a JSON with the same records in the same order (matched by image and index in the file), or a
  folder holding a JSON of the same file name as the ground truth's.

The numbers come from `cunet.evaluate.metrics` (fractions); this layer converts to the units of the JSON keys:
faces `nme`, `fr@*` in percent and `auc@*` as fractions; pose `pckh@*`, `per_joint`, `per_group` and `pckh_auc`
in percent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cunet.errors import CunetError
from cunet.evaluate import metrics

__all__ = [
    "NORMS",
    "POSE_SPLIT_FILES",
    "FaceErrors",
    "per_image_nme",
    "face_errors",
    "summarize_face",
    "summarize_pose",
    "score_face",
    "score_pose",
    "load_pose_gt",
]

#: `--norm` choices → normaliser helpers of `cunet.evaluate.metrics` (each maps gt [N, K, 2] → [N]).
NORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "inter-ocular": metrics.inter_ocular,
    "inter-pupil": metrics.inter_pupil,
    "box": metrics.box_size,
}
#: 300-W reporting thresholds (fractions of the normaliser) for AUC and failure rate.
FACE_THRESHOLDS = (0.08, 0.10)
#: The file of a pose dataset root that holds each split (train.json and valid.json, as `cunet.data.dataset` has).
POSE_SPLIT_FILES = {"train": "train.json", "test": "valid.json", "valid": "valid.json"}
_FULL = "full"
_MAX_NAMED = 3


@dataclass(frozen=True)
class FaceErrors:
    """Per-image normalised errors of a face prediction set.

    Attributes:
        keys: [N] relative paths of the ground-truth images (or `.pts` files), sorted.
        errors: [N] per-image NME as fractions of the normaliser.
        subsets: [N] test subset of each image ("common", "challenging", ...) or None.
        norm: name of the normaliser (a key of `NORMS`).
    """

    keys: tuple[str, ...]
    errors: np.ndarray
    subsets: tuple[str | None, ...]
    norm: str


def _named(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_NAMED])
    return shown + (f" and {len(items) - _MAX_NAMED} more" if len(items) > _MAX_NAMED else "")


def _norm_fn(norm: str) -> Callable[[np.ndarray], np.ndarray]:
    if norm not in NORMS:
        raise CunetError(f"unknown normaliser {norm!r}; choose one of {', '.join(NORMS)}")
    return NORMS[norm]


def _is_face_dataset(root: Path) -> bool:
    from cunet.data.dataset import dataset_parts

    try:
        return any(split == "test" for split, _ in dataset_parts(root, "face"))
    except CunetError:  # not a dataset layout: a plain folder of .pts files
        return False


def _face_gt(gt_root: Path, subset: str | None) -> tuple[list[str], list[Path | None], list[np.ndarray],
                                                          list[np.ndarray], list[str | None]]:
    """Ground truth as (pred-relative .pts paths, gt .pts file or None, points, masks, subsets)."""
    from cunet.data.dataset import load_samples
    from cunet.data.formats import read_pts

    if _is_face_dataset(gt_root):
        loaded = load_samples(gt_root, "face", "test", subset)
        if loaded.problems:
            p = loaded.problems[0]
            raise CunetError(f"{p.file}: {p.problem} (ground truth must be clean to be scored)")
        samples = sorted(loaded.samples, key=lambda s: s.key)
        rels = [str(Path(s.key).with_suffix(".pts")) for s in samples]
        return (rels, [None] * len(samples), [s.points for s in samples], [s.visible for s in samples],
                [s.subset for s in samples])
    if subset is not None:
        raise CunetError(f"{gt_root}: a subset needs a dataset root (with test/ or the 300-W folders)")
    files = sorted(gt_root.rglob("*.pts"))
    if not files:
        raise CunetError(f"{gt_root}: no .pts files and not a dataset root")
    points = [read_pts(f) for f in files]
    return ([f.relative_to(gt_root).as_posix() for f in files], list(files), points,
            [np.isfinite(p).all(axis=1) for p in points], [None] * len(files))


def per_image_nme(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, norm: str = "inter-ocular",
                  names: list[str] | None = None) -> np.ndarray:
    """Per-image NME with a named normaliser computed from the annotated ground-truth points.

    Args:
        pred: [N, K, 2] predictions; gt: [N, K, 2] ground truth; mask: [N, K] annotated.
        norm: a key of `NORMS`.
        names: [N] file names used in error messages (default "image i").

    Returns:
        [N] NME as fractions of each image's normaliser.

    Raises:
        CunetError: an unknown normaliser, or an image whose normaliser is zero or not finite (names its file).
    """
    norm_fn = _norm_fn(norm)
    gt = np.asarray(gt, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    normaliser = norm_fn(np.where(mask[..., None], gt, np.nan))
    bad = np.flatnonzero(mask.any(axis=1) & ~(np.isfinite(normaliser) & (normaliser > 0)))
    if len(bad):
        i = int(bad[0])
        raise CunetError(f"{names[i] if names else f'image {i}'}: the {norm} normaliser is {normaliser[i]:g}; "
                         "it must be a positive finite number")
    return metrics.nme_per_image(pred, gt, mask, normaliser)


def face_errors(gt_root: str | Path, pred_root: str | Path, norm: str = "inter-ocular",
                subset: str | None = None) -> FaceErrors:
    """Read ground truth and predictions and compute every image's normalised error.

    Args:
        gt_root: a face dataset root (the "test" split is scored) or a folder of `.pts` files.
        pred_root: folder of predicted `.pts` files at the ground truth's relative paths.
        norm: "inter-ocular" (300-W), "inter-pupil" or "box" (sqrt(w * h) of the ground-truth landmark box).
        subset: score only this test subset (dataset roots only; None or "full": all of them). Predictions for
            the other subsets may then stay in `pred_root`; without a subset every prediction needs ground truth.

    Returns:
        The per-image errors with their keys and subsets.

    Raises:
        CunetError: missing or extra prediction files, point-count mismatches, unreadable files, a bad normaliser.
    """
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    _norm_fn(norm)  # an unknown normaliser fails before any file is read
    if not gt_root.is_dir():
        raise CunetError(f"{gt_root}: ground-truth folder not found")
    if not pred_root.is_dir():
        raise CunetError(f"{pred_root}: prediction folder not found")
    from cunet.data.formats import read_pts

    rels, gt_files, gt_points, masks, subsets = _face_gt(gt_root, subset)
    have = {f.relative_to(pred_root).as_posix() for f in pred_root.rglob("*.pts")}
    missing = [r for r in rels if r not in have]
    if missing:
        raise CunetError(f"{pred_root}: no prediction for {len(missing)} ground-truth file(s): {_named(missing)}")
    extra = sorted(have - set(rels))
    if extra and subset in (None, "full"):  # one subset is scored from a folder that may hold all of them
        raise CunetError(f"{pred_root}: {len(extra)} prediction file(s) without ground truth: {_named(extra)}")
    preds = []
    for rel, gt_file, gt in zip(rels, gt_files, gt_points):
        p = read_pts(pred_root / rel)
        if p.shape != gt.shape:
            raise CunetError(f"{pred_root / rel}: {len(p)} points but the ground truth "
                             f"{gt_file or gt_root / rel} has {len(gt)}")
        preds.append(p)
    if len({len(g) for g in gt_points}) > 1:
        raise CunetError(f"{gt_root}: ground-truth files have different point counts")
    names = [str(gt_file or gt_root / rel) for rel, gt_file in zip(rels, gt_files)]
    errors = per_image_nme(np.stack(preds), np.stack(gt_points), np.stack(masks), norm, names)
    return FaceErrors(tuple(rels), errors, tuple(subsets), norm)


def _face_keys(errors: np.ndarray) -> dict[str, float | int]:
    out: dict[str, float | int] = {"nme": 100 * float(np.nanmean(errors)) if len(errors) else float("nan")}
    for t in FACE_THRESHOLDS:
        out[f"auc@{t:.2f}"] = metrics.auc(errors, t)
    for t in FACE_THRESHOLDS:
        out[f"fr@{t:.2f}"] = 100 * metrics.failure_rate(errors, t)
    out["n"] = int(np.count_nonzero(~np.isnan(errors)))
    return out


def summarize_face(errors: np.ndarray, subsets: tuple[str | None, ...] | None = None,
                   norm: str = "inter-ocular") -> dict:
    """The face metric JSON from per-image errors.

    Args:
        errors: [N] per-image NME as fractions (`metrics.nme_per_image`).
        subsets: [N] subset name per image, or None. When any is set, `subsets` reports each subset and "full".
        norm: the normaliser's name, reported as `norm`.

    Returns:
        {"nme" (%), "auc@0.08", "auc@0.10" (fractions), "fr@0.08", "fr@0.10" (%), "n", "norm"[, "subsets"]}.
    """
    errors = np.asarray(errors, dtype=np.float64)
    out: dict = {**_face_keys(errors), "norm": norm}
    names = sorted({s for s in (subsets or ()) if s is not None})
    if names:
        labels = np.array([s or "" for s in subsets], dtype=object)
        out["subsets"] = {name: _face_keys(errors[labels == name]) for name in names}
        out["subsets"][_FULL] = _face_keys(errors)
    return out


def score_face(gt_root: str | Path, pred_root: str | Path, norm: str = "inter-ocular",
               subset: str | None = None) -> dict:
    """Score a folder of predicted `.pts` files against ground truth (see `face_errors` and `summarize_face`).

    The `subsets` breakdown is reported when the whole test split is scored and it has subsets.
    """
    fe = face_errors(gt_root, pred_root, norm, subset)
    return summarize_face(fe.errors, fe.subsets if subset in (None, "full") else None, fe.norm)


def summarize_pose(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, headboxes: np.ndarray) -> dict:
    """The pose metric JSON.

    Args:
        pred: predicted joints [N, 16, 2]; gt: ground truth [N, 16, 2]; mask: [N, 16] annotated;
        headboxes: [N, 4] head boxes (x1, y1, x2, y2).

    Returns:
        {"pckh@0.5", "pckh@0.1" (%, headline over 14 joints weighted by visible counts), "per_joint" (name → %),
        "per_group" (name → %), "pckh_auc" (%, mean headline PCKh over thresholds 0, 0.05, ..., 0.5), "n" (people),
        "joints" (visible joints in the headline)}.
    """
    at5 = metrics.pckh(pred, gt, mask, headboxes, thr=0.5)
    at1 = metrics.pckh(pred, gt, mask, headboxes, thr=0.1)
    headline = np.setdiff1d(np.arange(len(metrics.MPII_JOINTS)), metrics.MPII_EXCLUDED)
    return {
        "pckh@0.5": 100 * at5.mean,
        "pckh@0.1": 100 * at1.mean,
        "per_joint": {name: 100 * float(v) for name, v in zip(metrics.MPII_JOINTS, at5.per_joint)},
        "per_group": {name: 100 * v for name, v in at5.per_group.items()},
        "pckh_auc": 100 * metrics.pckh_auc(pred, gt, mask, headboxes),
        "n": int(len(gt)),
        "joints": int(at5.visible[headline].sum()),
    }


def load_pose_gt(gt: str | Path, split: str = "test") -> tuple[Path, list]:
    """The ground-truth JSON file and its records: `gt` is an MPII JSON or a pose dataset root (then the split's
    file: `valid.json` for "test"/"valid", `train.json` for "train", in the root or in `annot/`)."""
    from cunet.data.formats import read_mpii_json

    gt = Path(gt)
    if gt.is_dir():
        name = POSE_SPLIT_FILES.get(split)
        if name is None:
            raise CunetError(f"unknown split {split!r}: choose one of {', '.join(POSE_SPLIT_FILES)}")
        candidates = (gt / name, gt / "annot" / name)  # the layouts `load_samples` accepts
        gt = next((c for c in candidates if c.is_file()), candidates[0])
    if not gt.is_file():
        raise CunetError(f"{gt}: ground-truth JSON not found")
    return gt, read_mpii_json(gt)


def score_pose(gt_json: str | Path, pred_json: str | Path) -> dict:
    """Score an MPII JSON of predictions against ground truth (see the module docstring for the matching rules).

    Raises:
        CunetError: different record counts or images, missing head boxes (PCKh needs them), unreadable files.
    """
    from cunet.data.formats import read_mpii_json

    gt_file, gt_records = load_pose_gt(gt_json)
    pred_file = Path(pred_json)
    if pred_file.is_dir():
        pred_file = pred_file / gt_file.name
    if not pred_file.is_file():
        raise CunetError(f"{pred_file}: prediction JSON not found")
    pred_records = read_mpii_json(pred_file)
    if len(pred_records) != len(gt_records):
        raise CunetError(f"{pred_file}: {len(pred_records)} records but the ground truth {gt_file} has "
                         f"{len(gt_records)}")
    for i, (p, g) in enumerate(zip(pred_records, gt_records)):
        if Path(p.image).as_posix() != Path(g.image).as_posix():
            raise CunetError(f"{pred_file}: record {i} is for image {p.image!r}, the ground truth's for {g.image!r}")
        if g.headbox is None:
            raise CunetError(f"{gt_file}: record {i} ({g.image}) has no headbox; PCKh needs head boxes")
    return summarize_pose(
        np.stack([p.joints for p in pred_records]),
        np.stack([g.joints for g in gt_records]),
        np.stack([g.visible for g in gt_records]),
        np.stack([np.asarray(g.headbox, dtype=np.float64) for g in gt_records]),
    )

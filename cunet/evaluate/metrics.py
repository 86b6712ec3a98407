"""Landmark accuracy metrics: NME, CED, AUC and failure rate for faces, PCKh for human pose.

Pure numpy functions without state or I/O, in the style of mmpose's `keypoint_eval`: coordinates are `[N, K, 2]`
0-based pixels, the argument order is always `pred, gt, mask, norm`, and nothing writes into the caller's arrays.
Normalisers are small named helpers (`inter_ocular`, `inter_pupil`, `box_size`, `head_size`) composed at the call
site, so the policy ("which eye corners", "0.6 x head-box diagonal") is visible where a number is reported.

Every function returns fractions (0.035, not 3.5 %); `cunet.evaluate.scoring` converts to the percent units of the
JSON keys (`nme`, `fr@*`, `pckh@*`). A missing landmark is NaN in `gt` or False in `mask`, never a sentinel value.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from cunet.data.spec import FACE_68, POSE_MPII_16
from cunet.errors import CunetError

__all__ = [
    "MPII_JOINTS",
    "MPII_GROUPS",
    "MPII_EXCLUDED",
    "PCKhResult",
    "point_errors",
    "inter_ocular",
    "inter_pupil",
    "box_size",
    "head_size",
    "nme_per_image",
    "nme",
    "ced",
    "auc",
    "failure_rate",
    "pckh",
    "pckh_auc",
    "joint_correct",
]

#: MPII Human Pose joint order (0-based) and the groups of the MPII results table ("head" = head-top + upper-neck),
#: from the one landmark spec of the project.
MPII_JOINTS: tuple[str, ...] = POSE_MPII_16.names
MPII_GROUPS: dict[str, tuple[int, ...]] = dict(POSE_MPII_16.groups)
#: Pelvis and thorax: left out of the headline PCKh by the official MPII evaluation.
MPII_EXCLUDED = (6, 7)

#: Outer eye corners (36, 45) and the two eyes of the 68-point 300-W markup (0-based).
_OUTER_EYE_CORNERS: tuple[int, ...] = FACE_68.norm_points
_RIGHT_EYE = slice(36, 42)
_LEFT_EYE = slice(42, 48)
#: Official MPII head size: 0.6 x the head-box diagonal.
_HEAD_SIZE_FACTOR = 0.6


def _points(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 3 or a.shape[-1] != 2:
        raise ValueError(f"{name} must be [N, K, 2], got shape {a.shape}")
    return a


def _mask(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape:
        raise ValueError(f"mask must be [N, K] = {shape}, got {m.shape}")
    return m


def point_errors(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distance of every predicted point to its ground truth.

    Args:
        pred: predicted points [N, K, 2].
        gt: ground-truth points [N, K, 2]; NaN marks an unannotated point.
        mask: [N, K] bool, True where the point is annotated and should be scored (None: all).

    Returns:
        [N, K] pixel errors: NaN where the point is masked out or its ground truth is NaN, +inf where the ground
        truth is annotated but the prediction is not finite (a missing prediction is a failure, not a skip).
    """
    pred, gt = _points(pred, "pred"), _points(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in shape")
    scored = _mask(mask, gt.shape[:2]) & np.isfinite(gt).all(axis=-1)
    err = np.linalg.norm(pred - gt, axis=-1)
    err = np.where(np.isfinite(err), err, np.inf)
    return np.where(scored, err, np.nan)


def _require_68(gt: np.ndarray, what: str) -> None:
    if gt.shape[1] != 68:
        raise CunetError(f"{what} normalisation needs the 68-point 300-W markup, got {gt.shape[1]} points")


def inter_ocular(gt: np.ndarray) -> np.ndarray:
    """300-W inter-ocular distance: between the outer eye corners, points 36 and 45 (0-based).

    Args:
        gt: ground-truth points [N, 68, 2].

    Returns:
        [N] distances in pixels (NaN where a corner is unannotated).
    """
    gt = _points(gt, "gt")
    _require_68(gt, "inter-ocular")
    a, b = _OUTER_EYE_CORNERS
    return np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)


def inter_pupil(gt: np.ndarray) -> np.ndarray:
    """Inter-pupil distance: between the eye centres, the means of points 36-41 and 42-47 (0-based).

    Args:
        gt: ground-truth points [N, 68, 2].

    Returns:
        [N] distances in pixels (NaN where an eye point is unannotated).
    """
    gt = _points(gt, "gt")
    _require_68(gt, "inter-pupil")
    return np.linalg.norm(gt[:, _RIGHT_EYE].mean(axis=1) - gt[:, _LEFT_EYE].mean(axis=1), axis=-1)


def box_size(gt_or_boxes: np.ndarray) -> np.ndarray:
    """Box-size normaliser sqrt(w * h) of the tight ground-truth landmark box (or of given boxes).

    The box is max - min of the annotated (non-NaN) points, without any margin; this is the "bounding box" NME of
    AFLW/COFW-style reports. Passing explicit boxes [N, 4] as (x1, y1, x2, y2) uses those instead.

    Args:
        gt_or_boxes: ground-truth points [N, K, 2], or boxes [N, 4].

    Returns:
        [N] sqrt(width * height) in pixels (NaN where an image has no annotated point).
    """
    a = np.asarray(gt_or_boxes, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] == 4:
        wh = a[:, 2:] - a[:, :2]
    else:
        a = _points(a, "gt")
        with warnings.catch_warnings():
            # An image without annotated points legitimately has a NaN box ("All-NaN slice" warning).
            warnings.simplefilter("ignore", RuntimeWarning)
            wh = np.nanmax(a, axis=1) - np.nanmin(a, axis=1)
    return np.sqrt(wh[:, 0] * wh[:, 1])


def head_size(headboxes: np.ndarray) -> np.ndarray:
    """MPII head size: 0.6 x the diagonal of the head box, as in the official evaluation (SC_BIAS = 0.6).

    Args:
        headboxes: [N, 4] head boxes (x1, y1, x2, y2) in pixels.

    Returns:
        [N] head sizes in pixels.
    """
    hb = np.asarray(headboxes, dtype=np.float64)
    if hb.ndim != 2 or hb.shape[1] != 4:
        raise ValueError(f"headboxes must be [N, 4], got shape {hb.shape}")
    return _HEAD_SIZE_FACTOR * np.linalg.norm(hb[:, 2:] - hb[:, :2], axis=-1)


def _check_norm(norm: np.ndarray, n: int, needed: np.ndarray, what: str) -> np.ndarray:
    norm = np.broadcast_to(np.asarray(norm, dtype=np.float64), (n,))
    bad = np.flatnonzero(needed & ~(np.isfinite(norm) & (norm > 0)))
    if len(bad):
        raise CunetError(f"image {int(bad[0])}: {what} is {norm[bad[0]]:g}; it must be a positive finite number")
    return norm


def nme_per_image(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None, norm: np.ndarray) -> np.ndarray:
    """Normalised mean error of each image: mean error over its annotated points divided by its normaliser.

    Args:
        pred: predicted points [N, K, 2].
        gt: ground-truth points [N, K, 2] (NaN = unannotated).
        mask: [N, K] bool, True where annotated (None: all points with finite ground truth).
        norm: [N] normalisers in pixels (e.g. `inter_ocular(gt)`) or one scalar for all images.

    Returns:
        [N] fractions of the normaliser; NaN for an image without annotated points.

    Raises:
        CunetError: an image with annotated points has a zero or non-finite normaliser (names its index).
    """
    err = point_errors(pred, gt, mask)
    annotated = ~np.isnan(err)
    count = annotated.sum(axis=1)
    norm = _check_norm(norm, err.shape[0], count > 0, "the normaliser")
    total = np.where(annotated, err, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1) / norm, np.nan)


def nme(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None, norm: np.ndarray) -> float:
    """Dataset NME: mean over images (with annotated points) of `nme_per_image`, as a fraction.

    Args and Raises: as `nme_per_image`.
    """
    per = nme_per_image(pred, gt, mask, norm)
    per = per[~np.isnan(per)]
    return float(per.mean()) if len(per) else float("nan")


def _scored(errors: np.ndarray) -> np.ndarray:
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    return e[~np.isnan(e)]


def ced(errors: np.ndarray, max_error: float = 0.10, steps: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: the fraction of images whose error is at most each threshold.

    Args:
        errors: [N] per-image errors (e.g. `nme_per_image`); NaN entries (images without annotated points) are
            left out, +inf counts as a failure at every threshold.
        max_error: the largest threshold.
        steps: number of thresholds, evenly spaced from 0 to `max_error` inclusive.

    Returns:
        (thresholds [steps], fraction [steps]) with fraction[i] = mean(errors <= thresholds[i]).
    """
    e = _scored(errors)
    thresholds = np.linspace(0.0, max_error, steps)
    if len(e) == 0:
        return thresholds, np.full(steps, np.nan)
    return thresholds, (e[None, :] <= thresholds[:, None]).mean(axis=1)


def auc(errors: np.ndarray, threshold: float) -> float:
    """Area under the CED from 0 to `threshold`, divided by `threshold` so a perfect model scores 1.

    Computed exactly for the CED step function F(x) = mean(errors <= x), with no sampling of thresholds:
    integral_0^t F(x) dx = mean over images of max(0, t - e_i), so AUC@t = mean(max(0, 1 - e_i / t)).
    (Sampled versions with the trapezoid rule, as some 300-W scripts use, differ from this by O(t / steps).)

    Args:
        errors: [N] per-image errors; NaN entries are left out, +inf contributes 0.
        threshold: upper integration limit t > 0 (0.08 and 0.10 are the usual 300-W choices).

    Returns:
        AUC in [0, 1] (NaN when no image is scored).
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    e = _scored(errors)
    return float(np.clip(1.0 - e / threshold, 0.0, None).mean()) if len(e) else float("nan")


def failure_rate(errors: np.ndarray, threshold: float) -> float:
    """Fraction of images whose error is greater than `threshold` (NaN entries left out, +inf is a failure).

    Args:
        errors: [N] per-image errors.
        threshold: failure threshold (0.08 or 0.10 for 300-W).

    Returns:
        Failure rate in [0, 1] (NaN when no image is scored).
    """
    e = _scored(errors)
    return float((e > threshold).mean()) if len(e) else float("nan")


@dataclass(frozen=True)
class PCKhResult:
    """PCKh at one threshold, with the counts it was computed from.

    Attributes:
        threshold: fraction of the head size within which a joint is correct.
        correct: [K] number of visible joints within the threshold, per joint.
        visible: [K] number of visible (annotated) joints, per joint.
        per_joint: [K] correct / visible (NaN where no joint is visible).
        per_group: group name → pooled fraction (sum of correct / sum of visible over the group's joints).
        mean: headline PCKh over all joints but pelvis and thorax, weighted by visible-joint counts
            (sum of correct / sum of visible), as the official MPII script computes it.
    """

    threshold: float
    correct: np.ndarray
    visible: np.ndarray
    per_joint: np.ndarray
    per_group: dict[str, float]
    mean: float


def _pooled(correct: np.ndarray, visible: np.ndarray, joints: tuple[int, ...] | np.ndarray) -> float:
    n = visible[list(joints)].sum()
    return float(correct[list(joints)].sum() / n) if n else float("nan")


def _scaled_errors(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None, headboxes: np.ndarray) -> np.ndarray:
    err = point_errors(pred, gt, mask)
    if err.shape[1] != len(MPII_JOINTS):
        raise CunetError(f"PCKh needs the 16 MPII joints, got {err.shape[1]} points")
    size = _check_norm(head_size(headboxes), err.shape[0], (~np.isnan(err)).any(axis=1), "the head size")
    with np.errstate(invalid="ignore", divide="ignore"):
        return err / size[:, None]


def _pckh_from_scaled(scaled: np.ndarray, thr: float) -> PCKhResult:
    visible_mask = ~np.isnan(scaled)
    visible = visible_mask.sum(axis=0)
    correct = (visible_mask & (scaled <= thr)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = np.where(visible > 0, correct / np.maximum(visible, 1), np.nan)
    headline = np.setdiff1d(np.arange(len(MPII_JOINTS)), MPII_EXCLUDED)
    return PCKhResult(
        threshold=float(thr),
        correct=correct,
        visible=visible,
        per_joint=per_joint,
        per_group={name: _pooled(correct, visible, joints) for name, joints in MPII_GROUPS.items()},
        mean=_pooled(correct, visible, headline),
    )


def joint_correct(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None, headboxes: np.ndarray,
                  thr: float = 0.5) -> np.ndarray:
    """Per person and joint [N, 16]: 1.0 within `thr` head sizes, 0.0 outside, NaN where the joint is not visible."""
    scaled = _scaled_errors(pred, gt, mask, headboxes)
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(scaled), np.nan, (scaled <= thr).astype(np.float64))


def pckh(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None, headboxes: np.ndarray, thr: float = 0.5
) -> PCKhResult:
    """MPII PCKh: a visible joint is correct when its error is at most `thr` x head size (`head_size`).

    Args:
        pred: predicted joints [N, 16, 2] in MPII order (`MPII_JOINTS`).
        gt: ground-truth joints [N, 16, 2] (NaN = not annotated).
        mask: [N, 16] bool, True where annotated (MPII's `joints_vis`; None: all joints with finite ground truth).
        headboxes: [N, 4] head boxes (x1, y1, x2, y2).
        thr: threshold as a fraction of the head size (0.5 for PCKh@0.5).

    Returns:
        A `PCKhResult` with per-joint, per-group and headline values (fractions).

    Raises:
        CunetError: not 16 joints, or an image with visible joints has a zero or non-finite head size.
    """
    return _pckh_from_scaled(_scaled_errors(pred, gt, mask, headboxes), thr)


def pckh_auc(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray | None,
    headboxes: np.ndarray,
    thresholds: np.ndarray | None = None,
) -> float:
    """Mean of the headline PCKh over a range of thresholds (default 0, 0.05, ..., 0.5: `np.linspace(0, 0.5, 11)`).

    This is the sampled area under the PCKh-vs-threshold curve, normalised to [0, 1], as pose papers report it.

    Args: as `pckh`, with `thresholds` [T] replacing `thr`.

    Returns:
        The mean headline PCKh over `thresholds` (a fraction).
    """
    thresholds = np.linspace(0.0, 0.5, 11) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    scaled = _scaled_errors(pred, gt, mask, headboxes)
    return float(np.mean([_pckh_from_scaled(scaled, t).mean for t in thresholds]))


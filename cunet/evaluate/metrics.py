"""Landmark accuracy metrics: NME, CED, AUC and failure rate for faces, PCKh for human pose.

Pure numpy functions without state or I/O, in the style of mmpose's `keypoint_eval`: coordinates are `[N, K, 2]`
0-based pixels, the argument order is always `pred, gt, mask, norm`, and nothing writes into the caller's arrays.
Normalisers are small named helpers (`inter_ocular`, `inter_pupil`, `box_size`, `head_size`) composed at the call
site, and every index table (which eye corners, which joints make the headline mean, which joints form a column)
is an argument: the policy lives in `cunet.evaluate.scoring`, which passes the tables of `cunet.data.spec`.
This module imports numpy only and raises `ValueError`; the scoring layer turns that into a one-line `CunetError`.

Every function returns fractions (0.035, not 3.5 %); `cunet.evaluate.scoring` converts to the percent units of the
JSON keys (`nme`, `fr@*`, `pckh@*`). A missing landmark is NaN in `gt` or False in `mask`, never a sentinel value.
A prediction that is not finite where the ground truth is annotated has an infinite error: it is a failure at
every threshold, never left out.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

__all__ = [
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
    "group_means",
]

#: Official MPII head size: 0.6 x the head-box diagonal (SC_BIAS of the MATLAB evaluation).
HEAD_SIZE_FACTOR = 0.6


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


def _indices(gt: np.ndarray, idx: Sequence[int], what: str) -> list[int]:
    idx = [int(i) for i in idx]
    if not idx or max(idx) >= gt.shape[1] or min(idx) < 0:
        raise ValueError(f"{what} uses points {idx}, but the markup has {gt.shape[1]} points")
    return idx


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
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.linalg.norm(pred - gt, axis=-1)
    err = np.where(np.isfinite(err), err, np.inf)
    return np.where(scored, err, np.nan)


def inter_ocular(gt: np.ndarray, corners: Sequence[int]) -> np.ndarray:
    """Inter-ocular distance: between two points, for 300-W the outer eye corners 36 and 45 (0-based).

    Args:
        gt: ground-truth points [N, K, 2].
        corners: the two point indices (`cunet.data.spec.FACE_68.norm_points`).

    Returns:
        [N] distances in pixels (NaN where a corner is unannotated).
    """
    gt = _points(gt, "gt")
    a, b = _indices(gt, corners, "the inter-ocular distance")
    return np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)


def inter_pupil(gt: np.ndarray, right_eye: Sequence[int], left_eye: Sequence[int]) -> np.ndarray:
    """Inter-pupil distance: between the eye centres, the means of each eye's points (300-W: 36-41 and 42-47).

    Args:
        gt: ground-truth points [N, K, 2].
        right_eye, left_eye: the point indices of each eye.

    Returns:
        [N] distances in pixels (NaN where an eye point is unannotated).
    """
    gt = _points(gt, "gt")
    right = _indices(gt, right_eye, "the inter-pupil distance")
    left = _indices(gt, left_eye, "the inter-pupil distance")
    return np.linalg.norm(gt[:, right].mean(axis=1) - gt[:, left].mean(axis=1), axis=-1)


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


def head_size(headboxes: np.ndarray, factor: float = HEAD_SIZE_FACTOR) -> np.ndarray:
    """MPII head size: `factor` (0.6, the official SC_BIAS) x the diagonal of the head box.

    Args:
        headboxes: [N, 4] head boxes (x1, y1, x2, y2) in pixels.
        factor: the fraction of the diagonal.

    Returns:
        [N] head sizes in pixels.
    """
    hb = np.asarray(headboxes, dtype=np.float64)
    if hb.ndim != 2 or hb.shape[1] != 4:
        raise ValueError(f"headboxes must be [N, 4], got shape {hb.shape}")
    return factor * np.linalg.norm(hb[:, 2:] - hb[:, :2], axis=-1)


def _check_norm(norm: np.ndarray, n: int, needed: np.ndarray, what: str) -> np.ndarray:
    norm = np.broadcast_to(np.asarray(norm, dtype=np.float64), (n,))
    bad = np.flatnonzero(needed & ~(np.isfinite(norm) & (norm > 0)))
    if len(bad):
        raise ValueError(f"image {int(bad[0])}: {what} is {norm[bad[0]]:g}; it must be a positive finite number")
    return norm


def nme_per_image(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None, norm: np.ndarray) -> np.ndarray:
    """Normalised mean error of each image: mean error over its annotated points divided by its normaliser.

    Args:
        pred: predicted points [N, K, 2].
        gt: ground-truth points [N, K, 2] (NaN = unannotated).
        mask: [N, K] bool, True where annotated (None: all points with finite ground truth).
        norm: [N] normalisers in pixels (e.g. `inter_ocular(gt, corners)`) or one scalar for all images.

    Returns:
        [N] fractions of the normaliser; NaN for an image without annotated points, +inf for an image with a
        non-finite predicted point.

    Raises:
        ValueError: an image with annotated points has a zero or non-finite normaliser (names its index).
    """
    err = point_errors(pred, gt, mask)
    annotated = ~np.isnan(err)
    count = annotated.sum(axis=1)
    norm = _check_norm(norm, err.shape[0], count > 0, "the normaliser")
    total = np.where(annotated, err, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1) / norm, np.nan)


def nme(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None, norm: np.ndarray) -> float:
    """Dataset NME: mean over images with annotated points and finite predictions of `nme_per_image`.

    An image whose prediction is not finite has no NME to average; count it with `failure_rate` (+inf fails).

    Args and Raises: as `nme_per_image`.
    """
    per = nme_per_image(pred, gt, mask, norm)
    per = per[np.isfinite(per)]
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
        mean: the headline: sum of correct / sum of visible over the `headline` joints (the official MPII
            script's weighting by visible-joint counts).
        per_group: group name → the plain mean of its joints' `per_joint` values (joints never visible left out),
            as the published MPII tables average left and right; empty when no groups were given.
    """

    threshold: float
    correct: np.ndarray
    visible: np.ndarray
    per_joint: np.ndarray
    mean: float
    per_group: dict[str, float] = field(default_factory=dict)


def group_means(per_joint: np.ndarray, groups: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """Plain mean of per-joint values over each group's joints, NaN entries left out (NaN when all are).

    Args:
        per_joint: [K] per-joint fractions.
        groups: name → joint indices (e.g. "shoulder" → (12, 13): the mean of right and left shoulder).

    Returns:
        name → mean.
    """
    v = np.asarray(per_joint, dtype=np.float64)
    out = {}
    for name, joints in groups.items():
        values = v[list(joints)]
        values = values[~np.isnan(values)]
        out[name] = float(values.mean()) if len(values) else float("nan")
    return out


def _scaled_errors(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None, headboxes: np.ndarray) -> np.ndarray:
    err = point_errors(pred, gt, mask)
    size = _check_norm(head_size(headboxes), err.shape[0], (~np.isnan(err)).any(axis=1), "the head size")
    with np.errstate(invalid="ignore", divide="ignore"):
        return err / size[:, None]


def _headline(k: int, headline: Sequence[int] | None) -> list[int]:
    joints = list(range(k)) if headline is None else [int(j) for j in headline]
    if not joints or max(joints) >= k or min(joints) < 0:
        raise ValueError(f"headline joints {joints} do not fit {k} joints")
    return joints


def _pckh_from_scaled(scaled: np.ndarray, thr: float, headline: list[int],
                      groups: Mapping[str, Sequence[int]] | None) -> PCKhResult:
    visible_mask = ~np.isnan(scaled)
    visible = visible_mask.sum(axis=0)
    correct = (visible_mask & (scaled <= thr)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = np.where(visible > 0, correct / np.maximum(visible, 1), np.nan)
    n = visible[headline].sum()
    mean = float(correct[headline].sum() / n) if n else float("nan")
    return PCKhResult(float(thr), correct, visible, per_joint, mean, group_means(per_joint, groups or {}))


def joint_correct(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None, headboxes: np.ndarray,
                  thr: float = 0.5) -> np.ndarray:
    """Per person and joint [N, K]: 1.0 within `thr` head sizes, 0.0 outside (a non-finite prediction included),
    NaN where the joint is not visible."""
    scaled = _scaled_errors(pred, gt, mask, headboxes)
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(scaled), np.nan, (scaled <= thr).astype(np.float64))


def pckh(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None, headboxes: np.ndarray, thr: float = 0.5,
         headline: Sequence[int] | None = None, groups: Mapping[str, Sequence[int]] | None = None) -> PCKhResult:
    """PCKh: a visible joint is correct when its error is at most `thr` x head size (`head_size`).

    Args:
        pred: predicted joints [N, K, 2] (a non-finite joint is incorrect).
        gt: ground-truth joints [N, K, 2] (NaN = not annotated).
        mask: [N, K] bool, True where annotated (None: all joints with finite ground truth).
        headboxes: [N, 4] head boxes (x1, y1, x2, y2).
        thr: threshold as a fraction of the head size (0.5 for PCKh@0.5).
        headline: the joints of the headline mean (None: all); MPII leaves out pelvis and thorax.
        groups: name → joints of the table's columns (None: no `per_group`).

    Returns:
        A `PCKhResult` with per-joint, per-group and headline values (fractions).

    Raises:
        ValueError: mismatched shapes, headline joints outside K, or an image with visible joints whose head size
            is zero or not finite.
    """
    scaled = _scaled_errors(pred, gt, mask, headboxes)
    return _pckh_from_scaled(scaled, thr, _headline(scaled.shape[1], headline), groups)


def pckh_auc(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None, headboxes: np.ndarray,
             limit: float = 0.5, headline: Sequence[int] | None = None) -> float:
    """Area under the headline PCKh-vs-threshold curve over (0, `limit`], divided by `limit` (a perfect model: 1).

    Exact for the step curve P(t) = sum_j [e_j <= t] / n over the n visible headline joints (errors e_j in head
    sizes), with no sampling of thresholds: integral_0^L P(t) dt / L = sum_j max(0, 1 - e_j / L) / n — the same
    closed form as the face `auc`. A joint exactly at 0 error scores 1; a non-finite prediction scores 0.

    Args: as `pckh`, with `limit` (the largest threshold, 0.5 head sizes) replacing `thr`.

    Returns:
        The normalised area (a fraction; NaN when no headline joint is visible).
    """
    if not limit > 0:
        raise ValueError(f"limit must be positive, got {limit}")
    scaled = _scaled_errors(pred, gt, mask, headboxes)
    e = scaled[:, _headline(scaled.shape[1], headline)]
    e = e[~np.isnan(e)]
    return float(np.clip(1.0 - e / limit, 0.0, None).mean()) if len(e) else float("nan")

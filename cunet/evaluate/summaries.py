"""The metric JSON from arrays: the policy `cunet.evaluate.metrics` leaves to its caller, and the units of the keys.

`cunet.evaluate.metrics` is pure numpy and takes its index tables as arguments; this module holds them — the 300-W
normalisers (`NORMS`: the outer eye corners of `cunet.data.spec.FACE_68`, the eye point ranges), the MPII headline
joints and table columns, the PCKh styles — turns the metrics' `ValueError`s into one-line `CunetError`s, and converts
fractions into the JSON keys' units: faces `nme`, `fr@*` in percent and `auc@*` as fractions; pose `pckh@*`,
`per_joint`, `per_group` and `pckh_auc` in percent. `cunet.evaluate.scoring` reads prediction files and calls it;
evaluate, bench, training validation and `--max-drop` call it on arrays, so every figure comes from one place.

A prediction that is not finite is a failure of the model, never a skipped image: faces — the image counts in `n`,
its error is +inf in FR, AUC and CED, `nme` is the mean of the finite errors and `nonfinite` counts the others;
pose — a non-finite joint is incorrect at every threshold and `nonfinite` counts the people with one.

MPII columns follow the published tables (the official MATLAB script, HRNet): each body part is the plain mean of
its left and right joints' PCKh, "head" is the head top (joint 9), the headline mean pools the 14 joints without
pelvis and thorax weighted by their visible counts. `style="original"` makes `pckh@0.5` / `pckh@0.1` the original
CU-Net code's mean instead: the plain mean of the per-joint PCKh of ankles, knees, hips, wrists and elbows.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cunet.data.spec import FACE_68, POSE_MPII_16
from cunet.errors import CunetError
from cunet.evaluate import metrics

__all__ = [
    "NORMS",
    "FACE_THRESHOLDS",
    "MPII_JOINTS",
    "MPII_EXCLUDED",
    "MPII_HEADLINE",
    "MPII_GROUPS",
    "ORIGINAL_JOINTS",
    "PCKH_STYLES",
    "norm_function",
    "per_image_nme",
    "summarize_face",
    "pckh_mean",
    "pckh",
    "summarize_pose",
    "joint_correct",
]

#: MPII Human Pose joint order (0-based), from the one landmark spec of the project.
MPII_JOINTS: tuple[str, ...] = POSE_MPII_16.names
#: Pelvis and thorax: left out of the headline PCKh by the official MPII evaluation.
MPII_EXCLUDED = (6, 7)
MPII_HEADLINE: tuple[int, ...] = tuple(j for j in range(len(MPII_JOINTS)) if j not in MPII_EXCLUDED)
#: The columns of the published MPII table: each the mean of its left and right joint, "head" the head top.
MPII_GROUPS: dict[str, tuple[int, ...]] = dict(POSE_MPII_16.groups)
#: The original CU-Net code's PCKh (`pylib/Evaluation.py` `accuracy` over its `idx`): ankles, knees, hips, wrists,
#: elbows, a plain mean of their per-joint values.
ORIGINAL_JOINTS = (0, 1, 2, 3, 4, 5, 10, 11, 14, 15)
#: `--pckh-style` choices: the headline of the MPII tables, or the original code's 10-joint mean.
PCKH_STYLES = ("mpii", "original")
_RIGHT_EYE, _LEFT_EYE = range(36, 42), range(42, 48)


def _metric(fn: Callable, *args, **kwargs):
    """Call a `cunet.evaluate.metrics` function; its `ValueError` (a bad normaliser, shapes) becomes one line."""
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        raise CunetError(str(e)) from None


def _require_68(gt: np.ndarray, what: str) -> None:
    if np.asarray(gt).shape[1] != 68:
        raise CunetError(f"{what} normalisation needs the 68-point 300-W markup, got {np.asarray(gt).shape[1]} points")


def _inter_ocular(gt: np.ndarray) -> np.ndarray:
    _require_68(gt, "inter-ocular")
    return _metric(metrics.inter_ocular, gt, FACE_68.norm_points)


def _inter_pupil(gt: np.ndarray) -> np.ndarray:
    _require_68(gt, "inter-pupil")
    return _metric(metrics.inter_pupil, gt, _RIGHT_EYE, _LEFT_EYE)


#: `--norm` choices → normalisers (each maps gt [N, K, 2] → [N]) built from `cunet.evaluate.metrics` helpers.
NORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "inter-ocular": _inter_ocular,
    "inter-pupil": _inter_pupil,
    "box": lambda gt: _metric(metrics.box_size, gt),
}

#: 300-W reporting thresholds (fractions of the normaliser) for AUC and failure rate.
FACE_THRESHOLDS = (0.08, 0.10)


def norm_function(norm: str) -> Callable[[np.ndarray], np.ndarray]:
    """The normaliser of a `--norm` choice (a key of `NORMS`); a one-line error for any other name."""
    if norm not in NORMS:
        raise CunetError(f"unknown normaliser {norm!r}; choose one of {', '.join(NORMS)}")
    return NORMS[norm]


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
    norm_fn = norm_function(norm)
    gt = np.asarray(gt, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    normaliser = norm_fn(np.where(mask[..., None], gt, np.nan))
    bad = np.flatnonzero(mask.any(axis=1) & ~(np.isfinite(normaliser) & (normaliser > 0)))
    if len(bad):
        i = int(bad[0])
        raise CunetError(f"{names[i] if names else f'image {i}'}: the {norm} normaliser is {normaliser[i]:g}; "
                         "it must be a positive finite number")
    return _metric(metrics.nme_per_image, pred, gt, mask, normaliser)



def _face_keys(errors: np.ndarray) -> dict[str, float | int]:
    finite = errors[np.isfinite(errors)]
    out: dict[str, float | int] = {"nme": 100 * float(finite.mean()) if len(finite) else float("nan")}
    for t in FACE_THRESHOLDS:
        out[f"auc@{t:.2f}"] = metrics.auc(errors, t)
    for t in FACE_THRESHOLDS:
        out[f"fr@{t:.2f}"] = 100 * metrics.failure_rate(errors, t)
    out["n"] = int(np.count_nonzero(~np.isnan(errors)))
    out["nonfinite"] = int(np.count_nonzero(np.isposinf(errors)))
    return out


def summarize_face(errors: np.ndarray, subsets: tuple[str | None, ...] | None = None,
                   norm: str = "inter-ocular", total: str = "full") -> dict:
    """The face metric JSON from per-image errors.

    Args:
        errors: [N] per-image NME as fractions (`metrics.nme_per_image`): NaN for an image without annotated
            points (left out), +inf for a non-finite prediction (counted in `n`, `nonfinite`, FR and AUC).
        subsets: [N] subset name per image, or None. When any is set, `subsets` reports each subset and "full".
        norm: the normaliser's name, reported as `norm`.
        total: the name of the whole set, reported as `subset` and as its row in `subsets` ("full" is 300-W's
            common + challenging; "300w-private" the private set; a subset's own name when one is scored).

    Returns:
        {"nme" (%, mean of the finite errors), "auc@0.08", "auc@0.10" (fractions), "fr@0.08", "fr@0.10" (%), "n"
        (scored images, non-finite ones included), "nonfinite" (images whose prediction is not finite), "norm",
        "subset" [, "subsets"]}.
    """
    errors = np.asarray(errors, dtype=np.float64)
    out: dict = {**_face_keys(errors), "norm": norm, "subset": total}
    names = sorted({s for s in (subsets or ()) if s is not None})
    if names:
        labels = np.array([s or "" for s in subsets], dtype=object)
        out["subsets"] = {name: _face_keys(errors[labels == name]) for name in names}
        out["subsets"][total] = _face_keys(errors)
    return out



def pckh_mean(result: metrics.PCKhResult, style: str = "mpii") -> float:
    """The headline PCKh (a fraction) of one threshold in a `PCKH_STYLES` style: "mpii" — the 14 joints without
    pelvis and thorax pooled by visible counts (`PCKhResult.mean` of `MPII_HEADLINE`); "original" — the plain mean
    of the per-joint values of `ORIGINAL_JOINTS`, joints never visible left out, as the original code logs it."""
    if style not in PCKH_STYLES:
        raise CunetError(f"unknown PCKh style {style!r}; choose one of {', '.join(PCKH_STYLES)}")
    if style == "mpii":
        return result.mean
    return metrics.group_means(result.per_joint, {"original": ORIGINAL_JOINTS})["original"]


def pckh(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, headboxes: np.ndarray,
         thr: float = 0.5) -> metrics.PCKhResult:
    """MPII PCKh at `thr` with the MPII tables (`MPII_HEADLINE`, `MPII_GROUPS`); a one-line error for not 16 joints
    or a person whose head size is unusable."""
    if np.asarray(gt).shape[1] != len(MPII_JOINTS):
        raise CunetError(f"PCKh needs the {len(MPII_JOINTS)} MPII joints, got {np.asarray(gt).shape[1]} points")
    return _metric(metrics.pckh, pred, gt, mask, headboxes, thr, headline=MPII_HEADLINE, groups=MPII_GROUPS)


def summarize_pose(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, headboxes: np.ndarray,
                   style: str = "mpii") -> dict:
    """The pose metric JSON.

    Args:
        pred: predicted joints [N, 16, 2]; gt: ground truth [N, 16, 2]; mask: [N, 16] annotated;
        headboxes: [N, 4] head boxes (x1, y1, x2, y2).
        style: which headline `pckh@0.5` and `pckh@0.1` are (`PCKH_STYLES`, see `pckh_mean`).

    Returns:
        {"pckh@0.5", "pckh@0.1" (%, the `style` headline), "pckh_style", "per_joint" (name → %), "per_group"
        (column → %, the mean of its left and right joints; "head" is the head top), "pckh_auc" (%, the normalised
        area under the 14-joint headline PCKh over thresholds (0, 0.5], exact), "n" (people), "joints" (visible
        joints in the 14-joint headline), "nonfinite" (people with a non-finite prediction of an annotated joint)}.

    Raises:
        CunetError: not 16 joints, an unknown style, or a person with visible joints and no usable head size.
    """
    at5, at1 = pckh(pred, gt, mask, headboxes, 0.5), pckh(pred, gt, mask, headboxes, 0.1)
    err = _metric(metrics.point_errors, pred, gt, mask)
    return {
        "pckh@0.5": 100 * pckh_mean(at5, style),
        "pckh@0.1": 100 * pckh_mean(at1, style),
        "pckh_style": style,
        "per_joint": {name: 100 * float(v) for name, v in zip(MPII_JOINTS, at5.per_joint)},
        "per_group": {name: 100 * v for name, v in at5.per_group.items()},
        "pckh_auc": 100 * _metric(metrics.pckh_auc, pred, gt, mask, headboxes, 0.5, headline=MPII_HEADLINE),
        "n": int(len(gt)),
        "joints": int(at5.visible[list(MPII_HEADLINE)].sum()),
        "nonfinite": int(np.isposinf(err).any(axis=1).sum()),
    }


def joint_correct(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, headboxes: np.ndarray,
                  thr: float = 0.5) -> np.ndarray:
    """Per person and joint [N, 16]: 1 within `thr` head sizes, 0 outside (or not finite), NaN not visible."""
    return _metric(metrics.joint_correct, pred, gt, mask, headboxes, thr)

"""Temporal stability of landmarks on video: jitter, and the per-video metric JSON of `cunet evaluate` / `metrics`.

Jitter is the velocity error of a prediction, normalised like NME:

    jitter = mean over frames t >= 1 and points k of  || (p_t,k - p_t-1,k) - (g_t,k - g_t-1,k) || / d_t

with p the predictions, g the ground truth and d_t the inter-ocular distance of frame t's ground truth (the NME
normaliser). It is 0 for a prediction that moves exactly as the face does, whatever its static offset (a constant
error is NME's business, not jitter's), and it grows with frame-to-frame noise and with lag. Pairs of frames where
either frame lacks the point's ground truth or has a non-finite prediction are left out (NME counts a non-finite
prediction as a failure; a velocity cannot be formed from it). Over several videos, jitter is pooled over all
their (pair, point) terms, as NME is pooled over all their frames.

Pure numpy, no state, no I/O, in the style of `cunet.evaluate.metrics`: fractions in, fractions out; the summary
helper converts to the percent of the JSON keys ("nme", "jitter").
"""

from __future__ import annotations

import numpy as np

__all__ = ["velocity_errors", "jitter", "summarize_videos"]


def velocity_errors(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None, norm: np.ndarray) -> np.ndarray:
    """Per frame pair and point, the normalised velocity error of one sequence.

    Args:
        pred: [T, K, 2] predicted points of consecutive frames.
        gt: [T, K, 2] ground truth; NaN marks an unannotated point (or a frame without annotation).
        mask: [T, K] True where the point is annotated (None: all finite ground truth).
        norm: [T] the normaliser of each frame (inter-ocular distance in pixels).

    Returns:
        [T-1, K] errors as fractions of norm[t] for the pair (t-1, t); NaN where the pair is not scored.
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be [T, K, 2]")
    norm = np.asarray(norm, dtype=np.float64)
    if norm.shape != (len(gt),):
        raise ValueError(f"norm must be [T] = [{len(gt)}], got {norm.shape}")
    ok = np.isfinite(gt).all(axis=-1) & np.isfinite(pred).all(axis=-1)
    if mask is not None:
        ok &= np.asarray(mask, dtype=bool)
    if len(gt) < 2:
        return np.zeros((0, gt.shape[1]))
    diff = (pred[1:] - pred[:-1]) - (gt[1:] - gt[:-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.linalg.norm(diff, axis=-1) / norm[1:, None]
    scored = ok[1:] & ok[:-1] & (np.isfinite(norm[1:]) & (norm[1:] > 0))[:, None]
    return np.where(scored, err, np.nan)


def jitter(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None, norm: np.ndarray) -> float:
    """The mean of `velocity_errors` over every scored (pair, point): a fraction of the normaliser (NaN if none)."""
    err = velocity_errors(pred, gt, mask, norm)
    return float(np.nanmean(err)) if np.isfinite(err).any() else float("nan")


def summarize_videos(per_video: dict[str, tuple[np.ndarray, np.ndarray]], face_summary: dict) -> dict:
    """The video metric JSON.

    Args:
        per_video: video name → (per-frame NME [T] as fractions, NaN for unscored frames; `velocity_errors`
            [T-1, K]).
        face_summary: `cunet.evaluate.scoring.summarize_face` of all scored frames together.

    Returns:
        `face_summary` plus "jitter" (%, pooled over every video's scored pairs and points), "pairs" (frame pairs
        with at least one scored point) and "videos": {name: {"nme" (%), "jitter" (%), "n" (frames scored),
        "pairs"}}.
    """
    videos = {}
    pooled = []
    for name, (nme_errors, vel) in per_video.items():
        nme_errors, vel = np.asarray(nme_errors, dtype=np.float64), np.asarray(vel, dtype=np.float64)
        scored = nme_errors[~np.isnan(nme_errors)]
        pooled.append(vel[np.isfinite(vel)])
        videos[name] = {
            "nme": 100 * float(np.mean(scored)) if len(scored) else float("nan"),
            "jitter": 100 * float(np.nanmean(vel)) if np.isfinite(vel).any() else float("nan"),
            "n": int(len(scored)),
            "pairs": int(np.isfinite(vel).any(axis=1).sum()) if vel.size else 0,
        }
    every = np.concatenate(pooled) if pooled else np.zeros(0)
    return {**face_summary, "jitter": 100 * float(every.mean()) if len(every) else float("nan"),
            "pairs": int(sum(v["pairs"] for v in videos.values())), "videos": videos}

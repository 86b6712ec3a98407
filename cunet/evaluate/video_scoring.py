"""Score per-frame landmarks of 300-VW-layout videos: NME per frame and jitter per video (`cunet metrics` on videos).

Ground truth is a 300-VW-layout folder (`cunet.data.video.read_video_dataset`); predictions mirror it:
`PRED/NNN/annot/000001.pts` ... (what `cunet evaluate --save-predictions` writes for a video dataset). The batch
rule of `cunet.evaluate.scoring` holds: each ground-truth frame without a prediction is listed in "missing", an
unreadable or wrong-sized one in "bad", prediction files outside the scored set are counted in "ignored".

`score_sequence` is the shared core: `cunet evaluate` calls it with the predictions it has just made, `cunet
metrics` with the ones it read, so both give the same numbers for the same points. With a smoothing config the
predictions are first filtered in frame order (`cunet.data.smooth`), at index / fps seconds (the ground truth's
video's frame rate, or `DEFAULT_FOLDER_FPS` without a video), speeds in landmark-box sizes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cunet.data.smooth import SmoothConfig, make_filter
from cunet.errors import CunetError
from cunet.evaluate import scoring, temporal

__all__ = ["smooth_sequence", "score_sequence", "score_videos", "summarize"]


def smooth_sequence(points: np.ndarray, fps: float, config: SmoothConfig) -> np.ndarray:
    """Filter a sequence [T, K, 2] (NaN rows: frames without a prediction, passed through) at t = index / fps."""
    f = make_filter(config)
    out = np.array(points, dtype=np.float64)
    if f is None:
        return out
    for i, p in enumerate(out):
        if np.isfinite(p).all():
            side = float(np.max(p.max(axis=0) - p.min(axis=0)))
            out[i] = f(p, i / fps, max(side, 1.0))
    return out


def score_sequence(pred: np.ndarray, gt: np.ndarray, norm: str) -> tuple[np.ndarray, np.ndarray]:
    """(per-frame NME [T] as fractions, NaN where the frame has no ground truth or prediction;
    `temporal.velocity_errors` [T-1, K]) of one sequence of consecutive frames.

    Args:
        pred: [T, K, 2] predictions (a NaN row: no prediction for that frame).
        gt: [T, K, 2] ground truth (a NaN row: no annotation for that frame).
        norm: a key of `cunet.evaluate.scoring.NORMS`.
    """
    have = np.isfinite(gt).all(axis=(1, 2)) & ~np.isnan(pred).all(axis=(1, 2))
    nme = np.full(len(gt), np.nan)
    if have.any():
        mask = np.isfinite(gt[have]).all(axis=-1)
        nme[have] = scoring.per_image_nme(pred[have], gt[have], mask, norm)
    normaliser = np.full(len(gt), np.nan)
    annotated = np.isfinite(gt).all(axis=(1, 2))
    if annotated.any():
        normaliser[annotated] = scoring.NORMS[norm](gt[annotated])
    return nme, temporal.velocity_errors(pred, gt, None, normaliser)


def summarize(per_video: dict[str, tuple[np.ndarray, np.ndarray]], norm: str) -> dict:
    """`temporal.summarize_videos` with the face keys of every scored frame (subset "videos")."""
    frames = [e[~np.isnan(e)] for e, _ in per_video.values()]
    errors = np.concatenate(frames) if frames else np.zeros(0)
    return temporal.summarize_videos(per_video, scoring.summarize_face(errors, None, norm, total="videos"))


def score_videos(gt_root: str | Path, pred_root: str | Path, norm: str = "inter-ocular",
                 smooth: SmoothConfig | None = None) -> dict:
    """Score a prediction folder against a 300-VW-layout ground truth (module docstring).

    Returns:
        `summarize` plus "missing", "bad", "ignored" (`scoring.batch_keys`) and "smooth".

    Raises:
        CunetError: missing folders, an unknown normaliser, or nothing at all to score.
    """
    from cunet.data.formats import FormatError, read_pts
    from cunet.data.video import DEFAULT_FOLDER_FPS, annot_name, open_video, read_video_dataset

    gt_root, pred_root = Path(gt_root), Path(pred_root)
    smooth = smooth or SmoothConfig()
    if norm not in scoring.NORMS:
        raise CunetError(f"unknown normaliser {norm!r}; choose one of {', '.join(scoring.NORMS)}")
    if not pred_root.is_dir():
        raise CunetError(f"{pred_root}: prediction folder not found")
    sequences = read_video_dataset(gt_root)
    missing: list[str] = []
    bad: list[tuple[str, str]] = []
    wanted: set[str] = set()
    per_video = {}
    for seq in sequences:
        if not seq.annotations:
            continue
        length = max(seq.annotations) + 1
        gt, pred = None, None
        for i, gt_file in seq.annotations.items():
            rel = f"{seq.name}/annot/{annot_name(i)}"
            wanted.add(rel)
            try:
                g = read_pts(gt_file)
            except FormatError as e:
                bad.append((e.file, e.problem))
                continue
            if gt is None:
                gt, pred = np.full((length, len(g), 2), np.nan), np.full((length, len(g), 2), np.nan)
            if len(g) != gt.shape[1]:
                bad.append((str(gt_file), f"{len(g)} points, but frame 1 of this video has {gt.shape[1]}"))
                continue
            gt[i] = g
            if not (pred_root / rel).is_file():
                missing.append(str(gt_file))
                continue
            try:
                p = read_pts(pred_root / rel)
            except FormatError as e:
                bad.append((e.file, e.problem))
                continue
            if p.shape != g.shape:
                bad.append((str(pred_root / rel), f"{len(p)} points but the ground truth {gt_file} has {len(g)}"))
                continue
            pred[i] = p
        if gt is None or pred is None:
            continue
        fps = DEFAULT_FOLDER_FPS
        if seq.video is not None and smooth.method.value != "none":
            try:
                with open_video(seq.video) as reader:
                    fps = reader.fps
            except CunetError as e:
                bad.append((str(seq.video), f"{str(e).removeprefix(f'{seq.video}: ')} (its frame rate is needed "
                                            "to smooth; scored at the default rate)"))
        per_video[seq.name] = score_sequence(smooth_sequence(pred, fps, smooth), gt, norm)
    if not any((~np.isnan(e)).any() for e, _ in per_video.values()):
        raise CunetError(f"{pred_root}: no frame could be scored against {gt_root}: {len(missing)} missing, "
                         f"{len(bad)} bad")
    have = {f.relative_to(pred_root).as_posix() for f in pred_root.rglob("*.pts")}
    return {**summarize(per_video, norm), **scoring.batch_keys(missing, bad, len(have - wanted)),
            "smooth": smooth.to_dict()}

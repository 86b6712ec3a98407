"""`cunet evaluate MODEL --data VIDEOS`: NME and jitter of a model on a 300-VW-layout folder, per video and overall.

Each video is run through the same `Tracker` as `cunet predict` (what a user of the model on video gets): frame 0
is cropped from its ground-truth landmark box (enlarged by the model's margin, as still-image evaluation crops),
every later frame from the previous frame's predicted landmarks, and when the tracker loses the face it is
re-detected from that frame's ground-truth box (the evaluation's stand-in for a detector, so the numbers measure
the landmark model and the tracking, not a face detector). `smooth` filters the points as predict does. Scores come
from `cunet.evaluate.video_scoring.score_sequence`, the code `cunet metrics` runs on saved predictions; with
`save_predictions` the points are written as `DIR/NNN/annot/000001.pts` ..., so
`cunet metrics --task face --gt VIDEOS --pred DIR` gives the same numbers (without `--smooth` there: the saved
points are already smoothed).

A frame that cannot be decoded is left out (named in "skipped", exit 1 in the CLI) and tracking goes on; a video
that cannot be opened is left out the same way; `strict` stops at the first instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from cunet.batch import Skips
from cunet.data.preprocess import Box, box_from_points
from cunet.data.smooth import SmoothConfig
from cunet.errors import CunetError
from cunet.pipeline.track import DEFAULT_MIN_SCORE, PredictorLandmarker, TrackConfig, Tracker, TrackSources

__all__ = ["evaluate_videos"]

#: Called after each frame with (frames done, frames in total).
Progress = Callable[[int, int], None]


class _TruthBoxes:
    """A `FaceDetector` that answers with the current frame's ground-truth landmark box (set before each step)."""

    name = "ground truth"

    def __init__(self) -> None:
        self.current: tuple[float, float, float, float] | None = None

    def detect(self, image: np.ndarray) -> list[Any]:
        from cunet.runtime.detector import Detection

        return [] if self.current is None else [Detection(self.current, 1.0)]


def _truth(seq: Any) -> np.ndarray | None:
    """[T, K, 2] ground truth of a sequence (NaN rows for frames without annotation), or None without any."""
    from cunet.data.formats import read_pts

    if not seq.annotations:
        return None
    first = read_pts(next(iter(seq.annotations.values())))
    gt = np.full((max(seq.annotations) + 1, len(first), 2), np.nan)
    for i, f in seq.annotations.items():
        gt[i] = read_pts(f)
    return gt


def evaluate_videos(model_path: str | Path, data_root: str | Path, backend: str = "auto", threads: int | None = None,
                    smooth: SmoothConfig | None = None, min_score: float = DEFAULT_MIN_SCORE,
                    norm: str = "inter-ocular", save_predictions: str | Path | None = None,
                    progress: Progress | None = None, strict: bool = False) -> dict[str, Any]:
    """Track every video of a 300-VW-layout folder with a model and score it (module docstring).

    Returns:
        The `cunet metrics` JSON of videos (`video_scoring.summarize`: "nme", "auc@*", "fr@*", "n" (frames),
        "jitter", "pairs", "videos" {name: {"nme", "jitter", "n", "pairs"}}) plus "model", "task", "backend",
        "provider", "smooth", "redetections" (per video) and "skipped" ([{"file", "problem"}]).

    Raises:
        CunetError: an unreadable model or dataset, a model that is not a 68-point face model, nothing scored.

    `save_predictions` is written under the rule of `cunet evaluate --save-predictions` (`cunet.io`): the running
    command's write policy or, called from Python without one, that command's own.
    """
    args = dict(locals())  # first: the parameters, passed on as they came
    from cunet.io import Output, WritePolicy, writing

    outputs = [Output(Path(save_predictions), "cunet evaluate", "--save-predictions", folder=True)
               ] if save_predictions is not None else []
    with writing(WritePolicy(outputs, [model_path, data_root]), default=True):
        return _evaluate_videos(**args)


def _evaluate_videos(model_path, data_root, backend, threads, smooth, min_score, norm, save_predictions, progress,
                     strict) -> dict[str, Any]:
    from cunet.data.formats import write_pts
    from cunet.data.video import annot_name, open_video, read_video_dataset
    from cunet.evaluate.video_scoring import score_sequence, summarize
    from cunet.io import check_writable
    from cunet.runtime import open_predictor

    smooth = smooth or SmoothConfig()
    sequences = [s for s in read_video_dataset(data_root) if s.video is not None and s.annotations]
    if not sequences:
        raise CunetError(f"{data_root}: no video with annotations (NNN/vid.avi + NNN/annot/*.pts)")
    truths = {s.name: _truth(s) for s in sequences}
    total = sum(len(t) for t in truths.values() if t is not None)
    per_video: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    skips = Skips(strict)  # the batch rule of every command (`cunet.batch`)
    redetections: dict[str, int] = {}
    done = 0
    save = Path(save_predictions) if save_predictions is not None else None
    if save is not None:  # before any inference: a .pts of someone else's where a prediction would go
        check_writable(save / name / "annot" / annot_name(i) for name, t in truths.items() if t is not None
                       for i in range(len(t)))
    with open_predictor(model_path, backend=backend, threads=threads) as p:
        if p.meta.task != "face":
            raise CunetError(f"{model_path}: a {p.meta.task} model; video datasets (300-VW) are faces")
        model = PredictorLandmarker(p)
        for seq in sequences:
            gt = truths[seq.name]
            assert gt is not None
            if gt.shape[1] != model.num_landmarks:
                raise CunetError(f"{model_path}: predicts {model.num_landmarks} landmarks but {data_root} has "
                                 f"{gt.shape[1]}")
            truth_boxes = _TruthBoxes()
            first = _gt_box(gt[0], model.box_margin)
            tracker = Tracker(model, TrackSources(first=first, detector=truth_boxes, label="ground truth"),
                              TrackConfig(min_score=min_score, smooth=smooth))
            pred = np.full((max(len(gt), 1), model.num_landmarks, 2), np.nan)
            try:
                with open_video(seq.video) as reader:
                    for frame in reader:
                        row = gt[frame.index] if frame.index < len(gt) else None
                        truth_boxes.current = None if row is None or not np.isfinite(row).all() else \
                            (*row.min(axis=0), *row.max(axis=0))
                        tracked = tracker.step(frame)
                        if tracked.problem is not None:
                            skips.add(seq.video, tracked.problem)
                        elif frame.index < len(pred) and tracked.points is not None:
                            pred[frame.index] = tracked.points
                        done += 1
                        if progress is not None:
                            progress(min(done, total), total)
                    if reader.ended_early:
                        skips.add(seq.video, reader.ended_early)
            except CunetError as e:
                skips.add_error(seq.video, e)
                continue
            redetections[seq.name] = tracker.redetections
            if save is not None:
                for i in np.flatnonzero(np.isfinite(pred).all(axis=(1, 2)) & np.isfinite(gt).all(axis=(1, 2))):
                    write_pts(save / seq.name / "annot" / annot_name(int(i)), pred[i])
            per_video[seq.name] = score_sequence(pred, gt, norm)
        ran = {"model": str(model_path), "task": "face", "backend": p.backend, "provider": p.provider}
    if not any((~np.isnan(e)).any() for e, _ in per_video.values()):
        first_problem = f" (first: {skips.items[0].file}: {skips.items[0].problem})" if skips else ""
        raise CunetError(f"{data_root}: no frame could be predicted and scored{first_problem}")
    return {**summarize(per_video, norm), **ran, "smooth": smooth.to_dict(), "redetections": redetections,
            "skipped": skips.to_json()}


def _gt_box(points: np.ndarray, margin: float) -> Box | None:
    return box_from_points(points, margin=margin) if np.isfinite(points).all() else None

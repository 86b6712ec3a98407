"""Landmarks over a video: track the face (or person) from frame to frame, re-detect when it is lost, smooth.

The loop of MediaPipe's face pipeline, with a cunet model as its landmark stage:

1. Box. Frame 0's box comes from the caller (`TrackSources`: `--boxes`, one box for frame 0 or one per frame),
   else from the face detector (`cunet[detect]`), else the whole frame. Every later frame's box is the previous
   frame's landmark box enlarged by the model's own crop margin (`ModelMeta.box_margin`, 1.25 for cunet's
   models): the crop the model was trained on. Detection runs only when tracking is lost, not on every frame.
2. Lost. After each prediction the tracker checks it: the mean heatmap peak score below `min_score`
   (`DEFAULT_MIN_SCORE`; a landmark heatmap peaks near 1 on its point and stays low on a crop without the face),
   or the next box less than `min_inside` inside the frame (the face leaving the picture). A lost frame is
   predicted again at once from a fresh box (the detector's, or without one the first frame's box source), so a
   cut costs no wrong frame when the detector finds the face; the smoothing filter restarts there.
3. Smoothing. `--smooth one-euro` filters the points over time (`cunet.data.smooth`), at the frame's timestamp,
   with speeds measured in landmark-box sizes. The next box always comes from the raw points: the filter's lag
   must not drag the crop.

Per-frame boxes (a list in `--boxes`) switch tracking off while they last: frame i is cropped from box i (frames
after the list are tracked from there). A given box that lies (almost) wholly outside its frame
(`cunet.data.preprocess.box_problem`) skips that frame with the reason, as a still image with such a box is skipped;
a bad frame-0 box is not used again when tracking is later lost.
Every stage is timed (`StageTimes`), so `cunet profile --video` reports where a frame's time goes.
The landmark model is a `Landmarker`: `PredictorLandmarker` wraps a `cunet.runtime.Predictor`; anything with the
same two members can stand in (a test's perfect model, another runtime).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from cunet.data.preprocess import MPII_SCALE_MARGIN, Box, box_from_points, box_from_xyxy, box_problem
from cunet.data.smooth import SmoothConfig, make_filter
from cunet.data.video import Frame

__all__ = ["DEFAULT_MIN_SCORE", "DEFAULT_MIN_INSIDE", "STAGES", "TrackConfig", "TrackSources", "TrackedFrame",
           "StageTimes", "Landmarker", "PredictorLandmarker", "Tracker", "box_inside_fraction"]

#: Mean heatmap peak below which the face counts as lost. Measured with a trained cunet-tiny on synthetic 300-VW
#: sequences (docs/video.md): its mean peak is 0.45-0.85 on a tracked face and 0.05-0.2 on crops without one.
DEFAULT_MIN_SCORE = 0.3
#: A next box with less than this fraction of its area inside the frame means the face is leaving it.
DEFAULT_MIN_INSIDE = 0.5
#: The timed stages of one frame, in order (`decode` = reading the frame, `landmarks` = heatmaps → points).
STAGES = ("decode", "detect/track", "crop", "inference", "landmarks", "smooth")


@dataclass(frozen=True)
class TrackConfig:
    """How frames are tracked.

    Attributes:
        min_score: mean heatmap peak below which the face is lost (re-detect).
        min_inside: fraction of the next box inside the frame below which the face is lost.
        smooth: the temporal filter (`cunet.data.smooth.SmoothConfig`).
    """

    min_score: float = DEFAULT_MIN_SCORE
    min_inside: float = DEFAULT_MIN_INSIDE
    smooth: SmoothConfig = field(default_factory=SmoothConfig)

    def __post_init__(self) -> None:
        if not (0.0 <= self.min_score <= 1.0) or not (0.0 <= self.min_inside <= 1.0):
            raise ValueError(f"min_score and min_inside must be in [0, 1], got {self.min_score}, {self.min_inside}")


@dataclass(frozen=True)
class TrackSources:
    """Where boxes come from when the tracker has none.

    Attributes:
        first: frame 0's crop box (from `--boxes`), or None.
        per_frame: one crop box per frame (a list in `--boxes`: no tracking), or None.
        detector: a face detector (`cunet.runtime.detector.FaceDetector`), or None.
        label: how the box file is named in the output ("box file boxes.json").
    """

    first: Box | None = None
    per_frame: Sequence[Box] | None = None
    detector: Any = None
    label: str = "box file"


@dataclass(frozen=True)
class TrackedFrame:
    """What the tracker made of one frame.

    Attributes:
        index, time: the frame's 0-based number and timestamp (s).
        box: the crop box the points come from (None for a skipped frame).
        box_source: "tracked", "detector", the box file's label, or "whole frame".
        points: [K, 2] landmarks after smoothing (0-based pixels); raw: before smoothing. None when skipped.
        scores: [K] heatmap peak scores; score: their mean.
        lost: the prediction failed the checks (low score, box leaving the frame) even after re-detection.
        redetected: the box was found afresh on this frame (frame 0, or tracking was lost).
        problem: why the frame was skipped (it could not be decoded, its given box lies outside it), else None.
    """

    index: int
    time: float
    box: Box | None
    box_source: str
    points: np.ndarray | None
    raw: np.ndarray | None
    scores: np.ndarray | None
    score: float | None
    lost: bool
    redetected: bool
    problem: str | None = None


class StageTimes:
    """Nanoseconds per stage per frame (`STAGES`), accumulated while tracking."""

    def __init__(self) -> None:
        self.frames: list[dict[str, int]] = []
        self._current: dict[str, int] = {}

    def add(self, stage: str, ns: int) -> None:
        self._current[stage] = self._current.get(stage, 0) + ns

    def end_frame(self) -> None:
        self.frames.append({s: self._current.get(s, 0) for s in STAGES})
        self._current = {}

    def array(self) -> np.ndarray:
        """[frames, stages] nanoseconds."""
        return np.array([[f[s] for s in STAGES] for f in self.frames], dtype=np.int64).reshape(-1, len(STAGES))


class Landmarker(Protocol):
    """A landmark model as the tracker uses it."""

    num_landmarks: int
    box_margin: float

    def landmarks(self, image: np.ndarray, box: Box, times: StageTimes) -> tuple[np.ndarray, np.ndarray]:
        """(points [K, 2] in image pixels, scores [K]) of one crop; adds its crop/inference/landmarks times."""
        ...


class PredictorLandmarker:
    """A `cunet.runtime.Predictor` as a `Landmarker`: its three stages, each timed."""

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor
        meta = predictor.meta
        self.num_landmarks = meta.num_landmarks
        # faces: the model's own margin; people: the MPII crop's 1.25 around the joints' box
        self.box_margin = meta.box_margin if meta.task == "face" else MPII_SCALE_MARGIN

    def landmarks(self, image: np.ndarray, box: Box, times: StageTimes) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter_ns()
        x, affines = self.predictor.preprocess([image], [box])
        t1 = time.perf_counter_ns()
        heatmaps = self.predictor.predict_heatmaps(x)
        t2 = time.perf_counter_ns()
        points, scores = self.predictor.postprocess_scores(heatmaps, affines, [box])
        t3 = time.perf_counter_ns()
        times.add("crop", t1 - t0)
        times.add("inference", t2 - t1)
        times.add("landmarks", t3 - t2)
        return points[0], scores[0]


def box_inside_fraction(box: Box, width: int, height: int) -> float:
    """The fraction of a square crop box's area inside a `width` x `height` frame (pixel edges at -0.5, W - 0.5)."""
    half = box.size / 2
    x1, x2 = max(box.cx - half, -0.5), min(box.cx + half, width - 0.5)
    y1, y2 = max(box.cy - half, -0.5), min(box.cy + half, height - 0.5)
    return max(0.0, x2 - x1) * max(0.0, y2 - y1) / (box.size * box.size)


def _whole(image: np.ndarray) -> Box:
    h, w = image.shape[:2]
    return Box((w - 1) / 2.0, (h - 1) / 2.0, float(max(h, w)))


class Tracker:
    """Feed it frames in order (`step`); it returns a `TrackedFrame` per frame (module docstring)."""

    def __init__(self, model: Landmarker, sources: TrackSources | None = None,
                 config: TrackConfig | None = None) -> None:
        self.model = model
        self.sources = sources or TrackSources()
        self.config = config or TrackConfig()
        self.times = StageTimes()
        self._box: Box | None = None
        self._filter = make_filter(self.config.smooth)
        self.redetections = 0
        self._first = self.sources.first  # None once frame 0's given box proved to lie outside the frame

    def _fresh_box(self, frame: Frame) -> tuple[Box, str]:
        """A box found afresh: frame 0's given box, the detector's best face, or the whole frame."""
        image = frame.image
        assert image is not None
        if self._first is not None and self.redetections == 0:
            return self._first, self.sources.label
        if self.sources.detector is not None:
            found = self.sources.detector.detect(image)
            if found:
                return box_from_xyxy(*found[0].box, margin=self.model.box_margin), "detector"
        if self._first is not None:
            return self._first, self.sources.label
        return _whole(image), "whole frame"

    def _predict(self, frame: Frame, box: Box) -> tuple[np.ndarray, np.ndarray, Box | None]:
        """(points, scores, the next frame's box or None when the face is lost)."""
        image = frame.image
        assert image is not None
        points, scores = self.model.landmarks(image, box, self.times)
        t0 = time.perf_counter_ns()
        nxt: Box | None = None
        finite = np.isfinite(points).all(axis=1)
        if finite.any() and float(np.nanmean(scores)) >= self.config.min_score:
            candidate = box_from_points(points[finite], margin=self.model.box_margin)
            h, w = image.shape[:2]
            if box_inside_fraction(candidate, w, h) >= self.config.min_inside:
                nxt = candidate
        self.times.add("detect/track", time.perf_counter_ns() - t0)
        return points, scores, nxt

    def _given_box_problem(self, frame: Frame, box: Box, source: str) -> TrackedFrame | None:
        """The skipped frame when `box` comes from the box file and lies (almost) wholly outside `frame`, else None."""
        if source != self.sources.label:
            return None
        h, w = frame.image.shape[:2]  # type: ignore[union-attr]  (decoded frames only reach here)
        problem = box_problem(box, w, h)
        if problem is None:
            return None
        if box is self._first:
            self._first = None
        self._box = None
        return TrackedFrame(frame.index, frame.time, None, source, None, None, None, None, False, False,
                            f"frame {frame.index}: {source}: {problem}")

    def step(self, frame: Frame, decode_ns: int = 0) -> TrackedFrame:
        """Track one frame (frames must come in order; `decode_ns` is the time it took to read it)."""
        self.times.add("decode", decode_ns)
        try:
            if frame.image is None:
                return TrackedFrame(frame.index, frame.time, None, "", None, None, None, None, False, False,
                                    frame.problem or "frame could not be decoded")
            return self._step(frame)
        finally:
            self.times.end_frame()

    def _step(self, frame: Frame) -> TrackedFrame:
        per_frame = self.sources.per_frame
        redetected = False
        t0 = time.perf_counter_ns()
        if per_frame is not None and frame.index < len(per_frame):
            box, source = per_frame[frame.index], self.sources.label
        elif self._box is not None:
            box, source = self._box, "tracked"
        else:
            box, source = self._fresh_box(frame)
            redetected = True
            self.redetections += 1
        self.times.add("detect/track", time.perf_counter_ns() - t0)
        skipped = self._given_box_problem(frame, box, source)
        if skipped is not None:
            return skipped
        points, scores, nxt = self._predict(frame, box)
        if nxt is None and source == "tracked":  # lost while tracking: find the face afresh on this same frame
            t0 = time.perf_counter_ns()
            box, source = self._fresh_box(frame)
            redetected = True
            self.redetections += 1
            self.times.add("detect/track", time.perf_counter_ns() - t0)
            points, scores, nxt = self._predict(frame, box)
        self._box = nxt
        t0 = time.perf_counter_ns()
        smoothed = points
        if self._filter is not None:
            if redetected:
                self._filter.reset()
            smoothed = self._filter(points, frame.time, box.size / self.model.box_margin)
        self.times.add("smooth", time.perf_counter_ns() - t0)
        return TrackedFrame(frame.index, frame.time, box, source, smoothed, points, scores,
                            float(np.nanmean(scores)) if np.isfinite(scores).any() else None, nxt is None, redetected)

"""The tracker's decisions (keep the box, re-detect, lost) on synthetic sequences, with a perfect landmark model.

`PerfectModel` is a `Landmarker` that knows the true points of the frame being tracked: it renders the training
heatmaps of the points as they fall in the crop it is given (nothing where a point is outside the crop) and decodes
them with cunet's real decoder and crop geometry. So its points are right where the crop holds the face, and its
heatmap peaks drop where the crop misses it: the two facts the tracker acts on. The detector is the frame's
ground-truth box (`TruthDetector`); tests/data/test_detector.py tests the real one.
"""

from __future__ import annotations

import numpy as np
import pytest

from cunet.data.decode import decode, heatmap_to_image
from cunet.data.heatmaps import gaussian_targets, input_to_heatmap
from cunet.data.preprocess import Box, apply_affine, box_from_points, crop_affine
from cunet.data.smooth import SmoothConfig
from cunet.data.video import Frame
from cunet.pipeline.track import TrackConfig, Tracker, TrackSources, box_inside_fraction
from cunet.runtime.detector import Detection

SIZE, STRIDE = 256, 4  # heatmaps of 64² with σ = 2, where DARK decodes a Gaussian to < 1e-5 px


class PerfectModel:
    num_landmarks = 68
    box_margin = 1.25

    def __init__(self, truth: np.ndarray) -> None:
        self.truth, self.index, self.calls = truth, 0, 0

    def landmarks(self, image, box, times):
        self.calls += 1
        m = crop_affine(box, SIZE)
        hm = input_to_heatmap(apply_affine(self.truth[self.index], m), STRIDE)
        inside = ((hm > 0) & (hm < SIZE // STRIDE - 1)).all(axis=1)
        target, _ = gaussian_targets(np.where(inside[:, None], hm, np.nan), inside, SIZE // STRIDE)
        coords, scores = decode(target[None])
        return heatmap_to_image(coords, m[None], STRIDE)[0], scores[0]


class TruthDetector:
    name = "truth"

    def __init__(self, truth: np.ndarray) -> None:
        self.truth, self.index, self.calls = truth, 0, 0

    def detect(self, image):
        self.calls += 1
        p = self.truth[self.index]
        return [Detection((*p.min(axis=0), *p.max(axis=0)), 1.0)]


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """68 points of a synthetic face about 40 px wide, centred in a 200 x 160 frame."""
    from cunet.data.synth_face import make_face

    _, pts = make_face(np.random.default_rng(0), 0.2, 64)
    pts = (pts - pts.mean(axis=0)) * 0.8
    return pts + np.array([100.0, 80.0])


def _run(truth: np.ndarray, sources_for, config: TrackConfig | None = None):
    model, detector = PerfectModel(truth), TruthDetector(truth)
    tracker = Tracker(model, sources_for(detector), config)
    image = np.zeros((160, 200, 3), np.uint8)
    out = []
    for i in range(len(truth)):
        model.index = detector.index = i
        out.append(tracker.step(Frame(i, i / 25, image)))
    return out, tracker, model, detector


def _moving(face: np.ndarray, steps: list[tuple[float, float]]) -> np.ndarray:
    return np.stack([face + np.asarray(s) for s in steps])


def test_tracks_a_moving_face_with_one_detection(face) -> None:
    truth = _moving(face, [(1.5 * i, -1.0 * i) for i in range(10)])
    frames, tracker, model, detector = _run(truth, lambda d: TrackSources(detector=d))
    assert detector.calls == 1 and tracker.redetections == 1 and model.calls == 10
    assert [f.box_source for f in frames] == ["detector"] + ["tracked"] * 9
    assert not any(f.lost for f in frames) and frames[0].redetected and not frames[1].redetected
    assert max(np.abs(f.points - t).max() for f, t in zip(frames, truth)) < 0.05
    # the next box is this frame's landmark box with the model's margin
    assert frames[4].box == box_from_points(frames[3].raw, margin=1.25)


def test_a_cut_is_redetected_on_the_same_frame(face) -> None:
    truth = _moving(face, [(0.0, 0.0)] * 5 + [(60.0, 30.0)] * 5)  # the face jumps at frame 5
    frames, tracker, model, detector = _run(truth, lambda d: TrackSources(detector=d))
    cut = frames[5]
    assert cut.redetected and cut.box_source == "detector" and not cut.lost
    assert np.abs(cut.points - truth[5]).max() < 0.05  # no wrong frame at the cut
    assert tracker.redetections == 2 and detector.calls == 2 and model.calls == 11  # frame 5 ran twice
    assert all(f.box_source == "tracked" for f in frames[6:])


def test_without_a_detector_a_lost_face_falls_back_to_the_whole_frame(face) -> None:
    truth = _moving(face, [(0.0, 0.0)] * 3 + [(60.0, 30.0)] * 2)
    # no detector and no first box: frame 0 and the frame after the cut are cropped from the whole frame
    frames, *_ = _run(truth, lambda d: TrackSources())
    assert frames[0].box_source == "whole frame" and frames[3].redetected and frames[3].box_source == "whole frame"


def test_a_face_leaving_the_frame_is_lost(face) -> None:
    truth = _moving(face, [(12.0 * i, 0.0) for i in range(11)])  # 12 px a frame to the right, out of the frame
    frames, *_ = _run(truth, lambda d: TrackSources(detector=d))
    gone = [box_inside_fraction(box_from_points(t, margin=1.25), 200, 160) < 0.5 for t in truth]
    assert any(gone) and not gone[0]
    assert [f.lost for f in frames] == gone  # lost exactly where its next box would be mostly outside
    assert box_inside_fraction(Box(99.5, 79.5, 40.0), 200, 160) == 1.0
    assert box_inside_fraction(Box(199.5, 79.5, 40.0), 200, 160) == pytest.approx(0.5)


def test_per_frame_boxes_are_used_as_given_then_tracking_goes_on(face) -> None:
    truth = _moving(face, [(float(i), 0.0) for i in range(6)])
    given = [box_from_points(t, margin=1.3) for t in truth[:3]]
    frames, tracker, _, detector = _run(truth, lambda d: TrackSources(per_frame=given, detector=d, label="boxes"))
    assert [f.box for f in frames[:3]] == given and [f.box_source for f in frames] == ["boxes"] * 3 + ["tracked"] * 3
    assert detector.calls == 0 and tracker.redetections == 0


def test_smoothing_restarts_at_a_redetection(face) -> None:
    truth = _moving(face, [(0.0, 0.0), (2.0, 0.0), (4.0, 0.0), (60.0, 30.0), (62.0, 30.0)])
    config = TrackConfig(smooth=SmoothConfig("one-euro", 1.0, 0.0))
    frames, *_ = _run(truth, lambda d: TrackSources(detector=d), config)
    assert np.abs(frames[2].points - frames[2].raw).max() > 0.5  # smoothed (lagging) while tracked
    assert np.array_equal(frames[3].points, frames[3].raw)  # the filter starts afresh at the cut
    assert frames[4].points[0, 0] < frames[4].raw[0, 0]  # and smooths again from there

"""Jitter (velocity error / inter-ocular distance) on tiny hand-built sequences with exact expected values."""

from __future__ import annotations

import numpy as np
import pytest

from cunet.evaluate.temporal import jitter, summarize_videos, velocity_errors


def _seq(offsets: list[tuple[float, float]], k: int = 2) -> np.ndarray:
    base = np.arange(k * 2, dtype=np.float64).reshape(k, 2)
    return np.stack([base + np.asarray(o) for o in offsets])


def test_a_static_offset_has_no_jitter() -> None:
    gt = _seq([(0, 0), (3, 1), (5, -2)])
    pred = gt + np.array([4.0, -7.0])  # always 4 px right, 7 px up: NME's business, not jitter's
    assert jitter(pred, gt, None, np.full(3, 10.0)) == 0.0


def test_velocity_error_by_hand() -> None:
    gt = _seq([(0, 0), (0, 0), (0, 0)])  # the face holds still
    pred = gt.copy()
    pred[1:, 0] += (3.0, 4.0)  # point 0 jumps by 5 px in frame 1 and stays there
    err = velocity_errors(pred, gt, None, np.array([10.0, 10.0, 20.0]))
    # pair (0,1): point 0 moved 5 px, the truth 0 → 5/10; pair (1,2): nothing moved → 0
    assert np.array_equal(err, [[0.5, 0.0], [0.0, 0.0]])
    assert jitter(pred, gt, None, np.array([10.0, 10.0, 20.0])) == pytest.approx(0.125)


def test_pairs_without_truth_or_prediction_are_left_out() -> None:
    gt = _seq([(0, 0), (1, 0), (2, 0)])
    pred = gt.copy()
    pred[2, 1] = (7.0, 7.0)  # point 1 is off by some amount in frame 2 ...
    gt[1, 1] = np.nan  # ... but has no truth in frame 1: both of its pairs are unscored
    pred[0, 0] = np.inf  # point 0: no usable prediction in frame 0, only pair (1, 2) counts
    err = velocity_errors(pred, gt, None, np.full(3, 2.0))
    assert np.isnan(err[:, 1]).all() and np.isnan(err[0, 0]) and err[1, 0] == 0.0
    mask = np.ones((3, 2), bool)
    mask[:, 0] = False
    assert np.isnan(jitter(pred, gt, mask, np.full(3, 2.0)))


def test_summary_pools_pairs_over_videos() -> None:
    a = (np.array([0.01, 0.03]), np.array([[0.1, 0.3]]))  # 1 pair, 2 points
    b = (np.array([0.02, np.nan, 0.04]), np.array([[0.2, np.nan], [np.nan, np.nan]]))
    out = summarize_videos({"a": a, "b": b}, {"nme": 2.5, "n": 4})
    assert out["videos"]["a"] == {"nme": pytest.approx(2.0), "jitter": pytest.approx(20.0), "n": 2, "pairs": 1}
    assert out["videos"]["b"] == {"nme": pytest.approx(3.0), "jitter": pytest.approx(20.0), "n": 2, "pairs": 1}
    assert out["jitter"] == pytest.approx(100 * (0.1 + 0.3 + 0.2) / 3)  # pooled over terms, not videos
    assert out["pairs"] == 2 and out["nme"] == 2.5

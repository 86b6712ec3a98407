"""Hand-computed checks of the metric functions (every expected value is worked out in a comment).

`cunet.evaluate.metrics` is pure numpy: its index tables are arguments and its errors `ValueError`s (the MPII and
300-W tables are `cunet.evaluate.scoring`'s, tested in test_scoring.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from cunet.evaluate import metrics as M

CORNERS = (36, 45)
HEADLINE = tuple(j for j in range(16) if j not in (6, 7))


def _faces() -> np.ndarray:
    """Two 68-point faces: outer eye corners 100 px apart in image 0, 50 px apart in image 1."""
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 200, size=(2, 68, 2))
    gt[0, 36], gt[0, 45] = (10, 50), (110, 50)
    gt[1, 36], gt[1, 45] = (20, 20), (50, 60)  # 3-4-5 triangle scaled by 10: 50 px
    return gt


def test_point_errors_nan_where_unannotated_inf_where_prediction_missing():
    gt = np.array([[[0, 0], [np.nan, np.nan], [0, 0]]], dtype=float)
    pred = np.array([[[3, 4], [1, 1], [np.nan, 0]]], dtype=float)
    mask = np.array([[True, True, True]])
    err = M.point_errors(pred, gt, mask)
    assert err[0, 0] == 5.0
    assert np.isnan(err[0, 1])  # GT NaN: not scored
    assert err[0, 2] == np.inf  # annotated but not predicted: a failure, never silently skipped
    assert np.isnan(M.point_errors(pred, gt, np.array([[False, True, True]]))[0, 0])


def test_nme_hand_computed_with_mask():
    gt = np.zeros((2, 3, 2))
    # image 0: errors 3, 4, 5 → mean 4, norm 10 → 0.4
    # image 1: errors 1, (masked out: 100), 2 → mean 1.5, norm 3 → 0.5
    pred = np.array([[[3, 0], [0, 4], [3, 4]], [[1, 0], [100, 0], [0, 2]]], dtype=float)
    mask = np.array([[True, True, True], [True, False, True]])
    per = M.nme_per_image(pred, gt, mask, np.array([10.0, 3.0]))
    np.testing.assert_allclose(per, [0.4, 0.5])
    assert M.nme(pred, gt, mask, np.array([10.0, 3.0])) == pytest.approx(0.45)


def test_shift_by_3_4_gives_5_px_over_inter_ocular():
    gt = _faces()
    pred = gt + np.array([3.0, 4.0])
    iod = M.inter_ocular(gt, CORNERS)
    np.testing.assert_allclose(iod, [100.0, 50.0])
    # every point 5 px off: 5/100 and 5/50 → mean 0.075
    np.testing.assert_allclose(M.nme_per_image(pred, gt, None, iod), [0.05, 0.10])
    assert M.nme(pred, gt, None, iod) == pytest.approx(0.075)


def test_inter_pupil_and_box_size():
    gt = np.zeros((1, 68, 2))
    gt[0, 36:42] = (10, 20)
    gt[0, 42:48] = (40, 60)
    assert M.inter_pupil(gt, range(36, 42), range(42, 48))[0] == pytest.approx(50.0)  # eye centres (10,20)-(40,60): 3-4-5 × 10
    pts = np.array([[[0, 0], [8, 0], [0, 2], [np.nan, np.nan]]])
    assert M.box_size(pts)[0] == pytest.approx(4.0)  # w 8, h 2 → sqrt(16); the NaN point is ignored
    assert M.box_size(np.array([[1.0, 1.0, 5.0, 10.0]]))[0] == pytest.approx(6.0)  # sqrt(4 * 9)
    with pytest.raises(ValueError, match="has 5 points"):
        M.inter_ocular(np.zeros((1, 5, 2)), CORNERS)


def test_zero_or_nan_normaliser_names_the_image():
    gt = _faces()
    gt[1, 45] = gt[1, 36]
    with pytest.raises(ValueError, match="image 1"):
        M.nme(gt, gt, None, M.inter_ocular(gt, CORNERS))
    with pytest.raises(ValueError, match="image 0"):
        M.nme_per_image(gt, gt, None, np.array([np.nan, 1.0]))


def test_nonfinite_prediction_is_an_infinite_error_and_left_out_of_the_mean_only():
    gt = np.zeros((3, 2, 2))
    pred = gt + [0.0, 1.0]
    pred[1, 0] = np.nan  # one NaN point makes the whole image's error infinite
    per = M.nme_per_image(pred, gt, None, np.array([2.0, 2.0, 4.0]))
    assert per[0] == 0.5 and per[1] == np.inf and per[2] == 0.25
    # the mean is of the finite images (0.5 + 0.25) / 2; the failure rate counts the infinite one: 1 of 3 > 0.5
    assert M.nme(pred, gt, None, np.array([2.0, 2.0, 4.0])) == pytest.approx(0.375)
    assert M.failure_rate(per, 0.5) == pytest.approx(1 / 3)
    # AUC@0.5 = mean(1 - 0.5/0.5, 0, 1 - 0.25/0.5) = (0 + 0 + 0.5) / 3
    assert M.auc(per, 0.5) == pytest.approx(0.5 / 3)


def test_image_without_annotated_points_is_nan_and_left_out():
    gt = np.zeros((2, 2, 2))
    pred = gt + [0.0, 2.0]
    mask = np.array([[True, True], [False, False]])
    # image 1 has nothing annotated: its normaliser (0) is never used, its NME is NaN and the mean skips it
    per = M.nme_per_image(pred, gt, mask, np.array([4.0, 0.0]))
    assert per[0] == 0.5 and np.isnan(per[1])
    assert M.nme(pred, gt, mask, np.array([4.0, 0.0])) == 0.5


def test_auc_failure_rate_ced_hand_computed():
    e = np.array([0.02, 0.06, 0.12, np.nan])  # the NaN image (nothing annotated) is left out
    # AUC@0.08 = mean(max(0, 1 - e/0.08)) = (0.75 + 0.25 + 0) / 3 = 1/3
    assert M.auc(e, 0.08) == pytest.approx(1 / 3)
    # AUC@0.10 = (0.8 + 0.4 + 0) / 3 = 0.4
    assert M.auc(e, 0.10) == pytest.approx(0.4)
    assert M.failure_rate(e, 0.08) == pytest.approx(1 / 3)
    assert M.failure_rate(np.array([0.08, 0.09]), 0.08) == 0.5  # exactly at the threshold is not a failure
    thr, frac = M.ced(e, max_error=0.10, steps=11)
    np.testing.assert_allclose(thr, np.linspace(0, 0.1, 11))
    # thresholds 0.00..0.01: none; 0.02..0.05: 1 of 3; 0.06..0.10: 2 of 3
    np.testing.assert_allclose(frac, [0, 0, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3])
    # the exact area agrees with a finely sampled CED integrated numerically (step 1e-6 → error ≤ ~1e-5)
    t, f = M.ced(e, max_error=0.08, steps=80001)
    assert np.trapezoid(f, t) / 0.08 == pytest.approx(M.auc(e, 0.08), abs=1e-4)
    assert M.auc(np.array([np.inf, 0.0]), 0.1) == 0.5  # a missing prediction contributes 0


def _pose() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Head box 30 × 40 → diagonal 50 → head size 30 → PCKh@0.5 tolerance 15 px."""
    gt = np.full((2, 16, 2), 100.0)
    pred = gt.copy()
    mask = np.zeros((2, 16), dtype=bool)
    mask[0] = True  # image 0: every joint visible
    pred[0, 1] += (9, 12)  # r_knee: error exactly 15 → correct at 0.5 (≤), wrong at 0
    pred[0, 10] += (0, 20)  # r_wrist: 20 > 15 → wrong
    pred[0, 6] += (0, 20)  # pelvis: wrong, but left out of the headline
    mask[1, 0] = True  # image 1: only r_ankle visible, 16 px off → wrong
    pred[1, 0] += (16, 0)
    pred[1, 5] += (500, 0)  # not visible: ignored
    headboxes = np.array([[0, 0, 30, 40], [10, 10, 40, 50]], dtype=float)
    return pred, gt, mask, headboxes


def test_pckh_hand_computed_official_weighting():
    pred, gt, mask, hb = _pose()
    np.testing.assert_allclose(M.head_size(hb), [30.0, 30.0])
    r = M.pckh(pred, gt, mask, hb, thr=0.5, headline=HEADLINE)
    # per joint: r_ankle 1/2, pelvis 0/1, r_wrist 0/1, every other joint 1/1
    expected = np.ones(16)
    expected[0], expected[6], expected[10] = 0.5, 0.0, 0.0
    np.testing.assert_allclose(r.per_joint, expected)
    assert r.visible.tolist() == [2] + [1] * 15
    # headline over the 14 joints without pelvis/thorax: visible 2 + 13 = 15, correct 1 + 12 = 13 → 13/15
    assert r.mean == pytest.approx(13 / 15)
    # a plain mean of the per-joint values would be (0.5 + 12 + 0) / 14 = 0.8929: the weighting matters here
    plain = np.mean(np.delete(r.per_joint, (6, 7)))
    assert plain == pytest.approx(12.5 / 14) and abs(plain - r.mean) > 0.02
    # without a headline every joint counts: 17 visible, correct r_ankle 1 + pelvis 0 + r_wrist 0 + 13 others
    assert M.pckh(pred, gt, mask, hb, thr=0.5).mean == pytest.approx(14 / 17)
    # at 0 only exact hits count: r_knee drops too → 12/15
    assert M.pckh(pred, gt, mask, hb, thr=0.0, headline=HEADLINE).mean == pytest.approx(12 / 15)


def test_pckh_groups_average_left_and_right_per_joint():
    pred, gt, mask, hb = _pose()
    groups = {"ankle": (0, 5), "wrist": (10, 15), "head": (9,), "never": (3,)}
    mask[:, 3] = False
    r = M.pckh(pred, gt, mask, hb, groups=groups)
    # ankle: r_ankle 1/2 and l_ankle 1/1 → (0.5 + 1) / 2 = 0.75 (pooling their counts would give 2/3)
    assert r.per_group["ankle"] == pytest.approx(0.75)
    # wrist: r_wrist 0/1, l_wrist 1/1 → 0.5; head: the head top alone → 1; a joint never visible → NaN
    assert r.per_group["wrist"] == 0.5 and r.per_group["head"] == 1.0 and np.isnan(r.per_group["never"])
    assert M.group_means(np.array([0.2, np.nan, 0.6]), {"a": (0, 1), "b": (0, 2)}) == {"a": 0.2, "b": 0.4}


def test_pckh_auc_is_the_exact_area_over_0_to_half_a_head():
    pred, gt, mask, hb = _pose()
    # headline errors in head sizes (head size 30): r_knee 15/30 = 0.5, r_wrist 20/30, r_ankle (image 1) 16/30,
    # the other 12 visible headline joints 0. Area / 0.5 = mean(max(0, 1 - e / 0.5)) = (12 * 1 + 0 + 0 + 0) / 15
    assert M.pckh_auc(pred, gt, mask, hb, headline=HEADLINE) == pytest.approx(12 / 15)
    # a joint at a quarter head size scores 1 - 0.25 / 0.5 = 0.5 (a sampled mean over 0, 0.05, ..., 0.5 with 0
    # included would give 6/11 = 0.545; over 0.05 ... 0.5 it gives 6/10)
    one_gt, one_pred = np.zeros((1, 1, 2)), np.array([[[7.5, 0.0]]])
    assert M.pckh_auc(one_pred, one_gt, None, np.array([[0.0, 0.0, 30.0, 40.0]])) == pytest.approx(0.5)
    one_pred[0, 0, 0] = np.nan  # a non-finite prediction scores 0, it is not left out
    assert M.pckh_auc(np.concatenate([one_pred, one_gt]), np.concatenate([one_gt, one_gt]), None,
                      np.array([[0.0, 0.0, 30.0, 40.0]] * 2)) == pytest.approx(0.5)


def test_pckh_nonfinite_joint_is_incorrect_and_still_counted():
    pred, gt, mask, hb = _pose()
    pred[0, 2] = np.nan  # r_hip: visible, not predicted
    r = M.pckh(pred, gt, mask, hb, headline=HEADLINE)
    assert r.per_joint[2] == 0.0 and r.visible[2] == 1
    assert r.mean == pytest.approx(12 / 15)  # one correct joint fewer, the same 15 visible
    assert M.joint_correct(pred, gt, mask, hb)[0, 2] == 0.0


def test_pckh_joint_never_visible_is_nan_and_zero_headbox_rules():
    pred, gt, mask, hb = _pose()
    mask[:, 15] = False
    assert np.isnan(M.pckh(pred, gt, mask, hb).per_joint[15])
    hb[1] = (5, 5, 5, 5)
    with pytest.raises(ValueError, match="image 1: the head size"):
        M.pckh(pred, gt, mask, hb)
    mask[1] = False  # an image without visible joints never needs its head size
    assert M.pckh(pred, gt, mask, hb).visible[0] == 1
    with pytest.raises(ValueError, match="headline joints"):
        M.pckh(pred[:, :5], gt[:, :5], mask[:, :5], hb, headline=HEADLINE)


def test_functions_never_write_into_their_inputs():
    pred, gt, mask, hb = _pose()
    gt[0, 3] = np.nan
    copies = [a.copy() for a in (pred, gt, mask, hb)]
    M.pckh(pred, gt, mask, hb)
    M.pckh_auc(pred, gt, mask, hb)
    M.box_size(gt)
    M.nme(pred, gt, mask, 10.0)
    M.ced(M.nme_per_image(pred, gt, mask, 10.0))
    for before, after in zip(copies, (pred, gt, mask, hb)):
        np.testing.assert_array_equal(before, after)


def test_joint_correct_marks_each_joint_by_hand() -> None:
    # one person, head box 10 x 10 → head size 0.6 * sqrt(200) = 8.485; thr 0.5 → within 4.243 px
    gt = np.zeros((1, 16, 2))
    pred = gt.copy()
    pred[0, 0] = (4.0, 0.0)  # 4.0 px: correct
    pred[0, 1] = (4.3, 0.0)  # 4.3 px: wrong
    mask = np.ones((1, 16), dtype=bool)
    mask[0, 2] = False  # not annotated: NaN
    out = M.joint_correct(pred, gt, mask, np.array([[0.0, 0.0, 10.0, 10.0]]), thr=0.5)
    assert out.shape == (1, 16)
    assert out[0, 0] == 1.0 and out[0, 1] == 0.0 and np.isnan(out[0, 2]) and np.all(out[0, 3:] == 1.0)

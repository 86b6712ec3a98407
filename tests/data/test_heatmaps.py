"""Gaussian targets: exact values at hand-picked pixels, the loss mask, and the input ↔ heatmap pixel mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cunet.data.heatmaps import default_sigma, gaussian_targets, heatmap_to_input, input_to_heatmap


def test_peak_is_one_at_an_integer_point_and_follows_the_formula_off_grid() -> None:
    target, mask = gaussian_targets(np.array([[10.0, 20.0], [30.5, 5.25]]), np.ones(2, bool), 64, sigma=2.0)
    assert target.shape == (2, 64, 64) and target.dtype == np.float32 and mask.dtype == np.float32
    np.testing.assert_array_equal(mask, [1.0, 1.0])
    assert target[0, 20, 10] == 1.0 and target[0].max() == 1.0
    assert target[0, 20, 12] == pytest.approx(math.exp(-4 / 8), rel=1e-6)  # d² = 4, 2σ² = 8
    # Sub-pixel point (30.5, 5.25): the two pixels either side in x are equally high, y = 5 is the closest row.
    assert target[1, 5, 30] == target[1, 5, 31]
    assert target[1, 5, 30] == pytest.approx(math.exp(-(0.25 + 0.0625) / 8), rel=1e-6)
    assert np.unravel_index(target[1].argmax(), (64, 64))[0] == 5


def test_the_centroid_of_an_interior_target_is_the_point() -> None:
    point = np.array([[23.37, 40.81]])
    target, _ = gaussian_targets(point, np.ones(1, bool), 64)
    yy, xx = np.mgrid[0:64, 0:64]
    w = target[0].astype(np.float64)
    np.testing.assert_allclose([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()], point[0], atol=1e-4)


def test_mask_is_zero_for_unannotated_nan_and_outside_points() -> None:
    points = np.array([[10.0, 10.0], [np.nan, np.nan], [-0.6, 10.0], [10.0, 63.5], [-0.5, 63.49], [12.0, 12.0]])
    visible = np.array([True, False, True, True, True, False])
    target, mask = gaussian_targets(points, visible, 64)
    np.testing.assert_array_equal(mask, [1, 0, 0, 0, 1, 0])
    assert not target[mask == 0].any()
    assert target[4].max() > 0.9 and np.isfinite(target).all()


def test_default_sigma_scales_with_heatmap_size() -> None:
    assert default_sigma(64) == 2.0 and default_sigma(32) == 1.0 and default_sigma(128) == 4.0
    wide, _ = gaussian_targets(np.array([[60.0, 60.0]]), np.ones(1, bool), 128)
    assert wide[0, 60, 64] == pytest.approx(math.exp(-16 / 32), rel=1e-6)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="sigma"):
        gaussian_targets(np.zeros((1, 2)), np.ones(1, bool), 64, sigma=0.0)
    with pytest.raises(ValueError, match="visibility"):
        gaussian_targets(np.zeros((2, 2)), np.ones(3, bool), 64)


def test_stride_mapping_puts_heatmap_pixel_centres_on_input_block_centres() -> None:
    # Heatmap pixel 0 covers input pixels 0..3 at stride 4: its centre is input 1.5; pixel 63 covers 252..255.
    np.testing.assert_allclose(heatmap_to_input(np.array([[0.0, 63.0]]), 4), [[1.5, 253.5]])
    np.testing.assert_allclose(input_to_heatmap(np.array([[1.5, 253.5]]), 4), [[0.0, 63.0]])
    # The input's outer edges (-0.5 and 255.5) map to the heatmap's outer edges (-0.5 and 63.5).
    np.testing.assert_allclose(input_to_heatmap(np.array([[-0.5, 255.5]]), 4), [[-0.5, 63.5]])
    pts = np.random.default_rng(0).uniform(-10, 300, size=(7, 2))
    np.testing.assert_allclose(heatmap_to_input(input_to_heatmap(pts, 4), 4), pts)
    assert np.isnan(input_to_heatmap(np.array([[np.nan, 1.0]]), 4)[0, 0])

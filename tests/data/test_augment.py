"""Augmentation: sampled distributions, and that the crop, its points and its affine agree (flip included)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cunet.data.augment import IDENTITY, Augment, AugmentConfig, augment_sample, sample_augment
from cunet.data.preprocess import Box, apply_affine, crop_affine, warp

S = 64
PERM = np.array([1, 0, 2, 4, 3])  # two left/right pairs and one midline point


def _image(seed: int = 0, h: int = 120, w: int = 150) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 6, w // 6, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)  # smooth, so bilinear resampling is well-behaved


def _points() -> np.ndarray:
    return np.array([[50.3, 40.7], [90.1, 41.2], [70.0, 60.5], [55.5, 80.2], [85.25, 79.9]])


def test_default_distributions_match_the_original_training() -> None:
    rng = np.random.default_rng(0)
    augs = [sample_augment(rng, AugmentConfig()) for _ in range(4000)]
    scales = np.array([a.scale for a in augs])
    rotations = np.array([a.rotation for a in augs])
    gains = np.array([a.gain for a in augs])
    assert scales.min() >= 2**-0.5 - 1e-12 and scales.max() <= 2**0.5 + 1e-12
    assert np.abs(rotations).max() <= 60.0
    # Binomial proportions over 4000 draws: ±0.03 is more than 3.5 standard deviations.
    assert abs(np.mean(rotations != 0) - 0.4) < 0.03
    assert abs(np.mean([a.flip for a in augs]) - 0.5) < 0.03
    assert gains.min() >= 0.6 and gains.max() <= 1.4
    assert all(a.shift == (0.0, 0.0) for a in augs)
    assert abs(np.std(np.log2(scales)) - 0.25) < 0.02  # clipping at 2σ shrinks the std by only ~8%


def test_sampling_is_deterministic_per_generator_seed() -> None:
    cfg = AugmentConfig(translate=0.1)
    first = [sample_augment(np.random.default_rng(7), cfg) for _ in range(2)]
    assert first[0] == first[1]
    assert sample_augment(np.random.default_rng(8), cfg) != first[0]


@pytest.mark.parametrize("name", ["scale_sigma", "translate", "rotation_limit"])
def test_config_rejects_negative_values(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        AugmentConfig(**{name: -1.0})


def test_config_rejects_bad_probabilities_and_gains() -> None:
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ValueError, match="gain"):
        AugmentConfig(gain_low=1.5, gain_high=1.0)


def test_identity_is_the_plain_crop() -> None:
    image, box = _image(), Box(70.0, 60.0, 80.0)
    crop, pts, vis, affine = augment_sample(image, _points(), np.ones(5, bool), box, IDENTITY, S)
    np.testing.assert_array_equal(affine, crop_affine(box, S))
    np.testing.assert_array_equal(crop, warp(image, affine, S))
    np.testing.assert_allclose(pts, apply_affine(_points(), affine))
    assert crop.shape == (S, S, 3) and crop.dtype == np.uint8 and vis.dtype == bool


@pytest.mark.parametrize("flip", [False, True])
def test_affine_applied_to_points_gives_the_returned_points(flip: bool) -> None:
    points = _points()
    points[2] = np.nan
    visible = np.array([True, True, False, True, False])
    aug = Augment(scale=1.3, rotation=-20.0, flip=flip, gain=(0.7, 1.0, 1.3), shift=(0.05, -0.1))
    _, pts, vis, affine = augment_sample(_image(), points, visible, Box(70.0, 60.0, 80.0), aug, S, PERM)
    expected, expected_vis = apply_affine(points, affine), visible
    if flip:
        expected, expected_vis = expected[PERM], visible[PERM]
    np.testing.assert_allclose(pts, expected)
    np.testing.assert_array_equal(vis, expected_vis)
    assert np.isnan(pts[2]).all()


def test_flipped_crop_is_the_mirrored_crop_and_flipping_twice_is_identity() -> None:
    image, box, points, visible = _image(), Box(70.0, 60.0, 80.0), _points(), np.ones(5, bool)
    plain = augment_sample(image, points, visible, box, Augment(rotation=15.0), S, PERM)
    flipped = augment_sample(image, points, visible, box, Augment(rotation=15.0, flip=True), S, PERM)
    # OpenCV interpolates with 5-bit fixed-point weights; mirrored sample positions can round differently by 1 LSB.
    diff = np.abs(flipped[0].astype(int) - cv2.flip(plain[0], 1).astype(int))
    assert diff.max() <= 1
    np.testing.assert_array_equal(cv2.flip(cv2.flip(flipped[0], 1), 1), flipped[0])
    # Mirror the flipped crop's points back (x → S-1-x) and undo the left/right swap: the plain crop's points.
    back = flipped[1][PERM].copy()
    back[:, 0] = S - 1 - back[:, 0]
    np.testing.assert_allclose(back, plain[1], atol=1e-9)


def test_a_dot_in_the_image_lands_on_its_returned_crop_point() -> None:
    # A Gaussian blob drawn at a sub-pixel point must appear where the returned point says, after scale, rotation
    # and flip: the image warp and the point transform are one affine.
    h, w = 120, 150
    yy, xx = np.mgrid[0:h, 0:w]
    point = np.array([[83.3, 52.6]])
    blob = 255.0 * np.exp(-((xx - point[0, 0]) ** 2 + (yy - point[0, 1]) ** 2) / (2 * 3.0**2))
    image = np.repeat(blob[..., None], 3, axis=2).round().astype(np.uint8)
    aug = Augment(scale=0.9, rotation=33.0, flip=True, shift=(0.02, 0.03))
    crop, pts, _, _ = augment_sample(image, point, np.ones(1, bool), Box(75.0, 60.0, 90.0), aug, S, np.array([0]))
    weights = crop[..., 0].astype(np.float64)
    cy, cx = np.mgrid[0:S, 0:S]
    centroid = np.array([(weights * cx).sum(), (weights * cy).sum()]) / weights.sum()
    # Tolerance: 8-bit rounding of the blob and bilinear resampling move the centroid by a few hundredths of a pixel.
    np.testing.assert_allclose(centroid, pts[0], atol=0.1)


def test_gain_scales_channels_and_saturates() -> None:
    image = np.full((40, 40, 3), 200, np.uint8)
    crop, *_ = augment_sample(image, _points(), np.ones(5, bool), Box(20.0, 20.0, 10.0),
                              Augment(gain=(0.5, 1.0, 1.4)), 16)
    np.testing.assert_array_equal(crop[8, 8], [100, 200, 255])


def test_flip_needs_the_permutation() -> None:
    with pytest.raises(ValueError, match="flip_perm"):
        augment_sample(_image(), _points(), np.ones(5, bool), Box(70.0, 60.0, 80.0), Augment(flip=True), S)

"""Decoding: accuracy of each method on sub-pixel Gaussian peaks, flip test-time augmentation without a pixel shift,
and the full round trip original image → crop → heatmap → decoded → original image."""

from __future__ import annotations

import numpy as np
import pytest

from cunet.data.augment import Augment, augment_sample
from cunet.data.decode import DEFAULT_METHOD, decode, flip_back, heatmap_to_image, merge_flip
from cunet.data.heatmaps import gaussian_targets, input_to_heatmap
from cunet.data.preprocess import Box

H = 64
PERM = np.array([1, 0, 2, 4, 3])


def _maps(points: np.ndarray, size: int = H) -> np.ndarray:
    """[N, 2] heatmap points → [N, 1, size, size] targets."""
    return np.stack([gaussian_targets(p[None], np.ones(1, bool), size)[0] for p in points])


@pytest.fixture(scope="module")
def centres() -> np.ndarray:
    # Uniform sub-pixel centres at least 3 px from the border (on the border DARK falls back to "quarter").
    return np.random.default_rng(0).uniform(3.0, H - 4.0, size=(1000, 2))


def _errors(method: str, centres: np.ndarray) -> np.ndarray:
    coords, scores = decode(_maps(centres), method)
    assert coords.shape == (len(centres), 1, 2) and scores.shape == (len(centres), 1)
    return np.linalg.norm(coords[:, 0] - centres, axis=-1)


def test_dark_is_the_most_accurate_and_the_default(centres: np.ndarray) -> None:
    argmax, quarter, dark = (_errors(m, centres) for m in ("argmax", "quarter", "dark"))
    # Expected means for uniform sub-pixel offsets: argmax ≈ 0.38 px, quarter ≈ 0.19 px (its worst case is
    # 0.25·√2 ≈ 0.35 px); DARK is exact up to float32 rounding of the map on a clean Gaussian.
    assert 0.3 < argmax.mean() < 0.45 and argmax.max() <= 0.5 * np.sqrt(2) + 1e-9
    assert quarter.mean() < 0.25 and quarter.max() <= 0.25 * np.sqrt(2) + 1e-6
    assert dark.mean() < 0.05 and dark.max() < 0.05
    assert dark.mean() < quarter.mean() < argmax.mean()
    assert DEFAULT_METHOD.value == "dark"


def test_dark_stays_best_on_noisy_maps(centres: np.ndarray) -> None:
    noisy = _maps(centres) + np.random.default_rng(1).normal(0.0, 0.02, size=(len(centres), 1, H, H))
    errs = {m: np.linalg.norm(decode(noisy, m)[0][:, 0] - centres, axis=-1).mean() for m in ("quarter", "dark")}
    assert errs["dark"] < 0.5 * errs["quarter"]


def test_quarter_shifts_toward_the_larger_neighbour() -> None:
    hm = np.zeros((1, 2, 8, 8), np.float32)
    hm[0, 0, 3, 4], hm[0, 0, 3, 5], hm[0, 0, 4, 4] = 1.0, 0.5, 0.2  # right and down neighbours larger
    hm[0, 1, 0, 0] = 1.0  # corner: no shift
    coords, scores = decode(hm, "quarter")
    np.testing.assert_allclose(coords[0], [[4.25, 3.25], [0.0, 0.0]])
    np.testing.assert_allclose(scores[0], [1.0, 1.0])
    np.testing.assert_allclose(decode(hm, "argmax")[0][0], [[4.0, 3.0], [0.0, 0.0]])


def test_dark_is_finite_on_borders_flat_and_non_finite_maps() -> None:
    hm = np.zeros((1, 4, H, H), np.float32)
    hm[0, 0] = _maps(np.array([[0.0, 31.3]]))[0, 0]  # peak on the left border
    hm[0, 1] = 0.5  # flat: singular Hessian
    hm[0, 2] = _maps(np.array([[20.0, 20.0]]))[0, 0]
    hm[0, 3, 5, 5] = np.nan
    coords, scores = decode(hm, "dark")
    assert np.isfinite(coords[0, :3]).all() and np.isnan(coords[0, 3]).all() and np.isnan(scores[0, 3])
    assert coords[0, 0, 0] == 0.0 and abs(coords[0, 0, 1] - 31.3) < 0.05  # y still refined along the border
    np.testing.assert_allclose(coords[0, 2], [20.0, 20.0], atol=1e-6)


def test_unknown_method_and_bad_shape() -> None:
    with pytest.raises(ValueError, match="choose one of argmax, quarter, dark"):
        decode(np.zeros((1, 1, 4, 4)), "soft")
    with pytest.raises(ValueError, match="N, K, H, W"):
        decode(np.zeros((1, 4, 4)))


def test_flip_back_is_an_involution_and_merge_flip_averages() -> None:
    hm = np.random.default_rng(0).random((2, 5, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(flip_back(flip_back(hm, PERM), PERM), hm)
    np.testing.assert_array_equal(flip_back(hm, PERM)[:, 0, :, 0], hm[:, 1, :, -1])
    np.testing.assert_allclose(merge_flip(hm, 3 * hm), 2 * hm)


def test_flip_test_time_augmentation_needs_no_pixel_shift() -> None:
    # Targets of a crop and of its flip (crop_affine maps x → S-1-x): mirroring the flipped crop's heatmaps back
    # must give the unflipped targets exactly, i.e. heatmap x → W-1-x is the same mirror at stride 4.
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (120, 150, 3), dtype=np.uint8)
    points = rng.uniform(40, 110, size=(5, 2))
    box = Box(75.0, 60.0, 90.0)
    maps = []
    for flip in (False, True):
        _, pts, vis, _ = augment_sample(image, points, np.ones(5, bool), box, Augment(rotation=10.0, flip=flip),
                                        256, PERM)
        maps.append(gaussian_targets(input_to_heatmap(pts, 4), vis, H)[0][None])
    np.testing.assert_allclose(flip_back(maps[1], PERM), maps[0], atol=1e-6)
    merged = merge_flip(maps[0], flip_back(maps[1], PERM))
    np.testing.assert_allclose(decode(merged)[0], decode(maps[0])[0], atol=1e-6)


@pytest.mark.parametrize("aug", [Augment(), Augment(scale=1.2, rotation=25.0, flip=True, shift=(0.03, -0.02))])
def test_round_trip_to_the_original_image_within_five_hundredths(aug: Augment) -> None:
    # Original points → augmented 256² crop → 64² Gaussian targets → DARK → heatmap_to_image → original points.
    # Tolerance 0.05 px in the original image (the brief's bound); the clean-map error is ~1e-5 heatmap px.
    rng = np.random.default_rng(5)
    image = np.zeros((300, 400, 3), np.uint8)
    points = rng.uniform(140, 260, size=(5, 2))
    _, pts, vis, affine = augment_sample(image, points, np.ones(5, bool), Box(200.0, 200.0, 180.0), aug, 256, PERM)
    target, mask = gaussian_targets(input_to_heatmap(pts, 4), vis, H)
    assert mask.all()
    coords, _ = decode(target[None])
    back = heatmap_to_image(coords, affine[None], stride=4)[0]
    if aug.flip:
        back = back[PERM]
    np.testing.assert_allclose(back, points, atol=0.05)

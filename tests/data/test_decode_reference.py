"""The vectorised decoder against a small scalar reference of the documented algorithm, map by map.

`cunet.data.decode` gathers a few values per map with flat indices and does the DARK smoothing and Newton step as
small matrix products over all maps at once. The reference below follows the module docstring one landmark at a
time with plain Python loops: argmax (first maximum wins ties), ±0.25 px toward the larger neighbour (none on the
border or on a tie), DARK's Gaussian blur of the 3×3 neighbourhood (radius ceil(3σ), skipped along an axis whose
blur window would cross the border), log, central differences, one Newton step, per-axis fallbacks, NaN for maps
that are not finite. Tolerance: 1e-9 heatmap px — both compute the same sums in a different order, so they agree
to float64 rounding (~1e-14 here) and an algorithmic difference (a missed fallback, a wrong neighbour, a shifted
window) shows up as 1e-3 px or more. argmax and quarter offsets are exact (multiples of 0.25) and must be equal.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cunet.data.decode import decode, heatmap_to_image
from cunet.data.heatmaps import default_sigma, gaussian_targets
from cunet.data.preprocess import Box, crop_affine, crop_affines, invert_affine, to_input

TOL = 1e-9


def _ref_map(m: np.ndarray, method: str, sigma: float) -> tuple[float, float, float]:
    """(x, y, score) of one [H, W] map by the documented algorithm."""
    h, w = m.shape
    v = m.astype(np.float64)
    if not np.isfinite(v).all():
        return math.nan, math.nan, math.nan
    best, bx, by = -math.inf, 0, 0
    for yy in range(h):
        for xx in range(w):
            if v[yy, xx] > best:  # strictly greater: the first maximum in row-major order wins a tie
                best, bx, by = v[yy, xx], xx, yy
    if method == "argmax":
        return float(bx), float(by), best

    def sign(a: float) -> float:
        return 0.0 if a == 0 else math.copysign(1.0, a)

    qx = 0.25 * sign(v[by, bx + 1] - v[by, bx - 1]) if 0 < bx < w - 1 else 0.0
    qy = 0.25 * sign(v[by + 1, bx] - v[by - 1, bx]) if 0 < by < h - 1 else 0.0
    if method == "quarter":
        return bx + qx, by + qy, best
    r = max(1, math.ceil(3 * sigma))
    kernel = [math.exp(-(t * t) / (2 * sigma * sigma)) for t in range(-r, r + 1)]
    kernel = [k / sum(kernel) for k in kernel]
    blur_x, blur_y = bx - 1 - r >= 0 and bx + 1 + r <= w - 1, by - 1 - r >= 0 and by + 1 + r <= h - 1

    def smooth(yy: int, xx: int) -> float:
        ys = [(yy + t, kernel[t + r]) for t in range(-r, r + 1)] if blur_y else [(min(max(yy, 0), h - 1), 1.0)]
        xs = [(xx + t, kernel[t + r]) for t in range(-r, r + 1)] if blur_x else [(min(max(xx, 0), w - 1), 1.0)]
        return sum(ky * kx * v[y2, x2] for y2, ky in ys for x2, kx in xs)

    lg = [[math.log(max(smooth(by + i, bx + j), 1e-10)) for j in (-1, 0, 1)] for i in (-1, 0, 1)]
    gx, gy = 0.5 * (lg[1][2] - lg[1][0]), 0.5 * (lg[2][1] - lg[0][1])
    hxx, hyy = lg[1][2] - 2 * lg[1][1] + lg[1][0], lg[2][1] - 2 * lg[1][1] + lg[0][1]
    hxy = 0.25 * (lg[2][2] - lg[2][0] - lg[0][2] + lg[0][0])
    det = hxx * hyy - hxy * hxy
    in_x, in_y = 0 < bx < w - 1, 0 < by < h - 1
    if in_x and in_y and hxx < 0 and det > 1e-8:
        dx, dy = -(hyy * gx - hxy * gy) / det, -(hxx * gy - hxy * gx) / det
        if abs(dx) <= 1 and abs(dy) <= 1:
            return bx + dx, by + dy, best

    def one_axis(inside: bool, g: float, c: float, fallback: float) -> float:
        step = -g / c if inside and c < 0 else math.inf
        return step if abs(step) <= 1 else fallback

    return bx + one_axis(in_x, gx, hxx, qx), by + one_axis(in_y, gy, hyy, qy), best


def _reference(hm: np.ndarray, method: str, sigma: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    sigma = default_sigma(hm.shape[-1]) if sigma is None else sigma
    out = np.array([[_ref_map(m, method, sigma) for m in maps] for maps in hm])
    return out[..., :2], out[..., 2]


def _gaussians(n: int, k: int, size: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    pts = rng.uniform(-0.4, size - 0.6, size=(n, k, 2))  # the whole map, borders included
    hm = np.stack([gaussian_targets(p, np.ones(k, bool), size)[0] for p in pts])
    return (hm + rng.normal(0.0, noise, hm.shape)).astype(np.float32)


def _edge_cases(size: int = 16) -> np.ndarray:
    """[1, K, size, size] maps that exercise every branch: ties, borders, corners, flat, saddle, non-finite."""
    maps = []
    flat = np.zeros((size, size), np.float32)
    for y, x in [(0, 0), (0, 7), (7, 0), (size - 1, size - 1), (size - 1, 5), (5, size - 1), (1, 1), (2, 13)]:
        m = flat.copy()  # a peak on (or next to) the border, with unequal neighbours where they exist
        m[y, x] = 1.0
        for dy, dx, val in [(0, 1, 0.6), (0, -1, 0.3), (1, 0, 0.5), (-1, 0, 0.2)]:
            if 0 <= y + dy < size and 0 <= x + dx < size:
                m[y + dy, x + dx] = val
        maps.append(m)
    tie = flat.copy()
    tie[4, 9] = tie[9, 4] = tie[4, 10] = 1.0  # three equal maxima: the first in row-major order wins
    maps.append(tie)
    even = flat.copy()
    even[6, 6], even[6, 5], even[6, 7] = 1.0, 0.5, 0.5  # equal neighbours: no quarter shift along x
    maps.append(even)
    maps.append(flat + 0.5)  # flat: singular Hessian, every step falls back
    saddle = np.fromfunction(lambda y, x: 1.0 - 0.01 * (x - 8.0) ** 2 + 0.01 * (y - 8.0) ** 2, (size, size))
    saddle[8, 8] += 2.0
    maps.append(saddle.astype(np.float32))
    for bad in (np.nan, np.inf, -np.inf):
        m = _gaussians(1, 1, size, np.random.default_rng(1), 0.0)[0, 0]
        m[3, 11] = bad
        maps.append(m)
    maps.append(np.full((size, size), np.nan, np.float32))
    return np.stack(maps)[None]


@pytest.mark.parametrize("method", ["argmax", "quarter", "dark"])
def test_edge_cases_match_the_reference(method: str) -> None:
    hm = _edge_cases()
    coords, scores = decode(hm, method)
    ref_coords, ref_scores = _reference(hm, method)
    np.testing.assert_allclose(coords, ref_coords, atol=TOL, rtol=0)  # NaN positions must match too
    np.testing.assert_allclose(scores, ref_scores, atol=0, rtol=0)
    assert np.isnan(coords[0, -4:]).all() and np.isfinite(coords[0, :-4]).all()


@pytest.mark.parametrize("method", ["argmax", "quarter", "dark"])
@pytest.mark.parametrize("n, k, size, sigma", [(1, 68, 32, None), (3, 16, 64, None), (2, 5, 24, 1.7)])
def test_random_maps_match_the_reference(method: str, n: int, k: int, size: int, sigma: float | None) -> None:
    # Gaussians anywhere on the map (borders included) with noise, so DARK takes its 2-D, 1-D and quarter branches.
    rng = np.random.default_rng(size + k)
    hm = _gaussians(n, k, size, rng, noise=0.05)
    coords, scores = decode(hm, method, sigma=sigma)
    ref_coords, ref_scores = _reference(hm, method, sigma)
    assert coords.shape == (n, k, 2) and scores.shape == (n, k)
    np.testing.assert_allclose(coords, ref_coords, atol=TOL, rtol=0)
    np.testing.assert_array_equal(scores, ref_scores)


def test_any_input_dtype_decodes_like_float64() -> None:
    hm = _gaussians(2, 7, 32, np.random.default_rng(4), noise=0.02)
    want = decode(hm.astype(np.float64))
    for dtype in (np.float32, np.float16):
        got = decode(hm.astype(dtype).astype(np.float64))
        np.testing.assert_array_equal(decode(hm.astype(dtype))[0], got[0])
    np.testing.assert_array_equal(decode(hm)[0], want[0])  # float32 is read as is, never rounded
    ints = (hm * 100).astype(np.int32)
    np.testing.assert_array_equal(decode(ints, "quarter")[0], decode(ints.astype(np.float64), "quarter")[0])
    strided = np.asfortranarray(hm)  # a non-contiguous stack (e.g. a sliced runtime output) decodes the same
    np.testing.assert_array_equal(decode(strided)[0], want[0])


def test_heatmap_to_image_matches_the_lapack_inverse() -> None:
    rng = np.random.default_rng(2)
    coords = rng.uniform(0, 32, size=(4, 9, 2))
    coords[1, 3] = np.nan
    affines = np.stack([crop_affine(Box(*rng.uniform(50, 300, 2), rng.uniform(40, 200)), 128, rot, flip)
                        for rot, flip in [(0, False), (30, True), (-75, False), (12, True)]])
    full = np.concatenate([affines, np.tile([[[0.0, 0.0, 1.0]]], (4, 1, 1))], axis=1)
    want_inv = np.linalg.inv(full)[:, :2]
    np.testing.assert_allclose(invert_affine(affines), want_inv, atol=1e-12, rtol=1e-12)
    inputs = coords * 4 + 1.5
    want = np.einsum("nij,nkj->nki", want_inv[:, :, :2], inputs) + want_inv[:, None, :, 2]
    got = heatmap_to_image(coords, affines, 4)
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert np.isnan(got[1, 3]).all() and np.isfinite(np.delete(got.reshape(-1, 2), 9 + 3, axis=0)).all()
    with pytest.raises(np.linalg.LinAlgError):
        invert_affine(np.zeros((2, 3)))


def test_batched_crop_affines_and_input_are_those_of_the_single_image_path() -> None:
    boxes = [Box(10.5, 20.0, 33.0), Box(300.0, 2.0, 512.0), Box(0.0, 0.0, 1.0)]
    got = crop_affines(np.array([(b.cx, b.cy) for b in boxes]), [b.size for b in boxes], 128)
    np.testing.assert_array_equal(got, np.stack([crop_affine(b, 128) for b in boxes]))
    crops = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = crops[..., ::-1].astype(np.float32) / 255.0  # the formula, step by step, as it was written before
    want = ((x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).transpose(0, 3, 1, 2)
    got = to_input(crops, mean, std)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)

"""Heatmaps → landmark coordinates: the one place cunet turns network output into points.

Three decoders, all returning float heatmap-pixel coordinates (the original truncated to integers, biasing NME):

- "argmax": the integer position of the maximum.
- "quarter": argmax + 0.25 px toward the larger neighbour on each axis, as the original CU-Net/hourglass code.
- "dark": DARK (Zhang et al., CVPR 2020): smooth the map with the training Gaussian, take its log (a quadratic for
  a Gaussian peak) and do one Newton step from the maximum: offset = -H⁻¹∇ with central differences. Where the
  step is not defined (the maximum on the border, a Hessian that is not negative definite, a step longer than a
  pixel) each axis is refined on its own where it can be, else it falls back to "quarter". Near a border the blur
  is skipped along that axis, as it would drag the peak.

Measured on synthetic Gaussian maps (σ = 2 at 64², 2,000 uniform sub-pixel centres 3 px or more from the border,
as in tests/data/test_decode.py): mean error argmax 0.38 px, quarter 0.19 px, dark < 1e-5 px; with added N(0, 0.05)
noise 0.50 / 0.33 / 0.08 px. So "dark" is the default.

Horizontal flip test-time augmentation: `flip_back` mirrors the flipped input's heatmaps and swaps left/right
joints. No +1 px shift is needed: `crop_affine`'s flip maps x → S-1-x and, with S = stride·W, heatmap x → W-1-x is
exactly the same mirror (see `cunet.data.heatmaps` for the stride mapping), so `merge_flip` is a plain average.
"""

from __future__ import annotations

import math
from enum import Enum

import numpy as np

from cunet.data.heatmaps import default_sigma, heatmap_to_input
from cunet.data.preprocess import apply_affine, invert_affine

__all__ = ["DecodeMethod", "DEFAULT_METHOD", "decode", "flip_back", "merge_flip", "heatmap_to_image"]


class DecodeMethod(str, Enum):
    """How heatmap maxima become coordinates."""

    ARGMAX = "argmax"
    QUARTER = "quarter"
    DARK = "dark"


#: The most accurate decoder on sub-pixel Gaussian peaks (see the module docstring for the measurement).
DEFAULT_METHOD = DecodeMethod.DARK

# A log-Hessian determinant below this is treated as singular (flat or saddle-shaped tops).
_MIN_DET = 1e-8
# Floor before the log: heatmaps can be 0 or slightly negative far from the peak.
_LOG_FLOOR = 1e-10


def decode(
    heatmaps: np.ndarray, method: str | DecodeMethod = DEFAULT_METHOD, sigma: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Landmark coordinates from heatmaps.

    Args:
        heatmaps: [N, K, H, W] float heatmaps.
        method: "argmax", "quarter" or "dark".
        sigma: the training Gaussian sigma in heatmap pixels, used by "dark" to smooth; `default_sigma(W)` if None.

    Returns:
        coords: [N, K, 2] float64 (x, y) in heatmap pixels; NaN where a map is not finite.
        scores: [N, K] float64, the maximum of each map.
    """
    method = _method(method)
    hm = np.asarray(heatmaps)
    if hm.ndim != 4:
        raise ValueError(f"heatmaps must be [N, K, H, W], got shape {hm.shape}")
    n, k, h, w = hm.shape
    hm = hm.astype(np.float64, copy=False)
    flat_idx = np.argmax(np.where(np.isfinite(hm), hm, -np.inf).reshape(n, k, h * w), axis=-1)
    y, x = np.divmod(flat_idx, w)
    scores = np.take_along_axis(hm.reshape(n, k, h * w), flat_idx[..., None], axis=-1)[..., 0]
    coords = np.stack([x, y], axis=-1).astype(np.float64)
    if method is DecodeMethod.QUARTER:
        coords += _quarter_offsets(hm, x, y)
    elif method is DecodeMethod.DARK:
        coords += _dark_offsets(hm, x, y, default_sigma(w) if sigma is None else float(sigma))
    bad = ~np.isfinite(hm).all(axis=(2, 3))
    coords[bad] = np.nan
    scores = np.where(bad, np.nan, scores)
    return coords, scores


def _method(method: str | DecodeMethod) -> DecodeMethod:
    try:
        return DecodeMethod(method)
    except ValueError:
        choices = ", ".join(m.value for m in DecodeMethod)
        raise ValueError(f"unknown decode method {method!r}: choose one of {choices}") from None


def _quarter_offsets(hm: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[N, K, 2] offsets of ±0.25 px toward the larger neighbour (0 on the border or on a tie)."""
    h, w = hm.shape[-2:]
    left, right = _at(hm, y, np.clip(x - 1, 0, w - 1)), _at(hm, y, np.clip(x + 1, 0, w - 1))
    up, down = _at(hm, np.clip(y - 1, 0, h - 1), x), _at(hm, np.clip(y + 1, 0, h - 1), x)
    dx = np.where((x > 0) & (x < w - 1), 0.25 * np.sign(right - left), 0.0)
    dy = np.where((y > 0) & (y < h - 1), 0.25 * np.sign(down - up), 0.0)
    return np.stack([dx, dy], axis=-1)


def _dark_offsets(hm: np.ndarray, x: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
    """[N, K, 2] DARK sub-pixel offsets (one Newton step on the smoothed log-heatmap), "quarter" where undefined."""
    h, w = hm.shape[-2:]
    # Only the 3×3 neighbourhood of each maximum is needed: smooth it as rows(Gy) @ map @ cols(Gx)ᵀ.
    # Near a border the blur would mix in reflected (or, with zero padding, missing) tails and pull the peak, so an
    # axis whose blur window crosses the border is left unblurred: a Gaussian blurred along one axis only is still
    # a Gaussian, and its log still a quadratic.
    radius = _blur_radius(sigma)
    steps = np.arange(-1, 2)
    ys, xs = np.clip(y[..., None] + steps, 0, h - 1), np.clip(x[..., None] + steps, 0, w - 1)
    rows = np.where(_clear(y, radius, h)[..., None, None], _blur_matrix(h, sigma)[ys], np.eye(h)[ys])  # [N, K, 3, H]
    cols = np.where(_clear(x, radius, w)[..., None, None], _blur_matrix(w, sigma)[xs], np.eye(w)[xs])  # [N, K, 3, W]
    patch = (rows @ np.nan_to_num(hm)) @ np.swapaxes(cols, -1, -2)  # [N, K, 3, 3], patch[i, j] at (y+i-1, x+j-1)
    lg = np.log(np.maximum(patch, _LOG_FLOOR))
    gxv = 0.5 * (lg[..., 1, 2] - lg[..., 1, 0])
    gyv = 0.5 * (lg[..., 2, 1] - lg[..., 0, 1])
    hxx = lg[..., 1, 2] - 2.0 * lg[..., 1, 1] + lg[..., 1, 0]
    hyy = lg[..., 2, 1] - 2.0 * lg[..., 1, 1] + lg[..., 0, 1]
    hxy = 0.25 * (lg[..., 2, 2] - lg[..., 2, 0] - lg[..., 0, 2] + lg[..., 0, 0])
    det = hxx * hyy - hxy**2
    safe_det = np.where(det > _MIN_DET, det, 1.0)
    dx = -(hyy * gxv - hxy * gyv) / safe_det
    dy = -(hxx * gyv - hxy * gxv) / safe_det
    inside_x, inside_y = (x > 0) & (x < w - 1), (y > 0) & (y < h - 1)
    ok = inside_x & inside_y & (hxx < 0) & (det > _MIN_DET) & (np.abs(dx) <= 1.0) & (np.abs(dy) <= 1.0)
    # Where the 2-D step is undefined (e.g. the maximum on the left border), refine each axis on its own if it can.
    quarter = _quarter_offsets(hm, x, y)
    dx = np.where(ok, dx, _newton_1d(gxv, hxx, inside_x, quarter[..., 0]))
    dy = np.where(ok, dy, _newton_1d(gyv, hyy, inside_y, quarter[..., 1]))
    return np.stack([dx, dy], axis=-1)


def _newton_1d(grad: np.ndarray, curv: np.ndarray, inside: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """-grad/curv where the maximum is inside on this axis, the curvature negative and the step within a pixel."""
    usable = inside & (curv < 0)
    step = -grad / np.where(usable, curv, -1.0)
    return np.where(usable & (np.abs(step) <= 1.0), step, fallback)


def _blur_radius(sigma: float) -> int:
    return max(1, math.ceil(3.0 * sigma))


def _clear(pos: np.ndarray, radius: int, n: int) -> np.ndarray:
    """True where the blur windows of pos-1 … pos+1 stay inside 0 … n-1."""
    return (pos - 1 - radius >= 0) & (pos + 1 + radius <= n - 1)


def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """[n, n] matrix of a 1-D Gaussian blur (radius 3σ) with OpenCV's default reflect-101 border."""
    radius = _blur_radius(sigma)
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-(taps**2) / (2.0 * sigma**2))
    kernel /= kernel.sum()
    src = np.arange(n)[:, None] + taps[None, :]
    if n > 1:
        period = 2 * (n - 1)
        src = np.abs(src) % period
        src = np.where(src > n - 1, period - src, src)
    else:
        src = np.zeros_like(src)
    mat = np.zeros((n, n))
    np.add.at(mat, (np.repeat(np.arange(n), len(taps)), src.ravel()), np.tile(kernel, n))
    return mat


def _at(hm: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    n, k = hm.shape[:2]
    return hm[np.arange(n)[:, None], np.arange(k)[None, :], y, x]


def flip_back(heatmaps: np.ndarray, flip_perm: np.ndarray) -> np.ndarray:
    """Heatmaps of a horizontally flipped input → heatmaps of the unflipped input.

    Args:
        heatmaps: [N, K, H, W] from the flipped input.
        flip_perm: [K] index array swapping left and right landmarks (an involution).

    Returns:
        [N, K, H, W] mirrored along W with joints permuted (a new array).
    """
    hm = np.asarray(heatmaps)
    return np.ascontiguousarray(hm[:, np.asarray(flip_perm)][..., ::-1])


def merge_flip(heatmaps: np.ndarray, flipped_back: np.ndarray) -> np.ndarray:
    """Average the heatmaps of an input and of its flip (after `flip_back`); no pixel shift is needed.

    Args:
        heatmaps: [N, K, H, W].
        flipped_back: [N, K, H, W], `flip_back` of the flipped input's heatmaps.
    """
    return 0.5 * (np.asarray(heatmaps) + np.asarray(flipped_back))


def heatmap_to_image(coords: np.ndarray, affine: np.ndarray, stride: int) -> np.ndarray:
    """Heatmap pixels → input-crop pixels → original-image pixels, in floating point.

    Args:
        coords: [N, K, 2] decoded heatmap coordinates.
        affine: [N, 2, 3] original-image → input-crop affines (as `crop_affine` or `augment_sample` return).
        stride: input size / heatmap size (4 for CU-Net).

    Returns:
        [N, K, 2] float64 original-image points (NaN stays NaN).
    """
    return apply_affine(heatmap_to_input(coords, stride), invert_affine(affine))

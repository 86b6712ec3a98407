"""Heatmaps → landmark coordinates: the one place cunet turns network output into points.

Four decoders, all returning float heatmap-pixel coordinates (the original truncated to integers, biasing NME):

- "argmax": the integer position of the maximum.
- "quarter": argmax + 0.25 px toward the larger neighbour on each axis, as the original CU-Net/hourglass code.
- "original": the original CU-Net code's own numbers (`pylib/Evaluation.py`'s `final_preds`), so its logged NME can
  be matched exactly: "quarter" (a map whose maximum is not positive gives its 1-based (0, 0), i.e. (-1, -1)), then
  `original_to_image` instead of `heatmap_to_image`: the nominal box's inverse transform, truncated to integers and
  shifted by its 1-based convention. Not for new work: truncation biases every point by half a pixel.
- "dark": DARK (Zhang et al., CVPR 2020): smooth the map with the training Gaussian, take its log (a quadratic for
  a Gaussian peak) and do one Newton step from the maximum: offset = -H⁻¹∇ with central differences. Where the
  step is not defined (the maximum on the border, a Hessian that is not negative definite, a step longer than a
  pixel) each axis is refined on its own where it can be, else it falls back to "quarter". Near a border the blur
  is skipped along that axis, as it would drag the peak.

Measured on synthetic Gaussian maps (σ = 2 at 64², 2,000 uniform sub-pixel centres 3 px or more from the border,
as in tests/data/test_decode.py): mean error argmax 0.38 px, quarter 0.19 px, dark < 1e-5 px; with added N(0, 0.05)
noise 0.50 / 0.33 / 0.08 px. So "dark" is the default.

Post-processing must not cost as much as a small model: the decoders gather only the values they need (the maximum,
its four neighbours, DARK's (2r+3)² window) with flat indices into the whole [N·K, H·W] stack, read the maps in
their own dtype, and handle both axes and all maps in [N·K, 2] arrays, so the number of numpy calls does not grow
with N or K (bench/decode.py measures it against the per-axis, full-height-blur decoder it replaced; the
landmarks agree to float64 rounding, tests/data/test_decode_reference.py checks a scalar reference map by map).

Horizontal flip test-time augmentation: `flip_back` mirrors the flipped input's heatmaps and swaps left/right
joints. No +1 px shift is needed: `crop_affine`'s flip maps x → S-1-x and, with S = stride·W, heatmap x → W-1-x is
exactly the same mirror (see `cunet.data.heatmaps` for the stride mapping), so `merge_flip` is a plain average.
"""

from __future__ import annotations

import functools
import math
from enum import Enum

import numpy as np

from cunet.data.heatmaps import default_sigma, heatmap_to_input
from cunet.data.preprocess import apply_affine, invert_affine

__all__ = ["DecodeMethod", "DEFAULT_METHOD", "decode", "flip_back", "merge_flip", "heatmap_to_image",
           "original_to_image"]


class DecodeMethod(str, Enum):
    """How heatmap maxima become coordinates."""

    ARGMAX = "argmax"
    QUARTER = "quarter"
    DARK = "dark"
    ORIGINAL = "original"


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
        method: "argmax", "quarter", "dark" or "original" (= "quarter", with (-1, -1) where the maximum is <= 0,
            for `original_to_image`).
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
    if hm.dtype.kind != "f":
        hm = hm.astype(np.float64)
    # The maps are read in their own dtype (float32 → float64 is exact and order-preserving, so the argmax and every
    # gathered value equal those of a float64 copy), and only a few values per map are gathered, as flat indices
    # into the whole stack. Both axes are handled together as [M, 2] arrays (M = N·K maps): a small model's decode
    # is a few dozen numpy calls, whatever K is.
    flat = np.ascontiguousarray(hm).reshape(n * k, h * w)
    values = flat.reshape(-1)
    base, last = _layout(n * k, h, w)
    idx = flat.argmax(axis=1)  # a NaN wins here, and such a map is reported as NaN below anyway
    scores = values[base + idx].astype(np.float64)
    bad = _non_finite_maps(flat, scores)
    pos = np.empty((n * k, 2), dtype=np.int64)  # (x, y) of each maximum
    np.divmod(idx, w, out=(pos[:, 1], pos[:, 0]))
    coords = pos.astype(np.float64)
    if method is not DecodeMethod.ARGMAX:
        inside = (pos > 0) & (pos < last)  # [M, 2]: the maximum has a neighbour on both sides along x / y
        quarter = _quarter_offsets(values, base + idx, w, inside)
        if method is DecodeMethod.QUARTER:
            coords += quarter
        elif method is DecodeMethod.ORIGINAL:
            # The original multiplies its 1-based argmax by (maximum > 0) and then finds no neighbours at 0.
            coords = np.where((scores > 0)[:, None], coords + quarter, -1.0)
        else:
            sigma = default_sigma(w) if sigma is None else float(sigma)
            coords += _dark_offsets(values, base, pos, last, w, inside, quarter, sigma, bad is not None)
    if bad is not None:
        coords[bad] = np.nan
        scores[bad] = np.nan
    return coords.reshape(n, k, 2), scores.reshape(n, k)


@functools.lru_cache(maxsize=32)
def _layout(maps: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(the start of each map in the flattened stack [maps], the last (x, y) of a map [2]); read-only, shared."""
    base, last = np.arange(maps) * (h * w), np.array([w - 1, h - 1])
    base.flags.writeable = last.flags.writeable = False
    return base, last


def _non_finite_maps(flat: np.ndarray, scores: np.ndarray) -> np.ndarray | None:
    """[M] True where a map holds a NaN or an infinity, or None when every map is finite.

    NaN and +inf win the argmax, so a finite maximum and a finite minimum mean a finite map; one global minimum
    answers the common all-finite case without a per-map pass.
    """
    if np.isfinite(scores).all() and np.isfinite(flat.min()):
        return None
    return ~np.isfinite(flat).all(axis=1)


def _method(method: str | DecodeMethod) -> DecodeMethod:
    if isinstance(method, DecodeMethod):
        return method
    try:
        return DecodeMethod(method)
    except ValueError:
        choices = ", ".join(m.value for m in DecodeMethod)
        raise ValueError(f"unknown decode method {method!r}: choose one of {choices}") from None


def _quarter_offsets(values: np.ndarray, at: np.ndarray, w: int, inside: np.ndarray) -> np.ndarray:
    """[M, 2] offsets of ±0.25 px toward the larger neighbour (0 on the border or on a tie).

    values: every map, flattened; at: [M] index of each maximum in it; inside: [M, 2] as in `decode`.
    """
    # Left, right, up, down in one gather; an index that wraps to the next row or map is masked out by `inside`.
    near = values.take(at[:, None, None] + np.array([[-1, 1], [-w, w]]), mode="clip").astype(np.float64)
    return np.where(inside, 0.25 * np.sign(near[:, :, 1] - near[:, :, 0]), 0.0)


def _dark_offsets(
    values: np.ndarray,
    base: np.ndarray,
    pos: np.ndarray,
    last: np.ndarray,
    w: int,
    inside: np.ndarray,
    quarter: np.ndarray,
    sigma: float,
    any_bad: bool,
) -> np.ndarray:
    """[M, 2] DARK sub-pixel offsets (one Newton step on the smoothed log-heatmap), `quarter` where undefined."""
    # Only the 3×3 neighbourhood of each maximum is needed, and its blur reads only the L×L window (L = 2r+3)
    # around the maximum: smooth the window's columns, then its rows, each as one [M·L, L] @ [L, 3] product.
    # Near a border the blur would mix in reflected tails and pull the peak, so an axis whose blur window crosses
    # the border is left unblurred (its three centre rows or columns are picked instead): a Gaussian blurred along
    # one axis only is still a Gaussian, and its log still a quadratic.
    blur = _blur_weights(sigma)  # [L, 3]
    size = len(blur)
    radius = (size - 3) // 2
    lines = pos[:, :, None] + np.arange(-radius - 1, radius + 2)  # [M, 2, L] columns and rows of the window
    np.minimum(np.maximum(lines, 0, out=lines), last[:, None], out=lines)
    window = values.take((lines[:, 1] * w + base[:, None])[:, :, None] + lines[:, 0, None, :]).astype(np.float64)
    if any_bad:
        window = np.nan_to_num(window, copy=False)  # only maps reported as NaN hold non-finite values
    # window[m, i, j] is the map at (x + j - r - 1, y + i - r - 1); `clear`: the blur windows of pos-1 … pos+1 fit.
    clear = (pos >= radius + 1) & (pos <= last - radius - 1)
    centre = slice(radius, radius + 3)
    cols = (window.reshape(-1, size) @ blur).reshape(-1, size, 3)
    cols = np.where(clear[:, 0, None, None], cols, window[:, :, centre])  # [M, L, 3]
    rows = (np.swapaxes(cols, 1, 2).reshape(-1, size) @ blur).reshape(-1, 3, 3)  # rows[m, j, i]
    patch = np.where(clear[:, 1, None, None], np.swapaxes(rows, 1, 2), cols[:, centre, :])
    # Central differences of the log (a quadratic for a Gaussian peak), patch[m, i, j] at (x + j - 1, y + i - 1):
    # columns of `_DERIVATIVES` give d/dx, d/dy, d²/dx², d²/dy², d²/dxdy.
    d = np.log(np.maximum(patch, _LOG_FLOOR)).reshape(-1, 9) @ _DERIVATIVES
    grad, curv, hxy = d[:, :2], d[:, 2:4], d[:, 4:5]
    det = curv[:, :1] * curv[:, 1:] - hxy**2  # [M, 1]
    step = -(curv[:, ::-1] * grad - hxy * grad[:, ::-1]) / np.where(det > _MIN_DET, det, 1.0)  # -H⁻¹∇
    short = np.abs(step) <= 1.0
    ok = inside[:, 0] & inside[:, 1] & (curv[:, 0] < 0) & (det[:, 0] > _MIN_DET) & short[:, 0] & short[:, 1]
    # Where the 2-D step is undefined (e.g. the maximum on the left border), refine each axis on its own if it can.
    usable = inside & (curv < 0)
    step_1d = -grad / np.where(usable, curv, -1.0)
    return np.where(ok[:, None], step, np.where(usable & (np.abs(step_1d) <= 1.0), step_1d, quarter))


def _derivative_weights() -> np.ndarray:
    """[9, 5]: the flattened 3×3 log-patch → (gx, gy, hxx, hyy, hxy) by central differences."""
    weights = np.zeros((3, 3, 5))
    weights[1, 2, 0], weights[1, 0, 0] = 0.5, -0.5
    weights[2, 1, 1], weights[0, 1, 1] = 0.5, -0.5
    weights[1, 2, 2], weights[1, 1, 2], weights[1, 0, 2] = 1.0, -2.0, 1.0
    weights[2, 1, 3], weights[1, 1, 3], weights[0, 1, 3] = 1.0, -2.0, 1.0
    weights[2, 2, 4], weights[2, 0, 4], weights[0, 2, 4], weights[0, 0, 4] = 0.25, -0.25, -0.25, 0.25
    weights = weights.reshape(9, 5)
    weights.flags.writeable = False
    return weights


_DERIVATIVES = _derivative_weights()


def _blur_radius(sigma: float) -> int:
    return max(1, math.ceil(3.0 * sigma))


@functools.lru_cache(maxsize=16)
def _blur_weights(sigma: float) -> np.ndarray:
    """[L, 3] weights (L = 2r+3, r = ceil(3σ)): column i is the 1-D Gaussian blur (radius r) of window row i+r,
    i.e. of offset i-1 from the maximum. Read-only: it is shared between calls."""
    radius = _blur_radius(sigma)
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-(taps**2) / (2.0 * sigma**2))
    kernel /= kernel.sum()
    weights = np.zeros((2 * radius + 3, 3))
    for i in range(3):
        weights[i : i + 2 * radius + 1, i] = kernel
    weights.flags.writeable = False
    return weights


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


def original_to_image(coords: np.ndarray, nominal: np.ndarray, stride: int) -> np.ndarray:
    """The original code's heatmap → image mapping (`final_preds` + `transform_preds`), in cunet's 0-based frame.

    The original adds 0.5 to its 1-based heatmap coordinates, subtracts 1, applies the inverse of its nominal crop
    transform (centre c, side 200·s; not the crop's integer box or shrink), truncates toward zero and adds 1. Its
    coordinates are 1-based numbers read as 0-based indices (`cunet.data.original_crop`): its centre is cunet's + 1.
    With v = `heatmap_to_image(coords, nominal, stride)` (cunet's affine puts pixel centres where the original's
    +0.5 does) that is `trunc(v + 1) + 1` in its frame, `trunc(v + 1)` in cunet's.

    Args:
        coords: [N, K, 2] heatmap coordinates from `decode(..., "original")`.
        nominal: [N, 2, 3] the boxes' `crop_affine`s (original pixels → input crop), as given to the original.
        stride: input size / heatmap size.

    Returns:
        [N, K, 2] float64 whole-pixel (x, y), 0-based (NaN stays NaN).
    """
    return np.trunc(heatmap_to_image(coords, nominal, stride) + 1.0)


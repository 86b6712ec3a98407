"""Gaussian heatmap targets and the mapping between input-crop pixels and heatmap pixels.

The network's heatmaps are `stride` times smaller than its input (4: 256² → 64²). With pixel centres on integers,
heatmap pixel j covers input pixels stride*j … stride*j + stride - 1, whose centre is

    input_x = stride * hm_x + (stride - 1) / 2        hm_x = (input_x - (stride - 1) / 2) / stride

(not input_x = stride * hm_x, which shifts everything by 1.5 px at stride 4). Both directions live here so the
targets and the decoder (`cunet.data.decode`) agree by construction.

Targets are exp(-d² / (2σ²)) evaluated over the whole map (separable, vectorised), peaking at 1 at the sub-pixel
point. The original CU-Net trained unannotated and cropped-out points towards an all-zero map; here they get mask 0
so the loss ignores them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_SIGMA_64", "default_sigma", "input_to_heatmap", "heatmap_to_input", "gaussian_targets"]

#: Gaussian sigma in heatmap pixels at 64² (the original's exp(-d²/9) is σ ≈ 2.12; 2.0 is the common choice).
DEFAULT_SIGMA_64 = 2.0


def default_sigma(size: int) -> float:
    """The training sigma for a `size`² heatmap: 2.0 at 64², proportional to the heatmap size."""
    return DEFAULT_SIGMA_64 * size / 64.0


def input_to_heatmap(points: np.ndarray, stride: int) -> np.ndarray:
    """Input-crop pixels → heatmap pixels. points: [..., 2] → [..., 2] float64 (NaN stays NaN)."""
    return (np.asarray(points, dtype=np.float64) - (stride - 1) / 2.0) / stride


def heatmap_to_input(points: np.ndarray, stride: int) -> np.ndarray:
    """Heatmap pixels → input-crop pixels. points: [..., 2] → [..., 2] float64 (NaN stays NaN)."""
    return np.asarray(points, dtype=np.float64) * stride + (stride - 1) / 2.0


def gaussian_targets(
    points: np.ndarray, visible: np.ndarray, size: int, sigma: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian heatmap targets and their loss mask.

    Args:
        points: [K, 2] (x, y) in heatmap pixels, NaN where not annotated.
        visible: [K] bool, True where annotated.
        size: heatmap side H = W.
        sigma: Gaussian sigma in heatmap pixels; `default_sigma(size)` when None.

    Returns:
        target: [K, size, size] float32, exp(-d² / (2σ²)); all zero where the mask is 0.
        mask: [K] float32, 1 for annotated points inside the heatmap (within its pixels' extent
            [-0.5, size - 0.5)), else 0.
    """
    sigma = default_sigma(size) if sigma is None else float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    vis = np.asarray(visible, dtype=bool).reshape(-1)
    if len(vis) != len(pts):
        raise ValueError(f"{len(pts)} points but {len(vis)} visibility flags")
    with np.errstate(invalid="ignore"):
        inside = np.isfinite(pts).all(axis=1) & (pts >= -0.5).all(axis=1) & (pts < size - 0.5).all(axis=1)
    mask = vis & inside
    grid = np.arange(size, dtype=np.float64)
    safe = np.where(mask[:, None], pts, 0.0)
    gx = np.exp(-((grid[None, :] - safe[:, 0:1]) ** 2) / (2.0 * sigma**2))
    gy = np.exp(-((grid[None, :] - safe[:, 1:2]) ** 2) / (2.0 * sigma**2))
    target = (gy[:, :, None] * gx[:, None, :]).astype(np.float32)
    target[~mask] = 0.0
    return target, mask.astype(np.float32)

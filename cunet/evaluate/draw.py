"""Landmark overlays: predicted points (one colour) over the true ones (another) on images, tiles and grids.

- `draw_landmarks`: dots (and a skeleton) on a copy of a BGR image, drawn with OpenCV at 1/16-pixel precision.
- `example_tile` / `example_grid`: test images cropped to each sample's box so small faces stay readable, laid out
  under a banner with the colour legend.

Only drawing lives here, so `cunet predict` can draw overlays without importing the report writer.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["PRED_COLOUR", "TRUE_COLOUR", "draw_landmarks", "example_tile", "example_grid", "overlay_radius"]

#: BGR colours of the overlays: predictions red, ground truth green (the legend on every grid says so).
PRED_COLOUR = (40, 40, 230)
TRUE_COLOUR = (60, 200, 60)
_TILE = 256
_SHIFT = 4  # OpenCV fixed-point drawing: coordinates in 1/16 pixel
_BANNER = 30
# OpenCV draws with int32 fixed-point coordinates: a point beyond this (pixels, either side) raised cv2.error. No
# dot that far out could be seen on an image anyway, so such points are not drawn (like NaN ones).
_DRAWABLE = float(1 << (30 - _SHIFT))


def _fixed(points: np.ndarray) -> list[tuple[int, int] | None]:
    one = 1 << _SHIFT
    return [
        (int(round(x * one)), int(round(y * one))) if abs(x) < _DRAWABLE and abs(y) < _DRAWABLE else None
        for x, y in np.asarray(points, dtype=np.float64)
    ]


def draw_landmarks(
    image: np.ndarray,
    points: np.ndarray,
    colour: tuple[int, int, int],
    visible: np.ndarray | None = None,
    skeleton: Sequence[tuple[int, int]] = (),
    radius: float = 2.0,
) -> np.ndarray:
    """Draw points [K, 2] (and the skeleton lines between them) on a copy of a BGR image.

    Args:
        image: BGR uint8 [H, W, 3]; not modified.
        points: [K, 2] 0-based pixel coordinates; NaN points and points over 2**26 px away are skipped.
        colour: BGR colour of the dots and lines.
        visible: [K] bool; False points are skipped (None: every finite point).
        skeleton: index pairs joined by a line when both ends are drawn.
        radius: dot radius in pixels (a dark rim one pixel wider keeps dots visible on bright backgrounds).

    Returns:
        The drawn copy.
    """
    import cv2

    out = image.copy()
    fixed = _fixed(points)
    if visible is not None:
        fixed = [p if ok else None for p, ok in zip(fixed, np.asarray(visible, dtype=bool))]
    for a, b in skeleton:
        if fixed[a] is not None and fixed[b] is not None:
            cv2.line(out, fixed[a], fixed[b], colour, 1, cv2.LINE_AA, _SHIFT)
    one = 1 << _SHIFT
    for p in fixed:
        if p is not None:
            cv2.circle(out, p, int((radius + 1) * one), (0, 0, 0), -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(out, p, int(radius * one), colour, -1, cv2.LINE_AA, _SHIFT)
    return out


def _label(image: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.45) -> None:
    """White text on a dark box (readable on any background), `origin` at the text's bottom-left."""
    import cv2

    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = origin
    cv2.rectangle(image, (x - 3, y - h - 3), (x + w + 3, y + base + 1), (24, 24, 24), -1)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def example_tile(
    image: np.ndarray,
    box: Any,
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray | None = None,
    skeleton: Sequence[tuple[int, int]] = (),
    caption: str | None = None,
    size: int = _TILE,
) -> np.ndarray:
    """One test image cropped to its box (`cunet.data.preprocess.Box`), true points then predictions on top.

    Pass the skeleton for poses (limbs make a pose readable); faces read better as dots alone, because the lines of
    a poor prediction cover the face.

    Returns:
        BGR uint8 [size, size, 3].
    """
    from cunet.data.preprocess import apply_affine, crop_affine, warp

    m = crop_affine(box, size)
    tile = warp(image, m, size)
    tile = draw_landmarks(tile, apply_affine(gt, m), TRUE_COLOUR, visible, skeleton, radius=2.0)
    tile = draw_landmarks(tile, apply_affine(pred, m), PRED_COLOUR, visible, skeleton, radius=1.6)
    if caption:
        _label(tile, caption, (6, size - 8))
    return tile


def example_grid(tiles: Sequence[np.ndarray], title: str, cols: int = 4) -> np.ndarray:
    """Tiles in a grid under a banner with the title and the colour legend. Returns BGR uint8."""
    import cv2

    if not tiles:
        raise ValueError("no tiles to lay out")
    h, w = tiles[0].shape[:2]
    cols = min(cols, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    grid = np.full((_BANNER + rows * h, cols * w, 3), 32, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[_BANNER + r * h : _BANNER + (r + 1) * h, c * w : (c + 1) * w] = tile
    _label(grid, title, (8, 20), 0.5)
    x = max(8, grid.shape[1] - 250)
    for colour, text in ((TRUE_COLOUR, "true"), (PRED_COLOUR, "predicted")):
        cv2.circle(grid, (x, 15), 5, colour, -1, cv2.LINE_AA)
        _label(grid, text, (x + 10, 20), 0.5)
        x += 110
    return grid


def overlay_radius(box_size: float) -> float:
    """Dot radius (pixels) of an overlay: it follows the face or person box, not the image, so a 40-px face in an
    8000-px photo gets dots that leave it visible (1/128 of the box side, at least 1 px)."""
    return max(1.0, float(box_size) / 128.0)

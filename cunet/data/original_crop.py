"""The original CU-Net code's crop, for models imported from it (`ModelMeta.crop == "original"`).

A network sees the pixels it was trained on only if it gets the same crop to the pixel. The original
(`pylib/HumanAug.py`'s `crop`, fed by `data/face_bbx.py` and `data/mpii_for_mpii_22.py`) makes it so:

- Its coordinates are the annotation files' 1-based numbers used as 0-based array indices: its centre is cunet's
  0-based box centre + 1 (faces: the detector box's centre; MPII: the person centre moved down 15 x scale), and its
  crop side is cunet's `Box.size` (200 px x scale: x1.1 of the detector box for faces, x1.25 of the person scale for
  MPII).
- When the crop side is at least twice the output side, the whole image is first shrunk by that factor f (to
  int(W / f) x int(H / f), PIL bilinear, which antialiases when it shrinks), after `scipy.misc.imresize`'s bytescale
  of the whole image to its own min..max.
- The crop box is truncated to integers at that size: upper-left `trunc(c - side / 2)`, lower-right
  `trunc(c + side / 2)` (after a shrink: upper-left + output side), areas outside the image are black.
- The box's pixels (a float array) are bytescaled to 0..255 over their own min..max, black padding included, and
  resized by PIL bilinear to the output side (`scipy.misc.imresize`).

`original_crop` does exactly this (Pillow resamples, as `scipy.misc` did) and also returns the affine of what was
sampled (original pixels → crop pixels, per axis: a truncated box is not always square), so cunet's sub-pixel
decoder maps heatmaps back through the geometry the network really saw. Rotation is left out: inference never
rotates. One divergence: where the shrunk image would be under 2 px the original returns the image uncropped (a
batch of such crops cannot even be stacked); this crops it unshrunk.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["original_crop", "original_center", "bytescale", "SHRINK_FROM"]

#: The original shrinks the whole image first when the crop side is at least this many times the output side.
SHRINK_FROM = 2.0


def original_center(cx: float, cy: float) -> tuple[float, float]:
    """The original code's crop centre for cunet's 0-based box centre: its 1-based coordinates, read as array
    indices."""
    return cx + 1.0, cy + 1.0


def bytescale(data: np.ndarray) -> np.ndarray:
    """`scipy.misc.bytescale` of a float array: its min..max (all channels together) to uint8 0..255, rounded
    half up; a flat array becomes 0."""
    lo, hi = float(data.min()), float(data.max())
    scale = 255.0 / ((hi - lo) or 1.0)
    return (np.clip((data - lo) * scale, 0.0, 255.0) + 0.5).astype(np.uint8)


def _pil_resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """PIL's bilinear resize of an [H, W, 3] uint8 array (antialiased when shrinking); channels are independent,
    so BGR and RGB arrays resize alike."""
    from PIL import Image

    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels.copy()
    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize((width, height), Image.BILINEAR))


def original_crop(image: np.ndarray, cx: float, cy: float, side: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The original code's `size` x `size` crop of the square box centred on (cx, cy) with side `side`.

    Args:
        image: [H, W, 3] uint8 (BGR or RGB: the result keeps the order).
        cx, cy, side: the box in cunet's 0-based pixels, as `cunet.data.preprocess.Box` holds it.
        size: output side (the model's input size).

    Returns:
        (crop [size, size, 3] uint8, already bytescaled to its own range as the original's inputs were; affine
        [2, 3] mapping original-image pixels (0-based, centres on integers) to crop pixels).
    """
    img_h, img_w = image.shape[:2]
    cx, cy = original_center(cx, cy)
    factor = side / size
    # The original loads images as float 0..1; every bytescale below is invariant to that scale, so the raw values
    # serve, and float64 keeps the arithmetic of a float array.
    src = image.astype(np.float64) / 255.0
    sx = sy = 1.0  # shrunk pixels per original pixel along x / y
    shrunk = factor >= SHRINK_FROM and math.floor(max(img_h, img_w) / factor) >= 2
    if shrunk:
        new_w, new_h = int(img_w * (1.0 / factor)), int(img_h * (1.0 / factor))
        src = _pil_resize(bytescale(src), new_w, new_h).astype(np.float64)
        sx, sy = new_w / img_w, new_h / img_h
        cx, cy, side = cx / factor, cy / factor, side / factor
    ul = np.trunc(np.array([cx - side / 2.0, cy - side / 2.0])).astype(np.int64)
    br = ul + size if shrunk else np.trunc(np.array([cx + side / 2.0, cy + side / 2.0])).astype(np.int64)
    n = br - ul  # the box in pixels of `src`, (width, height)
    canvas = np.zeros((max(int(n[1]), 1), max(int(n[0]), 1), image.shape[2]), dtype=np.float64)
    h_src, w_src = src.shape[:2]
    x0, x1 = max(0, int(ul[0])), min(w_src, int(br[0]))
    y0, y1 = max(0, int(ul[1])), min(h_src, int(br[1]))
    if x1 > x0 and y1 > y0:
        canvas[y0 - ul[1] : y1 - ul[1], x0 - ul[0] : x1 - ul[0]] = src[y0:y1, x0:x1]
    crop = _pil_resize(bytescale(canvas), size, size)
    # crop pixel j <- canvas (j + 0.5) * n / size - 0.5 <- src + ul <- original (x + 0.5) * s - 0.5 (PIL's pixel-
    # centre mapping for both resizes); solved for j.
    gx, gy = size / max(int(n[0]), 1), size / max(int(n[1]), 1)
    affine = np.array([[sx * gx, 0.0, (0.5 * sx - ul[0]) * gx - 0.5],
                       [0.0, sy * gy, (0.5 * sy - ul[1]) * gy - 0.5]])
    return crop, affine

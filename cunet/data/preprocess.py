"""The one definition of how an image becomes a network input, shared by training, export metadata and every runtime.

Coordinates everywhere in cunet are 0-based pixel coordinates with pixel centres on integers (file formats that are
1-based, like 300-W `.pts` and the MPII JSON, are converted by their readers and writers).

A crop is a square of side `size` pixels centred on `center`, optionally rotated, resampled to `out_size`. Its affine
maps original-image points to crop points; `invert_affine` maps network predictions back to the original image in
floating point (the original code truncated to integers, which biases NME).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MEAN",
    "STD",
    "CROPS",
    "Box",
    "crop_images",
    "prepare_inputs",
    "crop_affine",
    "crop_affines",
    "invert_affine",
    "apply_affine",
    "warp",
    "to_input",
    "box_from_points",
    "box_from_xyxy",
    "box_from_center_scale",
    "MIN_BOX_INSIDE",
    "box_problem",
]

#: RGB mean and std on the 0..1 scale (ImageNet statistics): what the exported ONNX metadata records.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

#: How a box becomes a crop: "cunet" (`crop_affine` + bilinear `warp`, what cunet trains with) or "original" (the
#: original CU-Net code's integer box, whole-image shrink and per-crop bytescale, `cunet.data.original_crop`: for
#: models imported from it, `ModelMeta.crop`).
CROPS = ("cunet", "original")

#: The crop is this much larger than the tight landmark box (faces) so the jaw and brows are never cut off.
FACE_BOX_MARGIN = 1.25
#: MPII person scale is person height / 200 px; common loaders enlarge it by 1.25 and move the centre down 15 * scale.
MPII_SCALE_PX = 200.0
MPII_SCALE_MARGIN = 1.25
MPII_CENTER_SHIFT = 15.0
#: A crop box given by a user (a detector box file, an MPII centre/scale, a box from the landmarks) must keep at
#: least this fraction of its area inside the image. A face or person cut by the frame is normal (its crop box then
#: lies partly outside, often by half); a box wholly outside the image, or so large that the image is a speck in
#: it (e.g. [1e9, 1e9, 2e9, 2e9], or 4x the image's size), is a wrong box whose crop holds nothing to predict from.
MIN_BOX_INSIDE = 0.1


@dataclass(frozen=True)
class Box:
    """A square crop region: centre (x, y) in pixels and side length in pixels."""

    cx: float
    cy: float
    size: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cx) and math.isfinite(self.cy) and math.isfinite(self.size) and self.size > 0):
            raise ValueError(f"invalid crop box {self}")


def box_problem(box: Box, width: int, height: int) -> str | None:
    """Why `box` cannot be cropped from a `width` x `height` image, or None: less than `MIN_BOX_INSIDE` of its area
    lies inside the image (the image spans [-0.5, width - 0.5] x [-0.5, height - 0.5] in pixel-centre coordinates).
    Finite, positive boxes are `Box`'s own invariant."""
    half = box.size / 2
    x1, y1, x2, y2 = box.cx - half, box.cy - half, box.cx + half, box.cy + half
    inside_w = max(0.0, min(x2, width - 0.5) - max(x1, -0.5))
    inside_h = max(0.0, min(y2, height - 0.5) - max(y1, -0.5))
    area = box.size * box.size
    inside = inside_w * inside_h / area if math.isfinite(area) and area > 0 else 0.0
    if inside >= MIN_BOX_INSIDE:
        return None
    outside = 100 * (1 - inside)
    where = ("wholly outside" if inside == 0 else "more than 99.9 % outside" if outside > 99.9
             else f"{outside:.1f} % outside")
    return (f"crop box [{x1:.6g}, {y1:.6g}, {x2:.6g}, {y2:.6g}] lies {where} the {width}x{height} image "
            f"(at least {100 * MIN_BOX_INSIDE:.0f} % of it must be inside)")


def box_from_points(points: np.ndarray, visible: np.ndarray | None = None, margin: float = FACE_BOX_MARGIN) -> Box:
    """The square box around the (visible) points, enlarged by `margin`. points: [K, 2]."""
    pts = np.asarray(points, dtype=np.float64)
    if visible is not None:
        pts = pts[np.asarray(visible, dtype=bool)]
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        raise ValueError("no finite visible points to build a box from")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    side = float(max(hi - lo)) * margin
    return Box(float((lo[0] + hi[0]) / 2), float((lo[1] + hi[1]) / 2), max(side, 1.0))


def box_from_xyxy(x1: float, y1: float, x2: float, y2: float, margin: float = FACE_BOX_MARGIN) -> Box:
    """A square box around a detector box [x1, y1, x2, y2], enlarged by `margin`."""
    return Box((x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * margin)


def box_from_center_scale(center: tuple[float, float], scale: float) -> Box:
    """The crop common MPII loaders use: centre moved down 15 * scale, side 200 * scale * 1.25 (0-based centre)."""
    return Box(center[0], center[1] + MPII_CENTER_SHIFT * scale, scale * MPII_SCALE_PX * MPII_SCALE_MARGIN)


def crop_affine(box: Box, out_size: int, rotation_deg: float = 0.0, flip: bool = False) -> np.ndarray:
    """The 2x3 affine mapping original-image pixels to a `out_size` crop of `box`, rotated counter-clockwise.

    Pixel centres map to pixel centres: the box centre lands on (out_size - 1) / 2.
    """
    s = out_size / box.size
    a = math.radians(rotation_deg)
    cos, sin = math.cos(a) * s, math.sin(a) * s
    # Rotate+scale about the box centre, then move it to the crop centre.
    m = np.array([[cos, sin, 0.0], [-sin, cos, 0.0]], dtype=np.float64)
    c = (out_size - 1) / 2.0
    m[:, 2] = np.array([c, c]) - m[:, :2] @ np.array([box.cx, box.cy])
    if flip:
        m = np.array([[-1.0, 0.0, out_size - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0.0, 0.0, 1.0]])
    return m


def crop_affines(centers: np.ndarray, sizes: np.ndarray, out_size: int) -> np.ndarray:
    """`crop_affine` of N unrotated, unflipped boxes at once: centers [N, 2], sizes [N] → [N, 2, 3] (same values)."""
    c = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    s = out_size / np.asarray(sizes, dtype=np.float64).reshape(-1)
    m = np.zeros((len(c), 2, 3))
    m[:, 0, 0] = m[:, 1, 1] = s
    m[:, :, 2] = (out_size - 1) / 2.0 - s[:, None] * c
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine (or a stack [..., 2, 3]), in closed form: [A | t]⁻¹ = [A⁻¹ | -A⁻¹ t]."""
    m = np.asarray(m, dtype=np.float64)
    a = m[..., :2]
    det = a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]
    if (det == 0).any():
        raise np.linalg.LinAlgError("singular affine")
    inv = np.empty(m.shape)
    inv[..., :2] = a[..., _ADJUGATE_ROWS, _ADJUGATE_COLS] * (_ADJUGATE_SIGNS / det[..., None, None])
    inv[..., 2] = -(inv[..., :2] @ m[..., 2:])[..., 0]
    return inv


#: adj([[a, b], [c, d]]) = [[d, -b], [-c, a]]: which entry goes where, and its sign.
_ADJUGATE_ROWS, _ADJUGATE_COLS = np.array([[1, 0], [1, 0]]), np.array([[1, 1], [0, 0]])
_ADJUGATE_SIGNS = np.array([[1.0, -1.0], [-1.0, 1.0]])


def apply_affine(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to points [..., K, 2] (m: [2, 3] or [..., 2, 3] matching the leading dims)."""
    pts = np.asarray(points, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    return pts @ m[..., :, :2].swapaxes(-1, -2) + m[..., None, :, 2]


def warp(image: np.ndarray, m: np.ndarray, out_size: int) -> np.ndarray:
    """Resample `image` (H, W, 3 uint8) through affine `m` into an out_size x out_size crop (bilinear, black border)."""
    import cv2

    return cv2.warpAffine(
        image, m.astype(np.float64), (out_size, out_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )


def to_input(
    crops: np.ndarray, mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD, stretch: str = "none"
) -> np.ndarray:
    """BGR uint8 crops [N, H, W, 3] (as OpenCV reads them) → normalised RGB float32 [N, 3, H, W].

    `stretch="minmax"` first rescales each crop (all channels together) to span 0..1, as the original CU-Net code's
    resampling did (scipy's `imresize` of a float crop maps its min..max to 0..255); a flat crop stays as it is.
    """
    if stretch not in ("none", "minmax"):
        raise ValueError(f"unknown stretch {stretch!r}")
    # One float32 buffer in the output layout, then in-place arithmetic: the same operations (so the same values)
    # as ((x / 255) - mean) / std without the four temporaries.
    c = np.asarray(crops)
    x = np.empty((c.shape[0], c.shape[3], c.shape[1], c.shape[2]), dtype=np.float32)
    x[...] = c[..., ::-1].transpose(0, 3, 1, 2)
    x /= np.float32(255.0)
    if stretch == "minmax":
        lo = x.min(axis=(1, 2, 3), keepdims=True)
        span = x.max(axis=(1, 2, 3), keepdims=True) - lo
        x = np.where(span > 0, (x - lo) / np.where(span > 0, span, 1.0), x).astype(np.float32, copy=False)
    x -= np.asarray(mean, dtype=np.float32)[:, None, None]
    x /= np.asarray(std, dtype=np.float32)[:, None, None]
    return x


def crop_images(images: "list[np.ndarray]", boxes: "list[Box]", size: int,
                crop: str = "cunet") -> tuple[np.ndarray, np.ndarray]:
    """Crop each image's box to `size` x `size` by the model's crop rule (`CROPS`).

    Args:
        images: N uint8 arrays [H, W, 3] (sizes may differ).
        boxes: N boxes in original pixels.
        size: output side.
        crop: "cunet" or "original".

    Returns:
        (crops [N, size, size, 3] uint8, affines [N, 2, 3] original pixels → crop pixels of what was sampled).
        "original" crops are already bytescaled to their own range (the original did it before resizing).
    """
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; choose {', '.join(CROPS)}")
    crops = np.empty((len(images), size, size, 3), dtype=np.uint8)
    if crop == "original":
        from cunet.data.original_crop import original_crop

        affines = np.empty((len(images), 2, 3))
        for i, (image, box) in enumerate(zip(images, boxes)):
            crops[i], affines[i] = original_crop(image, box.cx, box.cy, box.size, size)
        return crops, affines
    affines = crop_affines(np.array([(b.cx, b.cy) for b in boxes]).reshape(-1, 2), [b.size for b in boxes], size)
    for i, image in enumerate(images):
        crops[i] = warp(image, affines[i], size)
    return crops, affines


def prepare_inputs(images: "list[np.ndarray]", boxes: "list[Box]", size: int, mean: tuple[float, ...] = MEAN,
                   std: tuple[float, ...] = STD, stretch: str = "none",
                   crop: str = "cunet") -> tuple[np.ndarray, np.ndarray]:
    """BGR uint8 images and their boxes → network input: `crop_images`, then `to_input`.

    The one preprocessing path of every runtime and of calibration. An "original" crop is bytescaled inside the
    crop (before its resize, as the original did), so `stretch` does not apply to it again.

    Returns:
        (x [N, 3, size, size] float32, affines [N, 2, 3] original pixels → input-crop pixels).
    """
    crops, affines = crop_images(images, boxes, size, crop)
    return to_input(crops, mean, std, "none" if crop == "original" else stretch), affines


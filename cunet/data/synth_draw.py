"""Drawing helpers shared by the synthetic face and pose generators: sub-pixel anti-aliased shapes, smooth curves
through landmarks, cluttered backgrounds and the photometric "finish" (lighting gradient, noise, blur, occluders).

Everything takes an explicit `np.random.Generator`, so an image is a pure function of its generator's state.
Points are float pixel coordinates (0-based, pixel centres on integers, as everywhere in cunet); OpenCV draws them
with 4 fractional bits (`shift=4`), so a landmark and the stroke drawn through it agree to 1/16 pixel.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = [
    "Color",
    "SHIFT",
    "fixed",
    "fill",
    "stroke",
    "disc",
    "capsule",
    "catmull_rom",
    "random_color",
    "shade",
    "background",
    "occlude",
    "finish",
]

Color = tuple[float, float, float]

#: Fractional bits OpenCV uses for coordinates passed with `shift`.
SHIFT = 4
_ONE = 1 << SHIFT


def fixed(points: np.ndarray) -> np.ndarray:
    """Float points [K, 2] → int32 fixed-point points [K, 2] for OpenCV's `shift=SHIFT`."""
    return np.round(np.asarray(points, dtype=np.float64) * _ONE).astype(np.int32)


def fill(img: np.ndarray, points: np.ndarray, color: Color) -> None:
    """Fill the polygon `points` [K, 2] anti-aliased, in place."""
    cv2.fillPoly(img, [fixed(points)], color, lineType=cv2.LINE_AA, shift=SHIFT)


def stroke(img: np.ndarray, points: np.ndarray, color: Color, width: float, closed: bool = False) -> None:
    """Draw the polyline `points` [K, 2] anti-aliased with a stroke `width` pixels wide (at least 1), in place."""
    cv2.polylines(img, [fixed(points)], closed, color, max(1, int(round(width))), lineType=cv2.LINE_AA, shift=SHIFT)


def disc(img: np.ndarray, center: np.ndarray, radius: float, color: Color, axes_ratio: float = 1.0,
         angle_deg: float = 0.0) -> None:
    """Fill an ellipse of semi-axes (radius, radius * axes_ratio) rotated by `angle_deg`, in place."""
    c = tuple(int(v) for v in fixed(np.asarray(center)[None])[0])
    axes = (max(1, int(round(radius * _ONE))), max(1, int(round(radius * axes_ratio * _ONE))))
    cv2.ellipse(img, c, axes, angle_deg, 0, 360, color, -1, lineType=cv2.LINE_AA, shift=SHIFT)


def capsule(img: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float, color: Color) -> None:
    """A thick segment from `a` to `b` with round ends (a limb), in place."""
    pts = fixed(np.stack([a, b]))
    cv2.line(img, tuple(int(v) for v in pts[0]), tuple(int(v) for v in pts[1]), color,
             max(1, int(round(2 * radius))), lineType=cv2.LINE_AA, shift=SHIFT)


def catmull_rom(points: np.ndarray, closed: bool = False, samples: int = 8) -> np.ndarray:
    """A smooth curve through every control point (uniform Catmull-Rom spline).

    Args:
        points: control points [K, 2]; the curve passes exactly through each of them.
        closed: join the last point back to the first.
        samples: curve points per segment.

    Returns:
        The dense curve [M, 2] (M = samples * segments + 1 when open).
    """
    p = np.asarray(points, dtype=np.float64)
    if closed:
        ext = np.concatenate([p[-1:], p, p[:2]])
    else:
        ext = np.concatenate([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]])
    t = np.linspace(0.0, 1.0, samples, endpoint=False)[:, None]
    t2, t3 = t * t, t * t * t
    out = []
    for i in range(len(ext) - 3):
        p0, p1, p2, p3 = ext[i], ext[i + 1], ext[i + 2], ext[i + 3]
        a, b, c = p2 - p0, 2 * p0 - 5 * p1 + 4 * p2 - p3, 3 * p1 - p0 - 3 * p2 + p3
        out.append(0.5 * (2 * p1 + a * t + b * t2 + c * t3))
    curve = np.concatenate(out)
    return curve if closed else np.concatenate([curve, p[-1:]])


def random_color(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> Color:
    """A uniformly random BGR colour with channels in [lo, hi)."""
    return tuple(float(v) for v in rng.integers(lo, hi, size=3))


def shade(color: Color, factor: float) -> Color:
    """`color` scaled by `factor` (< 1 darker, > 1 lighter), clipped to 0..255."""
    return tuple(float(min(255.0, max(0.0, c * factor))) for c in color)


def background(rng: np.random.Generator, size: int, difficulty: float) -> np.ndarray:
    """A size x size BGR uint8 background: a two-colour gradient plus random clutter (more with difficulty).

    Clutter is filled/outlined circles, rectangles, polygons and lines; their count grows from ~2 to ~20.
    """
    c0, c1 = np.array(random_color(rng, 20, 236)), np.array(random_color(rng, 20, 236))
    a = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(a) * np.arange(size)[None, :] + np.sin(a) * np.arange(size)[:, None]) / (size * 1.42) + 0.5
    img = (c0 + (c1 - c0) * ramp[..., None]).astype(np.uint8)
    for _ in range(int(rng.integers(2, 4 + int(18 * difficulty)))):
        _clutter_shape(img, rng, size)
    return img


def _clutter_shape(img: np.ndarray, rng: np.random.Generator, size: int) -> None:
    color = random_color(rng)
    kind = int(rng.integers(4))
    c = rng.uniform(-0.1, 1.1, size=2) * size
    r = rng.uniform(0.03, 0.25) * size
    width = float(rng.choice([-1, rng.uniform(1, 4)]))
    if kind == 0:
        cv2.circle(img, tuple(int(v) for v in fixed(c[None])[0]), int(r * _ONE), color,
                   int(width) if width < 0 else max(1, int(width)), cv2.LINE_AA, SHIFT)
    elif kind == 1:
        pts = c + rng.uniform(-r, r, size=(int(rng.integers(3, 7)), 2))
        _fill_or_stroke(img, pts, color, width)
    elif kind == 2:
        a = rng.uniform(0, math.pi)
        d = np.array([math.cos(a), math.sin(a)]) * r * 2
        stroke(img, np.stack([c - d, c + d]), color, rng.uniform(1, 6))
    else:
        box = cv2.boxPoints(((float(c[0]), float(c[1])), (float(r), float(r * rng.uniform(0.3, 1.5))),
                             float(rng.uniform(0, 180))))
        _fill_or_stroke(img, box, color, width)


def _fill_or_stroke(img: np.ndarray, pts: np.ndarray, color: Color, width: float) -> None:
    if width < 0:
        fill(img, pts, color)
    else:
        stroke(img, pts, color, width, closed=True)


def occlude(img: np.ndarray, rng: np.random.Generator, center: np.ndarray, extent: float) -> None:
    """Draw an opaque bar or blob of a random colour near `center`, covering part of an object `extent` px wide."""
    color = random_color(rng)
    c = center + rng.uniform(-0.35, 0.35, size=2) * extent
    if rng.random() < 0.5:
        length, thick = rng.uniform(0.6, 1.4) * extent, rng.uniform(0.12, 0.3) * extent
        box = cv2.boxPoints(((float(c[0]), float(c[1])), (float(length), float(thick)), float(rng.uniform(0, 180))))
        fill(img, box, color)
    else:
        disc(img, c, rng.uniform(0.15, 0.3) * extent, color, rng.uniform(0.5, 1.0), rng.uniform(0, 180))


def finish(img: np.ndarray, rng: np.random.Generator, difficulty: float) -> np.ndarray:
    """Lighting gradient, sensor noise and blur, each stronger with `difficulty`. Returns a new uint8 image.

    - lighting: a linear gain ramp across the image, up to ±(0.15 + 0.45 * difficulty);
    - noise: Gaussian, sigma up to 2 + 10 * difficulty grey levels;
    - blur: Gaussian with probability 0.2 + 0.5 * difficulty, sigma up to 0.4 + 1.6 * difficulty pixels.
    """
    size = img.shape[0]
    a = rng.uniform(0, 2 * math.pi)
    strength = rng.uniform(0, 0.15 + 0.45 * difficulty)
    ramp = (math.cos(a) * np.arange(size)[None, :] + math.sin(a) * np.arange(size)[:, None]) / size
    gain = 1.0 + strength * (ramp - ramp.mean()) * 2.0
    out = img.astype(np.float32) * gain[..., None].astype(np.float32)
    sigma = rng.uniform(0, 2 + 10 * difficulty)
    out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(sigma)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.2 + 0.5 * difficulty:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 0.4 + 1.6 * difficulty))
    return out

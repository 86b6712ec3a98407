"""Synthetic faces with 68 iBUG landmarks that sit on drawn features, so a landmark model can learn them.

A face is built in a canonical 3-D frame (x right, y down, z toward the camera; unit = half the face width), where
every landmark is a point of a curve that is drawn: the jaw on the face outline, brows on brow strokes, eyes on the
lid outlines (with an iris inside), the nose on its bridge line and nostril curve, the mouth on the outer and inner
lip contours. The same transform (yaw, pitch, roll, scale, shift) moves landmarks and curves, so they stay on top of
each other to 1/16 pixel. Yaw uses the depth of each point, so turning the head squashes one side of the face.

The 0-based iBUG layout: jaw 0-16 (from the subject's right ear, on the image's left), brows 17-26, nose bridge
27-30, nostrils 31-35, eyes 36-47 (subject's right eye 36-41, outer corner first), outer lips 48-59, inner lips 60-67.
"""

from __future__ import annotations

import math

import numpy as np

from cunet.data.synth_draw import (
    Color,
    background,
    catmull_rom,
    disc,
    fill,
    finish,
    occlude,
    random_color,
    shade,
    stroke,
)

__all__ = ["NUM_FACE_POINTS", "FACE_RANGES", "face_ranges", "make_face"]

NUM_FACE_POINTS = 68

#: What `difficulty` (0..1) scales for faces; each entry is (value at 0, value at 1), read by `face_ranges`.
FACE_RANGES = {
    "yaw_deg": (10.0, 40.0),  # uniform in ±value
    "pitch_deg": (5.0, 15.0),
    "roll_deg": (5.0, 30.0),
    "occlusion_p": (0.05, 0.4),  # probability of an opaque bar or blob over part of the face
}

_DEPTH = 0.5  # how far the face surface bulges toward the camera, in half face widths
# Face height (hair top to chin) in canonical units, used to size the face to 40-80% of the image.
_FACE_HEIGHT = 2.6
_NOSTRIL_BULGE = 0.1


def face_ranges(difficulty: float) -> dict[str, float]:
    """The face parameter ranges at `difficulty` (linear between the ends of `FACE_RANGES`)."""
    return {k: lo + (hi - lo) * difficulty for k, (lo, hi) in FACE_RANGES.items()}


def _depth(x: np.ndarray) -> np.ndarray:
    return _DEPTH * np.sqrt(np.clip(1.0 - np.asarray(x) ** 2, 0.0, None))


def _with_depth(xy: np.ndarray, bulge: float = 0.0) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64)
    return np.column_stack([xy, _depth(xy[:, 0]) + bulge])


class _Face:
    """One random face in the canonical frame: landmarks [68, 3] and the curves that get drawn."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.b = rng.uniform(1.15, 1.35)  # half face height / half face width
        self.mouth_open = 0.0 if rng.random() < 0.45 else rng.uniform(0.03, 0.32)
        self.brow_raise = rng.uniform(-0.04, 0.1)
        eyes = 0.1 if rng.random() < 0.05 else rng.uniform(0.35, 1.0)
        self.eye_open = (eyes * rng.uniform(0.9, 1.1), eyes * rng.uniform(0.9, 1.1))
        self.gaze = rng.uniform(-0.05, 0.05, size=2)
        self.mouth_w = 0.34 * rng.uniform(0.85, 1.2)
        self.smile = rng.uniform(-0.05, 0.04)
        self.hairline = None if rng.random() < 0.1 else rng.uniform(0.0, 0.2)
        pts = np.zeros((NUM_FACE_POINTS, 3))
        pts[0:17] = self._outline(np.radians(np.linspace(-100, 100, 17)))
        pts[17:27] = self._brows()
        pts[27:36] = self._nose()
        pts[36:48] = self._eyes()
        pts[48:68] = self._mouth()
        self.points = pts

    def _outline(self, phi: np.ndarray) -> np.ndarray:
        """Face-ellipse points (z = 0: the silhouette) at angles phi from the chin; an open mouth drops the chin."""
        y = self.b * np.cos(phi)
        y = y + 0.6 * self.mouth_open * np.clip(np.cos(phi), 0, None) ** 2
        return np.column_stack([np.sin(phi), y, np.zeros_like(phi)])

    def outline_curve(self) -> np.ndarray:
        return self._outline(np.radians(np.linspace(-180, 180, 241)))

    def _brows(self) -> np.ndarray:
        u = np.linspace(0, 1, 5)
        x = 0.14 + 0.58 * u  # inner → outer
        y = -0.52 - self.brow_raise - 0.09 * np.sin(np.pi * (0.25 + 0.65 * u))
        right = np.column_stack([-x[::-1], y[::-1]])  # 17-21 run outer → inner on the image's left
        left = np.column_stack([x, y])  # 22-26 run inner → outer
        return _with_depth(np.concatenate([right, left]), 0.05)

    def _nose(self) -> np.ndarray:
        t = np.linspace(0, 1, 4)
        bridge = np.column_stack([np.zeros(4), -0.27 + 0.5 * t, _DEPTH + 0.05 + 0.3 * t])
        x = np.array([-0.19, -0.1, 0.0, 0.1, 0.19])
        nostrils = _with_depth(np.column_stack([x, 0.3 + 0.05 * np.cos(x / 0.19 * np.pi / 2)]), _NOSTRIL_BULGE)
        return np.concatenate([bridge, nostrils])

    def eye_curves(self, side: int) -> tuple[np.ndarray, np.ndarray]:
        """The upper and lower lid curves [33, 2] of one eye (side 0: subject's right, image left), t from -1 to 1."""
        cx, w = (-0.4, 0.4)[side], 0.19
        t = np.linspace(-1, 1, 33)
        openness = self.eye_open[side]
        up = -0.25 - 0.12 * openness * (1 - t**2) * (1 + 0.15 * t * (-1, 1)[side])
        low = -0.25 + 0.075 * openness * (1 - t**2)
        x = cx + w * t
        return np.column_stack([x, up]), np.column_stack([x, low])

    def _eyes(self) -> np.ndarray:
        out = []
        for side in (0, 1):
            up, low = self.eye_curves(side)
            # corners at t = -1 and 1, lid points at t = ±1/3 (curve index 16 ± 5.33 → 11 and 21)
            ring = [up[0], up[11], up[21], up[32], low[21], low[11]]
            out.append(np.asarray(ring))
        return _with_depth(np.concatenate(out), 0.02)

    def _mouth(self) -> np.ndarray:
        w, o, s = self.mouth_w, self.mouth_open, self.smile
        cy = 0.62
        upper = [(-w, s), (-0.55 * w, -0.09), (-0.2 * w, -0.125), (0, -0.1), (0.2 * w, -0.125), (0.55 * w, -0.09)]
        lower = [(w, s), (0.6 * w, o + 0.11), (0.25 * w, o + 0.15), (0, o + 0.16), (-0.25 * w, o + 0.15),
                 (-0.6 * w, o + 0.11)]
        seam = 0.02 if o > 0 else 0.0
        inner = [(-0.85 * w, s * 0.8), (-0.35 * w, -seam), (0, -seam), (0.35 * w, -seam), (0.85 * w, s * 0.8),
                 (0.35 * w, o + seam), (0, o + seam), (-0.35 * w, o + seam)]
        xy = np.array(upper + lower + inner) + np.array([0.0, cy])
        return _with_depth(xy, 0.08)

    def hair_polygon(self) -> np.ndarray | None:
        if self.hairline is None:
            return None
        phi = np.radians(np.linspace(110, 250, 40))
        outer = np.column_stack([1.06 * np.sin(phi), (self.b + 0.1) * np.cos(phi) - 0.03])
        h = self.hairline
        line = np.array([[-0.96, -0.32 * self.b], [-0.6, -0.72 - h], [0, -0.84 - h], [0.6, -0.72 - h],
                         [0.96, -0.32 * self.b]])
        return np.concatenate([outer, catmull_rom(line, samples=6)])


class _Camera:
    """Yaw and pitch (with depth), then roll, scale and shift into the image."""

    def __init__(self, yaw: float, pitch: float, roll: float, scale: float) -> None:
        self.yaw, self.pitch = math.radians(yaw), math.radians(pitch)
        r = math.radians(roll)
        self.rot = scale * np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
        self.shift = np.zeros(2)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if p.shape[-1] == 2:
            p = np.column_stack([p, _depth(p[:, 0])])
        cy, sy, cp, sp = math.cos(self.yaw), math.sin(self.yaw), math.cos(self.pitch), math.sin(self.pitch)
        x = p[:, 0] * cy + p[:, 2] * sy
        z = -p[:, 0] * sy + p[:, 2] * cy
        y = p[:, 1] * cp - z * sp
        return np.column_stack([x, y]) @ self.rot.T + self.shift


def _skin(rng: np.random.Generator) -> Color:
    t = rng.random()
    dark, light = np.array([55.0, 75.0, 110.0]), np.array([185.0, 205.0, 240.0])
    base = dark + (light - dark) * t + rng.uniform(-12, 12, size=3)
    return tuple(float(v) for v in np.clip(base, 0, 255))


def make_face(rng: np.random.Generator, difficulty: float, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one random face.

    Args:
        rng: the only source of randomness; the same generator state gives the same image.
        difficulty: 0..1, scales the pose ranges (`FACE_RANGES`), background clutter, blur, noise, lighting and
            the chance of an occluder.
        image_size: side of the square image in pixels; the face (hair top to chin) spans 40-80% of it.

    Returns:
        (image [image_size, image_size, 3] uint8 BGR, points [68, 2] float64, 0-based pixels, all inside the image).
    """
    ranges = face_ranges(difficulty)
    face = _Face(rng)
    scale = rng.uniform(0.4, 0.8) * image_size / _FACE_HEIGHT
    cam = _Camera(*(rng.uniform(-ranges[k], ranges[k]) for k in ("yaw_deg", "pitch_deg", "roll_deg")), scale)
    pts = cam(face.points)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    margin = 2.0
    low, high = margin - lo, image_size - 1 - margin - hi
    cam.shift = rng.uniform(np.minimum(low, high), np.maximum(low, high))
    points = cam(face.points)

    img = background(rng, image_size, difficulty)
    skin = _skin(rng)
    _draw_body(img, face, cam, skin, rng)
    fill(img, cam(face.outline_curve()), skin)
    stroke(img, cam(face.outline_curve()), shade(skin, 0.55), max(1.0, 0.02 * scale))
    hair = face.hair_polygon()
    if hair is not None:
        fill(img, cam(hair), random_color(rng, 10, 90) if rng.random() < 0.8 else random_color(rng, 120, 230))
    _draw_features(img, face, cam, skin, scale, rng)
    if rng.random() < ranges["occlusion_p"]:
        occlude(img, rng, points.mean(axis=0), 2.0 * scale)
    return finish(img, rng, difficulty), points


def _draw_body(img: np.ndarray, face: _Face, cam: _Camera, skin: Color, rng: np.random.Generator) -> None:
    b = face.b
    phi = np.linspace(0, 2 * np.pi, 60)
    body = np.column_stack([2.1 * np.cos(phi), b + 1.9 + 1.0 * np.sin(phi), np.zeros_like(phi)])
    neck = np.array([[-0.42, 0.5 * b, 0], [0.42, 0.5 * b, 0], [0.5, b + 1.2, 0], [-0.5, b + 1.2, 0]])
    fill(img, cam(body), random_color(rng, 20, 236))
    fill(img, cam(neck), shade(skin, 0.8))


def _draw_features(img: np.ndarray, face: _Face, cam: _Camera, skin: Color, scale: float,
                   rng: np.random.Generator) -> None:
    p = face.points
    ink = shade(skin, 0.35)
    brow = random_color(rng, 10, 70)
    for a, b in ((17, 22), (22, 27)):
        stroke(img, cam(catmull_rom(p[a:b], samples=6)), brow, 0.07 * scale)

    white = tuple(float(v) for v in rng.integers(215, 256) - rng.integers(0, 15, size=3))
    iris = random_color(rng, 20, 150)
    for side in (0, 1):
        up, low = face.eye_curves(side)
        ring = np.concatenate([up, low[::-1][1:-1]])
        poly = cam(_with_depth(ring, 0.02))
        mask = np.zeros(img.shape[:2], np.uint8)
        fill(mask, poly, (255, 255, 255))
        eye = img.copy()
        fill(eye, poly, white)
        centre = np.array([(-0.4, 0.4)[side] + face.gaze[0], -0.25 + face.gaze[1] * face.eye_open[side]])
        c3 = _with_depth(centre[None], 0.02)
        disc(eye, cam(c3)[0], 0.085 * scale, iris)
        disc(eye, cam(c3)[0], 0.035 * scale, (15.0, 15.0, 15.0))
        alpha = (mask.astype(np.float32) / 255.0)[..., None]
        img[:] = (eye * alpha + img * (1 - alpha) + 0.5).astype(np.uint8)
        stroke(img, poly, ink, max(1.0, 0.02 * scale), closed=True)
        stroke(img, cam(_with_depth(up, 0.02)), shade(ink, 0.6), max(1.0, 0.035 * scale))

    nose_ink = shade(skin, 0.62)
    bridge = np.concatenate([p[27:31], p[30:31] + [0, 0.02, 0]])
    stroke(img, cam(bridge), nose_ink, max(1.0, 0.04 * scale))
    for side in (-1, 1):
        wing = np.array([[0.1 * side, 0.1], [0.17 * side, 0.2], [0.19 * side, 0.29]])
        stroke(img, cam(_with_depth(wing, _NOSTRIL_BULGE)), nose_ink, max(1.0, 0.02 * scale))
        hole = _with_depth(np.array([[0.085 * side, 0.285]]), _NOSTRIL_BULGE)
        disc(img, cam(hole)[0], 0.035 * scale, shade(skin, 0.3), 0.6, 0)
    stroke(img, cam(catmull_rom(p[31:36], samples=6)), nose_ink, max(1.0, 0.025 * scale))

    lip = tuple(float(v) for v in np.clip(np.array(skin) * [0.6, 0.55, 0.85] + [0, 0, 20], 0, 255))
    outer = cam(catmull_rom(p[48:60], closed=True, samples=6))
    inner = cam(catmull_rom(p[60:68], closed=True, samples=6))
    fill(img, outer, lip)
    if face.mouth_open > 0:
        fill(img, inner, (25.0, 20.0, 40.0))
    stroke(img, outer, shade(lip, 0.6), max(1.0, 0.02 * scale), closed=True)
    stroke(img, inner, shade(lip, 0.4), max(1.0, 0.025 * scale), closed=True)

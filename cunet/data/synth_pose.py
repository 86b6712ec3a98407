"""Synthetic people with the 16 MPII joints on a drawn, articulated limb figure, so a pose model can learn them.

A figure is a torso polygon, thick capsule limbs, a neck and a head ellipse. Every joint is a drawn feature: a darker
disc where two limb segments meet (knees, elbows, hips, shoulders), the end of a limb (ankles, wrists, with a hand or
foot beyond), the torso's top and bottom edge centres (thorax, pelvis) and the head ellipse's bottom and top
(upper neck, head top). Subject-right limbs are drawn darker and subject-left limbs lighter than the clothing colour,
so a horizontal flip is visible and learnable. Limbs are drawn in depth order (the far arm behind the torso, the near
arm in front), which gives self-occlusion.

MPII joint order (0-based): 0 r-ankle, 1 r-knee, 2 r-hip, 3 l-hip, 4 l-knee, 5 l-ankle, 6 pelvis, 7 thorax,
8 upper-neck, 9 head-top, 10 r-wrist, 11 r-elbow, 12 r-shoulder, 13 l-shoulder, 14 l-elbow, 15 l-wrist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cunet.data.synth_draw import Color, background, capsule, disc, fill, finish, occlude, random_color, shade, stroke

__all__ = ["NUM_POSE_JOINTS", "POSE_RANGES", "pose_ranges", "Person", "make_pose"]

NUM_POSE_JOINTS = 16

#: What `difficulty` (0..1) scales for poses; each entry is (value at 0, value at 1), read by `pose_ranges`.
POSE_RANGES = {
    "rotation_deg": (10.0, 40.0),  # whole-figure rotation, uniform in ±value
    "lean_deg": (8.0, 25.0),  # torso lean
    "truncation_p": (0.05, 0.3),  # probability that the figure may run off the image border
    "unannotated_p": (0.01, 0.05),  # per-joint probability of being left unannotated although drawn
    "occlusion_p": (0.05, 0.35),  # probability of an opaque bar or blob over the figure
    "second_person_p": (0.05, 0.2),
}

# Segment lengths as fractions of the standing height (head top to ankles ≈ 1).
_TORSO, _NECK, _HEAD = 0.30, 0.06, 0.13
_SHOULDER, _HIP = 0.11, 0.07
_UPPER_ARM, _FOREARM, _THIGH, _SHIN = 0.17, 0.15, 0.25, 0.24
_LIMB_R = 0.028  # limb capsule radius


def pose_ranges(difficulty: float) -> dict[str, float]:
    """The pose parameter ranges at `difficulty` (linear between the ends of `POSE_RANGES`)."""
    return {k: lo + (hi - lo) * difficulty for k, (lo, hi) in POSE_RANGES.items()}


@dataclass(frozen=True)
class Person:
    """One annotated figure, 0-based pixels.

    Attributes:
        joints: [16, 2] joint positions; NaN where the joint is unannotated.
        visible: [16] bool, True where annotated (MPII's `joints_vis`: annotated, not necessarily unoccluded).
        center: (x, y) centre of the figure's box.
        scale: the box's larger side / 200 (MPII's person scale).
        headbox: (x1, y1, x2, y2) around the head ellipse.
    """

    joints: np.ndarray
    visible: np.ndarray
    center: tuple[float, float]
    scale: float
    headbox: tuple[float, float, float, float]


def _dir(angle_deg: float) -> np.ndarray:
    """Unit vector at `angle_deg` from straight down, turning toward +x (image right)."""
    a = math.radians(angle_deg)
    return np.array([math.sin(a), math.cos(a)])


class _Figure:
    """A random articulated figure in body units (standing height ≈ 1, pelvis at the origin, y down)."""

    def __init__(self, rng: np.random.Generator, lean: float) -> None:
        j = np.zeros((NUM_POSE_JOINTS, 2))
        t = rng.uniform(-lean, lean)
        up = -_dir(t)
        side = np.array([-up[1], up[0]])  # toward image left→right across the body when facing the camera
        if side[0] < 0:
            side = -side
        j[6] = 0.0
        j[7] = up * _TORSO
        j[8] = j[7] + up * _NECK
        self.head_angle = t + 180 + rng.uniform(-20, 20)
        j[9] = j[8] + _dir(self.head_angle) * _HEAD
        # Frontal view: the subject's right is the image's left.
        j[12], j[13] = j[7] - side * _SHOULDER, j[7] + side * _SHOULDER
        j[2], j[3] = -side * _HIP, side * _HIP
        for s, (sh, el, wr) in ((-1, (12, 11, 10)), (1, (13, 14, 15))):
            a = t + s * rng.uniform(-20, 170)
            j[el] = j[sh] + _dir(a) * _UPPER_ARM * rng.uniform(0.7, 1.0)
            j[wr] = j[el] + _dir(a + rng.choice([-1, 1]) * rng.uniform(0, 150)) * _FOREARM * rng.uniform(0.7, 1.0)
        for s, (hp, kn, an) in ((-1, (2, 1, 0)), (1, (3, 4, 5))):
            a = t + s * (rng.uniform(-15, 100) if rng.random() < 0.25 else rng.uniform(-10, 35))
            j[kn] = j[hp] + _dir(a) * _THIGH * rng.uniform(0.7, 1.0)
            j[an] = j[kn] + _dir(a + rng.choice([-1, 1]) * rng.uniform(0, 110)) * _SHIN * rng.uniform(0.7, 1.0)
        self.joints = j
        self.right_far = bool(rng.random() < 0.5)

    def head(self) -> tuple[np.ndarray, float, float, float]:
        """Head ellipse: centre, semi-axis along the neck→top line, across it, and its angle (degrees)."""
        a, b = self.joints[8], self.joints[9]
        half = float(np.linalg.norm(b - a)) / 2
        ang = math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))
        return (a + b) / 2, half, 0.72 * half, ang


def _place(fig: _Figure, extent_px: float, rotation: float, size: int, rng: np.random.Generator,
           truncate: bool) -> tuple[np.ndarray, float]:
    """Similarity transform body units → pixels, as (2x3 affine, pixels per unit); the joints' box spans extent_px."""
    r = math.radians(rotation)
    extent = fig.joints.max(axis=0) - fig.joints.min(axis=0)
    height_px = extent_px / max(float(max(extent)), 0.5)
    m = height_px * np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    pts = fig.joints @ m.T
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    if truncate:  # up to 30% of the figure may leave the image on any side
        slack = 0.3 * (hi - lo)
        low, high = -lo - slack, size - 1 - hi + slack
    else:
        margin = 0.02 * size
        low, high = margin - lo, size - 1 - margin - hi
    shift = rng.uniform(np.minimum(low, high), np.maximum(low, high))
    return np.column_stack([m, shift]), height_px


def _xf(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.asarray(p, dtype=np.float64) @ m[:, :2].T + m[:, 2]


def _draw_figure(img: np.ndarray, fig: _Figure, m: np.ndarray, unit: float, rng: np.random.Generator) -> None:
    j = _xf(m, fig.joints)
    r = _LIMB_R * unit
    shirt, pants, skin = random_color(rng, 30, 226), random_color(rng, 30, 226), _skin(rng)

    def side_shade(color: Color, right: bool) -> Color:
        return shade(color, 0.5) if right else tuple(c + (255 - c) * 0.5 for c in color)

    def limb(chain: tuple[int, int, int], color: Color, right: bool, tip: Color, tip_r: float) -> None:
        c = side_shade(color, right)
        a, b, e = j[chain[0]], j[chain[1]], j[chain[2]]
        d = e - b
        disc(img, e + d / max(float(np.linalg.norm(d)), 1e-6) * tip_r, tip_r, tip)
        capsule(img, a, b, r, c)
        capsule(img, b, e, r * 0.85, c)
        for k, rad in ((a, r * 0.75), (b, r * 0.7)):
            disc(img, k, rad, shade(c, 0.55))

    arms = {True: ((12, 11, 10), shirt), False: ((13, 14, 15), shirt)}
    legs = {True: ((2, 1, 0), pants), False: ((3, 4, 5), pants)}
    far, near = fig.right_far, not fig.right_far
    limb(arms[far][0], arms[far][1], far, skin, 0.9 * r)
    torso = np.stack([j[12], j[13], j[3], j[2]])
    fill(img, torso, shirt)
    stroke(img, np.stack([j[12], j[13]]), shade(shirt, 0.6), max(1.0, 0.25 * r))
    stroke(img, np.stack([j[2], j[3]]), shade(pants, 0.6), max(1.0, 0.4 * r))
    for right in (far, near):
        limb(legs[right][0], legs[right][1], right, (30.0, 30.0, 30.0), 0.8 * r)
    capsule(img, j[7], j[8], 0.8 * r, shade(skin, 0.85))
    centre, along, across, ang = fig.head()
    centre = _xf(m, centre[None])[0]
    ang += math.degrees(math.atan2(m[1, 0], m[0, 0]))
    disc(img, centre, along * unit, skin, across / along, ang)
    hair = random_color(rng, 10, 90)
    disc(img, centre + (j[9] - centre) * 0.6, along * unit * 0.42, hair, across / along * 1.5, ang)
    stroke(img, _ellipse(centre, along * unit, across * unit, ang), shade(skin, 0.5), max(1.0, 0.2 * r), closed=True)
    limb(arms[near][0], arms[near][1], near, skin, 0.9 * r)
    for k in (6, 7):
        disc(img, j[k], 0.45 * r, shade(shirt if k == 7 else pants, 0.45))


def _ellipse(centre: np.ndarray, a: float, b: float, angle_deg: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    x, y = a * np.cos(t), b * np.sin(t)
    return np.column_stack([centre[0] + c * x - s * y, centre[1] + s * x + c * y])


def _skin(rng: np.random.Generator) -> Color:
    t = rng.random()
    return tuple(float(60 + 130 * t + d) for d in (0, 20, 45))


def _annotate(fig: _Figure, m: np.ndarray, unit: float, size: int, rng: np.random.Generator,
              unannotated_p: float) -> Person:
    joints = _xf(m, fig.joints)
    inside = ((joints >= 0) & (joints <= size - 1)).all(axis=1)
    visible = inside & (rng.random(NUM_POSE_JOINTS) >= unannotated_p)
    centre, along, across, ang = fig.head()
    c = _xf(m, centre[None])[0]
    a = math.radians(ang + math.degrees(math.atan2(m[1, 0], m[0, 0])))
    ex = math.hypot(along * math.cos(a), across * math.sin(a)) * unit
    ey = math.hypot(along * math.sin(a), across * math.cos(a)) * unit
    head = np.array([c[0] - ex, c[1] - ey, c[0] + ex, c[1] + ey])
    all_pts = np.concatenate([joints, head.reshape(2, 2)])
    lo, hi = all_pts.min(axis=0), all_pts.max(axis=0)
    return Person(
        joints=np.where(visible[:, None], joints, np.nan),
        visible=visible,
        center=(float((lo[0] + hi[0]) / 2), float((lo[1] + hi[1]) / 2)),
        scale=float(max(hi - lo)) / 200.0,
        headbox=tuple(float(v) for v in head),
    )


def make_pose(rng: np.random.Generator, difficulty: float, image_size: int) -> tuple[np.ndarray, list[Person]]:
    """Draw one random image of one (sometimes two) figures.

    Args:
        rng: the only source of randomness; the same generator state gives the same image.
        difficulty: 0..1, scales `POSE_RANGES` (rotation, lean, truncation, unannotated joints, occluders, a second
            person), background clutter, blur, noise and lighting.
        image_size: side of the square image; the main figure's joint box spans 50-90% of it.

    Returns:
        (image [image_size, image_size, 3] uint8 BGR, the annotated figures, main figure first). Joints outside
        the image, and a few random ones, are unannotated (NaN, `visible` False).
    """
    ranges = pose_ranges(difficulty)
    img = background(rng, image_size, difficulty)
    count = 2 if rng.random() < ranges["second_person_p"] else 1
    placed = []
    for i in range(count):
        fig = _Figure(rng, ranges["lean_deg"])
        height = rng.uniform(0.5, 0.9) * image_size * (1.0 if i == 0 else rng.uniform(0.5, 0.8))
        rotation = rng.uniform(-ranges["rotation_deg"], ranges["rotation_deg"])
        truncate = bool(rng.random() < ranges["truncation_p"])
        m, unit = _place(fig, height, rotation, image_size, rng, truncate)
        placed.append((fig, m, unit))
    for fig, m, unit in reversed(placed):  # the main figure is drawn last, in front
        _draw_figure(img, fig, m, unit, rng)
    people = [_annotate(fig, m, unit, image_size, rng, ranges["unannotated_p"]) for fig, m, unit in placed]
    if rng.random() < ranges["occlusion_p"]:
        fig, m, unit = placed[0]
        occlude(img, rng, _xf(m, fig.joints).mean(axis=0), 0.4 * unit)
    return finish(img, rng, difficulty), people

"""Training-time augmentation: random scale, rotation, horizontal flip, translation and colour gain of one crop.

The defaults are the original CU-Net training code's: scale 2**clip(N(0, 0.25), -0.5, 0.5), rotation
clip(N(0, 30°), -60°, 60°) applied with p = 0.4, flip with p = 0.5 and the landmark spec's flip pairs, per-channel
gain U(0.6, 1.4). Sampling (`sample_augment`) is separate from applying (`augment_sample`) so that a sample's
augmentation is a small value derived from a seeded generator, which makes training exactly reproducible.

All geometry goes through `cunet.data.preprocess.crop_affine`: the returned affine maps original-image pixels to crop
pixels, flip included, so `invert_affine` maps predictions on the augmented crop back to the original image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cunet.data.preprocess import Box, apply_affine, crop_affine, warp

__all__ = ["AugmentConfig", "Augment", "IDENTITY", "sample_augment", "augment_sample"]


@dataclass(frozen=True)
class AugmentConfig:
    """Distributions of the random augmentation (defaults: the original CU-Net training).

    Attributes:
        scale_sigma: std of the log2 scale factor; the crop box side is multiplied by 2**e (e > 0 zooms out).
        scale_limit: the log2 scale is clipped to ±scale_limit.
        rotation_sigma: std of the rotation in degrees (counter-clockwise).
        rotation_limit: the rotation is clipped to ±rotation_limit degrees.
        rotation_prob: probability that a sample is rotated at all.
        flip_prob: probability of a horizontal flip (needs the landmark spec's flip permutation).
        gain_low: lower bound of the per-channel colour gain (uniform).
        gain_high: upper bound of the per-channel colour gain.
        translate: the box centre moves by U(-t, t) × box side in x and y (0: the original had no translation).
    """

    scale_sigma: float = 0.25
    scale_limit: float = 0.5
    rotation_sigma: float = 30.0
    rotation_limit: float = 60.0
    rotation_prob: float = 0.4
    flip_prob: float = 0.5
    gain_low: float = 0.6
    gain_high: float = 1.4
    translate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("scale_sigma", "scale_limit", "rotation_sigma", "rotation_limit", "translate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"AugmentConfig.{name} must be a finite number >= 0, got {value}")
        for name in ("rotation_prob", "flip_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be a probability in [0, 1], got {value}")
        if not 0.0 < self.gain_low <= self.gain_high:
            raise ValueError(f"AugmentConfig needs 0 < gain_low <= gain_high, got {self.gain_low}, {self.gain_high}")


@dataclass(frozen=True)
class Augment:
    """One sampled augmentation.

    Attributes:
        scale: the crop box side is multiplied by this (> 1 zooms out).
        rotation: degrees, counter-clockwise in the image.
        flip: mirror the crop horizontally (and swap left/right landmarks).
        gain: per-channel multiplicative gain in the image's channel order (BGR for OpenCV images).
        shift: (dx, dy) move of the box centre as a fraction of the box side.
    """

    scale: float = 1.0
    rotation: float = 0.0
    flip: bool = False
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    shift: tuple[float, float] = (0.0, 0.0)


#: No augmentation: the plain crop, as used for evaluation.
IDENTITY = Augment()


def sample_augment(rng: np.random.Generator, cfg: AugmentConfig) -> Augment:
    """Draw one augmentation from `cfg`.

    The draws happen in a fixed order and always the same number of them, so a generator seeded per sample gives
    the same augmentation whatever the configuration's probabilities are.
    """
    e = float(np.clip(rng.normal(0.0, cfg.scale_sigma), -cfg.scale_limit, cfg.scale_limit))
    angle = float(np.clip(rng.normal(0.0, cfg.rotation_sigma), -cfg.rotation_limit, cfg.rotation_limit))
    rotate = bool(rng.random() < cfg.rotation_prob)
    flip = bool(rng.random() < cfg.flip_prob)
    gain = rng.uniform(cfg.gain_low, cfg.gain_high, size=3)
    shift = rng.uniform(-cfg.translate, cfg.translate, size=2) if cfg.translate > 0 else np.zeros(2)
    return Augment(
        scale=2.0**e,
        rotation=angle if rotate else 0.0,
        flip=flip,
        gain=(float(gain[0]), float(gain[1]), float(gain[2])),
        shift=(float(shift[0]), float(shift[1])),
    )


def augment_sample(
    image: np.ndarray,
    points: np.ndarray,
    visible: np.ndarray,
    box: Box,
    aug: Augment,
    out_size: int,
    flip_perm: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Crop `image` around `box` with augmentation `aug`.

    Args:
        image: [H, W, 3] uint8 original image.
        points: [K, 2] 0-based original-image points, NaN where not annotated.
        visible: [K] bool, True where annotated.
        box: the crop box before augmentation.
        aug: the augmentation (`IDENTITY` for a plain crop).
        out_size: S, the crop side in pixels.
        flip_perm: [K] index array with `points[flip_perm]` swapping left and right; required when `aug.flip`.

    Returns:
        crop: [S, S, 3] uint8.
        points: [K, 2] float64 crop points (permuted by `flip_perm` when flipped), NaN kept.
        visible: [K] bool (permuted like the points).
        affine: [2, 3] float64 mapping original-image pixels to crop pixels, flip included.
    """
    side = box.size * aug.scale
    moved = Box(box.cx + aug.shift[0] * box.size, box.cy + aug.shift[1] * box.size, side)
    affine = crop_affine(moved, out_size, aug.rotation, aug.flip)
    crop = warp(image, affine, out_size)
    if aug.gain != (1.0, 1.0, 1.0):
        gained = crop.astype(np.float32) * np.asarray(aug.gain, dtype=np.float32)
        crop = np.clip(np.rint(gained), 0, 255).astype(np.uint8)
    pts = apply_affine(points, affine)
    vis = np.asarray(visible, dtype=bool)
    if aug.flip:
        if flip_perm is None:
            raise ValueError("a flipped augmentation needs flip_perm (the landmark spec's flip permutation)")
        perm = np.asarray(flip_perm)
        pts, vis = pts[perm], vis[perm]
    return crop, pts, vis.copy(), affine

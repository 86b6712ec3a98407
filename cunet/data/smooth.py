"""Temporal smoothing of landmarks on video: the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012).

A One-Euro filter is a first-order low-pass filter whose cutoff frequency rises with the signal's speed: when a
face holds still the cutoff is `min_cutoff` (strong smoothing, no jitter); when it moves the cutoff grows by
`beta` x speed (little lag). Each coordinate of each landmark has its own filter state, as in the paper and in
MediaPipe's landmark smoothing; the arrays here just hold all of them at once ([K, 2] per frame).

Units. Time is in seconds (frame index / fps), so the cutoffs are in Hz whatever the frame rate. The speed that
opens the cutoff is measured in *object sizes per second* — the coordinate speed in pixels per second divided by
the size of the face or person box (`scale`) — so one `beta` serves a 60-px face and a 600-px one alike (MediaPipe
normalises the same way). The speed itself is low-pass filtered at `D_CUTOFF` = 1 Hz, the value the paper
recommends and keeps fixed.

Defaults (`DEFAULT_MIN_CUTOFF`, `DEFAULT_BETA`) come from a sweep on synthetic 300-VW sequences with a trained
cunet-tiny (docs/video.md has the table): they lowered jitter on every set measured, at a small NME cost. A
filter never sees a still image: `cunet predict` on photos does not smooth, whatever `--smooth` says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

__all__ = ["SmoothMethod", "SmoothConfig", "OneEuroFilter", "D_CUTOFF", "DEFAULT_MIN_CUTOFF", "DEFAULT_BETA",
           "make_filter"]

#: Cutoff (Hz) of the speed estimate; fixed, as the paper recommends (1 Hz).
D_CUTOFF = 1.0
#: Cutoff (Hz) when still, and the speed coefficient (per object size per second), from a sweep (docs/video.md) with a
#: trained cunet-tiny on three sets of 3 synthetic 300-VW sequences (25 fps, moves and pauses): this pair lowered
#: jitter on all three (-20 % on the noisiest, -10 % and -1.5 % on the two steadier ones) for at most 0.15 NME
#: points. Lower cutoffs remove more noise from a noisy model but lag behind a moving face, and a lag is a velocity
#: error too: (2 Hz, 10) cut the noisy set's jitter by a third but raised a steady set's by 30 %.
DEFAULT_MIN_CUTOFF = 10.0
DEFAULT_BETA = 20.0


class SmoothMethod(str, Enum):
    """`--smooth` choices."""

    NONE = "none"
    ONE_EURO = "one-euro"


@dataclass(frozen=True)
class SmoothConfig:
    """How landmarks are smoothed over time.

    Attributes:
        method: "none" or "one-euro".
        min_cutoff: One-Euro cutoff frequency at zero speed, Hz (> 0).
        beta: One-Euro speed coefficient, per (object size / s) (>= 0).
    """

    method: SmoothMethod = SmoothMethod.NONE
    min_cutoff: float = DEFAULT_MIN_CUTOFF
    beta: float = DEFAULT_BETA

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", SmoothMethod(self.method))
        if not (math.isfinite(self.min_cutoff) and self.min_cutoff > 0):
            raise ValueError(f"min_cutoff must be a positive number of Hz, got {self.min_cutoff}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be a non-negative number, got {self.beta}")

    def to_dict(self) -> dict[str, object]:
        """The JSON form reported by predict/evaluate ("method", "min_cutoff", "beta", "d_cutoff")."""
        if self.method is SmoothMethod.NONE:
            return {"method": self.method.value}
        return {"method": self.method.value, "min_cutoff": self.min_cutoff, "beta": self.beta, "d_cutoff": D_CUTOFF}


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """The exponential-smoothing factor of a first-order low-pass at `cutoff` Hz sampled every `dt` s."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """A One-Euro filter over an array of coordinates (each element filtered on its own).

    Call it once per frame, in time order: `smoothed = f(points, t, scale)`. The first call returns its input
    unchanged. A frame whose points are not all finite (a failed prediction) passes through as it is and leaves
    the state alone. `reset()` forgets the past (after a cut, when the tracker re-detects the face).
    """

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA,
                 d_cutoff: float = D_CUTOFF) -> None:
        SmoothConfig(SmoothMethod.ONE_EURO, min_cutoff, beta)  # the same validation as the config
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget every earlier sample: the next call returns its input."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filter one sample.

        Args:
            x: the coordinates at time `t`, any shape (e.g. [K, 2] pixels); the same shape every call.
            t: time in seconds, strictly increasing from call to call.
            scale: the object's size in the units of `x` (e.g. the landmark box side in pixels); speeds are
                divided by it before `beta` applies.

        Returns:
            The smoothed coordinates, a new float64 array of the shape of `x`.

        Raises:
            ValueError: `t` not after the previous call's, a non-positive `scale`, or a change of shape.
        """
        x = np.asarray(x, dtype=np.float64)
        if not np.isfinite(x).all():
            return x.copy()
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale}")
        if self._x is None or self._t is None or self._dx is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        if x.shape != self._x.shape:
            raise ValueError(f"shape changed from {self._x.shape} to {x.shape}")
        dt = float(t) - self._t
        if not dt > 0:
            raise ValueError(f"time must increase: {t} after {self._t}")
        dx = (x - self._x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1.0 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx) / scale
        a = _alpha(cutoff, dt)
        self._x = a * x + (1.0 - a) * self._x
        self._t = float(t)
        return self._x.copy()


def make_filter(config: SmoothConfig) -> OneEuroFilter | None:
    """The filter a config asks for, or None for "none"."""
    if config.method is SmoothMethod.NONE:
        return None
    return OneEuroFilter(config.min_cutoff, config.beta)

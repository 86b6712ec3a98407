"""Synthetic face videos in the 300-VW layout, with exact per-frame ground truth (`cunet data synth --video N`).

Each sequence renders one synthetic face (`cunet.data.synth_face.make_face`) on a square canvas and moves it
smoothly: every frame is the canvas warped by a similarity transform (translation, in-plane rotation, scale) about
the face's centre, and the frame's landmarks are the canvas landmarks through the same transform, so the ground
truth is exact to float precision (`cv2.warpAffine` and cunet share the pixel-centres-on-integers convention).
The motion pauses: about a third of each 2.5-4 s cycle the face holds still (its clock stops smoothly), as a
person does between moves; the rest of the time it moves at up to a few pixels per frame. The canvas is drawn smaller than the frame, over a second cluttered backdrop (like a photograph held in front of a
scene: no part of the frame is left empty or mirrored), and the face's centre moves around the middle of the
frame; each motion parameter follows a sum of two sinusoids of random frequency
(0.1-0.6 Hz) and phase, which keeps the face inside the frame and its speed continuous; fresh sensor noise is added to every frame, as a camera would.
Everything is a pure function of (seed, video number, the arguments): the same seed gives the same frames.

The codec is FFV1 in an `.avi` (`vid.avi`, as 300-VW names it): lossless, so decoded frames equal the rendered
ones bit for bit and the ground truth stays exact (MJPG or mp4v, the alternatives OpenCV's FFmpeg writes here,
change pixels by up to the full 0-255 range on noise-like content). The layout: `OUT/001/vid.avi` and
`OUT/001/annot/000001.pts` ... (1-based frame numbers, 6 digits, 1-based `.pts` coordinates).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from cunet.data.formats import write_pts
from cunet.data.synth_draw import background
from cunet.data.synth_face import make_face
from cunet.data.video import annot_name
from cunet.errors import CunetError
from cunet.io import Output, WritePolicy, claim_folder, make_dirs, write_bytes, writing
from cunet.tempdirs import temp_dir

__all__ = ["synthesize_videos", "motion_affines", "VIDEO_FOURCC", "VIDEO_NAME"]

#: Lossless: decoded frames equal the rendered ones (see the module docstring).
VIDEO_FOURCC = "FFV1"
VIDEO_NAME = "vid.avi"
# The per-video seed's subset code (synth.py uses 0-4 for the still-image subsets).
_SEED_CODE = 5
_DECIMALS = 3
#: Motion amplitudes: translation as a fraction of the frame side, rotation in degrees, log-scale.
_SHIFT, _ROLL_DEG, _LOG_SCALE = 0.12, 15.0, 0.15
#: The face is rendered this much smaller than `make_face` draws it, leaving room to move.
_BASE_SCALE = 0.75
_MARGIN = 2.0


def _sinusoids(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """A smooth signal of peak |value| <= amplitude: two sinusoids of random frequency and phase."""
    out = np.zeros_like(t)
    weights = rng.dirichlet([2.0, 2.0])
    for w in weights:
        freq, phase = rng.uniform(0.1, 0.6), rng.uniform(0, 2 * math.pi)
        out += w * np.sin(2 * math.pi * freq * t + phase)
    return amplitude * out


def _moving_time(rng: np.random.Generator, frames: int, fps: float) -> np.ndarray:
    """[frames] the motion's clock in seconds: it stops during still phases (about a third of each 2.5-4 s cycle),
    as a person holds still between moves, and runs at real time in between, with smooth starts and stops."""
    t = np.arange(frames) / fps
    activity = np.clip(2.0 * np.sin(2 * math.pi * rng.uniform(0.25, 0.4) * t + rng.uniform(0, 2 * math.pi)) + 0.5,
                       0.0, 1.0)
    return np.concatenate([[0.0], np.cumsum(activity[1:]) / fps])


def motion_affines(rng: np.random.Generator, frames: int, fps: float, size: int, centre: np.ndarray,
                   amount: float = 1.0) -> np.ndarray:
    """The per-frame similarity transforms of one sequence.

    Args:
        rng: the only source of randomness.
        frames: number of frames; fps: frames per second (the motion is defined in seconds).
        size: frame side in pixels; centre: [2] the face's centre on the canvas (the pivot).
        amount: scales every amplitude (the caller lowers it when the face would leave the frame).

    Returns:
        [frames, 2, 3] canvas → frame affines: scale and rotate about `centre`, which moves around the frame's
        middle.
    """
    t = _moving_time(rng, frames, fps)
    dx, dy = (_sinusoids(rng, t, amount * _SHIFT * size) for _ in range(2))
    roll = np.radians(_sinusoids(rng, t, amount * _ROLL_DEG))
    scale = _BASE_SCALE * np.exp(_sinusoids(rng, t, amount * _LOG_SCALE))
    cos, sin = scale * np.cos(roll), scale * np.sin(roll)
    m = np.zeros((frames, 2, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    middle = (size - 1) / 2.0
    target = np.stack([middle + dx, middle + dy], axis=1)
    m[:, :, 2] = target - np.einsum("fij,j->fi", m[:, :, :2], centre)
    return m


def _sequence(rng: np.random.Generator, frames: int, fps: float, size: int,
              difficulty: float) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(canvas BGR image, [frames, 68, 2] per-frame points, the frames' [2, 3] canvas → frame affines)."""
    canvas, points = make_face(rng, difficulty, size)
    centre = points.mean(axis=0)
    amount = 1.0
    for _ in range(6):  # halve the motion until every landmark of every frame stays inside the frame
        state = rng.bit_generator.state
        affines = motion_affines(rng, frames, fps, size, centre, amount)
        moved = np.einsum("fij,kj->fki", affines[:, :, :2], points) + affines[:, None, :, 2]
        if moved.min() >= _MARGIN and moved.max() <= size - 1 - _MARGIN:
            return canvas, moved, list(affines)
        rng.bit_generator.state = state
        amount *= 0.5
    affines = motion_affines(rng, frames, fps, size, centre, 0.0)
    moved = np.einsum("fij,kj->fki", affines[:, :, :2], points) + affines[:, None, :, 2]
    return canvas, moved, list(affines)


def synthesize_videos(out: str | os.PathLike, n: int, seed: int = 0, frames: int = 75, fps: float = 25.0,
                      image_size: int = 256, difficulty: float = 0.3, overwrite: bool = False) -> dict[str, Any]:
    """Write `n` synthetic face sequences in the 300-VW layout (module docstring).

    Args:
        out: destination folder (empty, or holding an earlier `data synth` run's files with `overwrite`).
        n: sequences (folders 001, 002, ...).
        seed: the same seed gives the same frames and points.
        frames: frames per sequence (75 at 25 fps: 3 s).
        fps: the frame rate written into each video (and the clock of the motion).
        image_size: frame side in pixels (at least 64).
        difficulty: as for still faces (pose range, clutter, noise, occluders), 0..1.
        overwrite: see `cunet.data.synth.synthesize`.

    Returns:
        {"task": "face", "layout": "300-VW", "out", "seed", "videos", "frames", "fps", "image_size", "codec"}.

    Raises:
        CunetError: invalid arguments, an unusable `out`, or an OpenCV without the FFV1 encoder.
    """
    if n < 1 or frames < 2:
        raise CunetError(f"need at least 1 video of at least 2 frames, got {n} video(s) of {frames} frame(s)")
    if image_size < 64:
        raise CunetError(f"image_size must be at least 64 pixels, got {image_size}")
    if not (0 < fps <= 240):
        raise CunetError(f"fps must be in (0, 240], got {fps}")
    if not (0.0 <= difficulty <= 1.0):
        raise CunetError(f"difficulty must be in [0, 1], got {difficulty}")
    out = Path(out)
    with writing(WritePolicy([Output(out, "cunet data synth", "--out", folder=True)]), default=True):
        claim_folder(out, overwrite)
        make_dirs(out)
        for v in range(n):
            _write_video(out, v, seed, frames, fps, image_size, difficulty)
    return {"task": "face", "layout": "300-VW", "out": str(out), "seed": seed, "videos": n, "frames": frames,
            "fps": fps, "image_size": image_size, "codec": f"{VIDEO_FOURCC} (lossless)"}


def _write_video(out: Path, v: int, seed: int, frames: int, fps: float, size: int, difficulty: float) -> None:
    import cv2

    rng = np.random.default_rng([seed, _SEED_CODE, v])
    canvas, points, affines = _sequence(rng, frames, fps, size, difficulty)
    backdrop = background(rng, size, difficulty)
    noise = 1.0 + 4.0 * difficulty  # grey levels: a fresh draw per frame, like a sensor's
    folder = out / f"{v + 1:03d}"
    with temp_dir("synth-video") as tmp:
        path = Path(tmp) / VIDEO_NAME
        writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*VIDEO_FOURCC), fps, (size, size))
        if not writer.isOpened():
            raise CunetError(f"this OpenCV cannot write {VIDEO_FOURCC} video (its FFmpeg lacks the encoder)")
        try:
            for m in affines:
                frame = cv2.warpAffine(canvas, m, (size, size), dst=backdrop.copy(), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_TRANSPARENT)
                frame = np.clip(frame + rng.normal(0.0, noise, frame.shape), 0, 255).astype(np.uint8)
                writer.write(frame)
        finally:
            writer.release()
        write_bytes(folder / VIDEO_NAME, path.read_bytes())
    for i, p in enumerate(points):
        write_pts(folder / "annot" / annot_name(i), np.round(p, _DECIMALS))

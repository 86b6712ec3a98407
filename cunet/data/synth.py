"""Built-in synthetic datasets in the real on-disk formats, so newcomers and CI can train and evaluate with no download.

`synthesize` writes a learnable dataset: every landmark sits on a drawn image feature (see `cunet.data.synth_face`
and `cunet.data.synth_pose` for what is drawn). Files are a pure function of (task, n, seed, difficulty,
image_size): the same arguments give byte-identical files, because each image has its own generator seeded from
(seed, task, subset, index).

Layouts (the ones `cunet.data` reads for real data):
- faces, like 300-W: `out/train/NNNN.png` + `NNNN.pts`, and the test split as `out/test/common/` (at `difficulty`)
  and `out/test/challenging/` (at difficulty + 0.4, capped at 1; about a fifth of the test images, as in 300-W's
  554 common / 135 challenging).
- poses, like the MPII JSON of common PyTorch code: images `out/NNNNNN.png` with `out/train.json` and
  `out/valid.json` (one record per person, `image` relative to `out/`).
About 80% of the images are for training.

The difficulty knob (0..1, default 0.5) scales, for both tasks: the pose range (face yaw ±10→40°, pitch ±5→15°,
roll ±5→30°; figure rotation ±10→40°, torso lean ±8→25°), background clutter (about 2→20 shapes), sensor noise
(sigma up to 2→12 grey levels), the chance and strength of blur, the lighting gradient, and the chance of an opaque
occluder (faces 5→40%, figures 5→35%). For poses it also raises the chance of a figure running off the image
border, of unannotated joints and of a second person. `FACE_RANGES` and `POSE_RANGES` hold the exact numbers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cunet.data.formats import PoseRecord, write_mpii_json, write_pts
from cunet.data.synth_face import make_face
from cunet.data.synth_pose import Person, make_pose
from cunet.errors import CunetError
from cunet.io import Output, WritePolicy, claim_folder, make_dirs, write_bytes, writing

__all__ = ["TASKS", "CHALLENGING_BOOST", "synthesize", "render_examples"]

TASKS = ("face", "pose")
#: The face `test/challenging` subset is generated at difficulty + CHALLENGING_BOOST (capped at 1).
CHALLENGING_BOOST = 0.4
_TRAIN_FRACTION = 0.8
_CHALLENGING_FRACTION = 0.2
_MIN_IMAGE_SIZE = 64
#: Coordinates are written to 1/1000 pixel, as in the 300-W files (the drawing itself is exact to 1/16 pixel).
_DECIMALS = 3
# Subset codes in the per-image seed; changing them changes every generated file.
_SEED_CODES = {("face", "train"): 0, ("face", "common"): 1, ("face", "challenging"): 2, ("pose", "train"): 3,
               ("pose", "valid"): 4}


def _image_rng(seed: int, task: str, subset: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SEED_CODES[(task, subset)], index])


def _split(n: int) -> tuple[int, int, int]:
    """(train, test common, test challenging) image counts for n images."""
    n_test = 0 if n < 2 else max(1, round(n * (1 - _TRAIN_FRACTION)))
    n_chal = 0 if n_test < 2 else max(1, round(n_test * _CHALLENGING_FRACTION))
    return n - n_test, n_test - n_chal, n_chal


def _encode_png(path: Path, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path}")
    return buf.tobytes()


def _check_args(out: Path, task: str, n: int, difficulty: float, image_size: int) -> None:
    if task not in TASKS:
        raise CunetError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    if n < 1:
        raise CunetError(f"n must be at least 1, got {n}")
    if not (0.0 <= difficulty <= 1.0):
        raise CunetError(f"difficulty must be in [0, 1], got {difficulty}")
    if image_size < _MIN_IMAGE_SIZE:
        raise CunetError(f"image_size must be at least {_MIN_IMAGE_SIZE} pixels, got {image_size}")


def synthesize(out: str | os.PathLike, task: str, n: int = 600, seed: int = 0, difficulty: float = 0.5,
               image_size: int = 256, overwrite: bool = False) -> dict[str, Any]:
    """Write a synthetic face (300-W layout) or pose (MPII JSON layout) dataset of `n` images into `out`.

    Args:
        out: destination folder; created if missing. It must be empty unless `overwrite`.
        task: "face" (68 iBUG points) or "pose" (16 MPII joints).
        n: number of images; about 80% go to training.
        seed: the dataset is a pure function of the arguments; the same seed gives byte-identical files.
        difficulty: 0..1, see the module docstring for what it scales.
        image_size: side of the square images in pixels (at least 64).
        overwrite: allow a non-empty `out` holding files an earlier `synthesize` wrote there (proved by its
            manifest `.cunet-outputs`, see `cunet.io.claim_folder`); those are deleted first, other files are
            kept. A folder with none of its files, or another file where a new one goes, is refused, naming a file.
            Called without a write policy (from Python), it runs under the one `cunet data synth --out` has.

    Returns:
        A summary: {"task", "out", "seed", "difficulty", "image_size", "train": images, "test": {subset: images}}
        plus, for poses, "people": {"train": records, "valid": records}.

    Raises:
        CunetError: invalid arguments or an unusable `out` (a file, a non-empty folder without `overwrite`, or a
            folder holding a file this command did not write).
    """
    out = Path(out)
    _check_args(out, task, n, difficulty, image_size)
    own = WritePolicy([Output(out, "cunet data synth", "--out", folder=True)])
    with writing(own, default=True):
        claim_folder(out, overwrite)
        make_dirs(out)
        return _write(out, task, n, seed, difficulty, image_size)


def _write(out: Path, task: str, n: int, seed: int, difficulty: float, image_size: int) -> dict[str, Any]:
    n_train, n_common, n_chal = _split(n)
    width = max(4 if task == "face" else 6, len(str(n - 1)))
    summary: dict[str, Any] = {"task": task, "out": str(out), "seed": seed, "difficulty": difficulty,
                               "image_size": image_size, "train": n_train}
    if task == "face":
        hard = min(1.0, difficulty + CHALLENGING_BOOST)
        plan = [("train", "train", difficulty, n_train), ("common", "test/common", difficulty, n_common),
                ("challenging", "test/challenging", hard, n_chal)]
        index = 0
        for subset, folder, diff, count in plan:
            for _ in range(count):
                image, points = make_face(_image_rng(seed, task, subset, index), diff, image_size)
                stem = out / folder / f"{index:0{width}d}"
                write_bytes(stem.with_suffix(".png"), _encode_png(stem.with_suffix(".png"), image))
                write_pts(stem.with_suffix(".pts"), np.round(points, _DECIMALS))
                index += 1
        summary["test"] = {"common": n_common, "challenging": n_chal}
        return summary

    records: dict[str, list[PoseRecord]] = {"train": [], "valid": []}
    for i in range(n):
        subset = "train" if i < n_train else "valid"
        image, people = make_pose(_image_rng(seed, task, subset, i), difficulty, image_size)
        name = f"{i:0{width}d}.png"
        write_bytes(out / name, _encode_png(out / name, image))
        records[subset].extend(_mpii_record(name, p) for p in people)
    for split in ("train", "valid"):
        write_mpii_json(out / f"{split}.json", records[split])
    summary["test"] = {"valid": n - n_train}
    summary["people"] = {k: len(v) for k, v in records.items()}
    return summary


def _mpii_record(image: str, person: Person) -> PoseRecord:
    return PoseRecord(image=image, center=np.round(person.center, _DECIMALS), scale=round(person.scale, 5),
                      joints=np.round(person.joints, _DECIMALS), visible=person.visible,
                      headbox=np.round(person.headbox, _DECIMALS))


def render_examples(out_png: str | os.PathLike, task: str, n: int = 6, seed: int = 0, difficulty: float = 0.5,
                    image_size: int = 256) -> None:
    """Draw a grid of `n` synthetic examples with their landmarks (dots; the skeleton for poses) into a PNG.

    The PNG has a 256-colour palette so that pictures for the docs stay small (~110 KB for 6 faces at 256 px).

    Args:
        out_png: the PNG to write (atomically).
        task: "face" or "pose".
        n: examples, laid out three per row.
        seed: examples use the training images' seeds, so they show what `synthesize(..., seed=seed)` writes.
        difficulty: as in `synthesize`.
        image_size: side of each example in pixels.
    """
    from cunet.data.spec import get_spec

    if task not in TASKS:
        raise CunetError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    skeleton = get_spec(task).skeleton if task == "pose" else ()
    tiles = []
    for i in range(n):
        rng = _image_rng(seed, task, "train", i)
        if task == "face":
            image, points = make_face(rng, difficulty, image_size)
            sets = [(points, np.ones(len(points), bool))]
        else:
            image, people = make_pose(rng, difficulty, image_size)
            sets = [(p.joints, p.visible) for p in people]
        tiles.append(_overlay(image, sets, skeleton))
    cols = min(3, n)
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (math.ceil(n / cols) * cols - n)
    grid = np.vstack([np.hstack(tiles[r * cols:(r + 1) * cols]) for r in range(len(tiles) // cols)])
    write_bytes(out_png, _palette_png(grid))


def _palette_png(image: np.ndarray) -> bytes:
    """A 256-colour PNG of a BGR image: about a fifth of the size of a true-colour one, for pictures in docs."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image[..., ::-1])).quantize(256).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _overlay(image: np.ndarray, sets: list[tuple[np.ndarray, np.ndarray]],
             skeleton: tuple[tuple[int, int], ...]) -> np.ndarray:
    img = image.copy()
    one = 1 << 4
    for points, visible in sets:
        fixed = [tuple(int(round(v * one)) for v in p) if ok else None for p, ok in zip(points, visible)]
        for a, b in skeleton:
            if fixed[a] is not None and fixed[b] is not None:
                cv2.line(img, fixed[a], fixed[b], (255, 255, 255), 1, cv2.LINE_AA, 4)
        for p in fixed:
            if p is not None:
                cv2.circle(img, p, int(1.6 * one), (0, 0, 0), -1, cv2.LINE_AA, 4)
                cv2.circle(img, p, int(1.0 * one), (0, 255, 255), -1, cv2.LINE_AA, 4)
    return img

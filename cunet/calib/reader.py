"""Calibration inputs: real images through the exact inference preprocessing recorded in the model's metadata.

Calibration ranges are only as good as their inputs: an image cropped or normalised differently from inference
gives ranges for activations the deployed model never sees. So the crop (and its face margin), size, mean, std and
per-crop stretch come from the ONNX model's "cunet" metadata (what `cunet export` wrote), and the
crop/affine/normalisation code is
`cunet.data.preprocess`, the same functions every runtime uses.

Two kinds of data are accepted: a dataset in any layout `cunet.data.layout.detect_layout` recognises (the one
detector of every command: 300-W, train/ + test/, a flat folder of images with `.pts`, a COCO face JSON, MPII
`train.json`), whose training split gives the crops, or a plain folder of images, each used as a whole-image crop
(a square box around the image centre with side max(H, W), as the runtime does without a box). Images are decoded
by `cunet.data.dataset.read_image`, the reader of every command (grayscale, 16-bit and RGBA become 8-bit BGR).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from cunet.batch import Skips
from cunet.data.layout import IMAGE_SUFFIXES, detect_layout, key_problem
from cunet.data.preprocess import FACE_BOX_MARGIN, Box, box_from_points, prepare_inputs
from cunet.errors import CunetError
from cunet.io import sha256_file
from cunet.limits import refuse_empty
from cunet.runtime.meta import meta_from_onnx_proto

__all__ = [
    "IMAGE_SUFFIXES",
    "PreprocessSpec",
    "CalibrationInputs",
    "ArrayDataReader",
    "read_preprocess_spec",
    "CalibrationSelection",
    "select_calibration_images",
    "inputs_from_arrays",
]



@dataclass(frozen=True)
class PreprocessSpec:
    """What calibration needs from a model: its input name and the preprocessing recorded at export."""

    input_name: str
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    task: str | None
    stretch: str = "none"
    box_margin: float = FACE_BOX_MARGIN
    crop: str = "cunet"


def read_preprocess_spec(model_path: str | os.PathLike) -> PreprocessSpec:
    """The input name and preprocessing (size, mean, std) of an exported cunet ONNX model.

    Raises:
        CunetError: the file is not a readable ONNX model, or it lacks the "cunet" metadata `cunet export` writes.
    """
    import onnx

    path = Path(model_path)
    if not path.is_file():
        raise CunetError(f"{path}: no such model file")
    refuse_empty(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises several types for truncated/foreign files
        raise CunetError(f"{path}: not a readable ONNX model ({type(e).__name__})") from e
    # The same validation as every runtime: a damaged record (input size 10**30, NaN std) stops here, in one line.
    meta = meta_from_onnx_proto(model, str(path))
    if not model.graph.input:
        raise CunetError(f"{path}: the graph has no input")
    graph_input = model.graph.input[0]
    # Calibration feeds [N, 3, S, S] built from the metadata; a graph that wants another shape (metadata copied
    # from another model) would fail deep inside ONNX Runtime's calibrator with a multi-line traceback.
    dims = [d.dim_value if d.HasField("dim_value") else None for d in graph_input.type.tensor_type.shape.dim]
    want = [None, 3, meta.input_size, meta.input_size]
    if len(dims) != 4 or any(d is not None and w is not None and d != w for d, w in zip(dims, want)):
        shape = ", ".join("?" if d is None else str(d) for d in dims)
        raise CunetError(
            f"{path}: the graph input is [{shape}] but the cunet metadata describes [N, 3, {meta.input_size}, "
            f"{meta.input_size}]; the metadata belongs to another model"
        )
    return PreprocessSpec(graph_input.name, meta.input_size, meta.mean, meta.std, meta.task, meta.stretch,
                          meta.box_margin, meta.crop)


@dataclass(frozen=True)
class CalibrationInputs:
    """Preprocessed calibration batches and a fingerprint of where they came from.

    Attributes:
        input_name: the model input the arrays feed.
        arrays: [N, 3, S, S] float32 network inputs, one per calibration image.
        fingerprint: sha256 over the selected files' bytes and crop boxes, or over the array bytes.
        sources: the image files the arrays came from (empty for in-memory arrays).
        skipped: (file, problem) of each selected image that could not be read and was left out.
    """

    input_name: str
    arrays: np.ndarray
    fingerprint: str
    sources: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()

    def reader(self, batch: int = 1) -> "ArrayDataReader":
        """A fresh ONNX Runtime CalibrationDataReader over these inputs."""
        return ArrayDataReader(self.input_name, self.arrays, batch)


class ArrayDataReader:
    """ONNX Runtime's CalibrationDataReader protocol over preprocessed inputs: `get_next() -> dict | None`.

    Args:
        input_name: the model input name.
        arrays: [N, 3, S, S] float32.
        batch: images per `get_next` call.
    """

    def __init__(self, input_name: str, arrays: np.ndarray, batch: int = 1) -> None:
        self.input_name = input_name
        self.arrays = arrays
        self.batch = max(1, int(batch))
        self._pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= len(self.arrays):
            return None
        x = self.arrays[self._pos : self._pos + self.batch]
        self._pos += self.batch
        return {self.input_name: x}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while (item := self.get_next()) is not None:
            yield item

    def __len__(self) -> int:
        return -(-len(self.arrays) // self.batch)

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._pos = 0


def _spread(n_total: int, n: int) -> list[int]:
    # Evenly spaced, deterministic picks cover the whole (sorted) set instead of its first folder only.
    if n >= n_total:
        return list(range(n_total))
    return sorted({int(i) for i in np.linspace(0, n_total - 1, n).round()})


def _is_dataset(root: Path, task: str | None) -> bool:
    try:
        layout = detect_layout(root, task or "face")
    except CunetError:
        return task is None and (root / "train.json").is_file()
    # train/ and test/ folders of bare images (no .pts anywhere) are a plain image folder, as before
    return layout.kind != "splits" or any(root.rglob("*.pts"))


def _whole_image_box(image: np.ndarray) -> Box:
    h, w = image.shape[:2]
    return Box((w - 1) / 2.0, (h - 1) / 2.0, float(max(h, w)))


def _read_image(path: Path) -> np.ndarray:
    from cunet.data.dataset import read_image

    return read_image(path)


def _collect(root: Path, task: str | None,
             margin: float = FACE_BOX_MARGIN) -> tuple[list[tuple[Path, Box | None]], list[tuple[str, str]]]:
    """The usable (image, crop box) items under `root` and the (file, problem) of each file left out."""
    if _is_dataset(root, task):
        from cunet.data.dataset import load_samples

        if task is None:
            raise CunetError(f"{root}: annotated dataset but the model's metadata names no task")
        loaded = load_samples(root, task, split="train")
        problems = [(p.file, p.problem) for p in loaded.problems]
        samples = sorted(loaded.samples, key=lambda s: s.key)
        if task == "face" and margin != FACE_BOX_MARGIN:  # the model's crop rule (an imported original: x1.1)
            return [(Path(s.image), box_from_points(s.points, s.visible, margin)) for s in samples], problems
        return [(Path(s.image), s.box) for s in samples], problems
    items, problems = [], []
    for p in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        escape = key_problem(root, p.relative_to(root).as_posix())
        if escape is not None:  # a symlink out of the folder given
            problems.append((str(p), escape))
        else:
            items.append((p, None))
    return items, problems


@dataclass(frozen=True)
class CalibrationSelection:
    """The image files chosen for calibration and their fingerprint, known before any pixel is decoded.

    Attributes:
        spec: the model's preprocessing.
        items: (image path, crop box or None for the whole image), in a deterministic order.
        fingerprint: sha256 over each file's bytes (its sha256) and crop box, in order — content, not names or
            times (`cunet.calib.cache`) — and over the files left out and why.
        problems: (file, problem) of each file of the data left out before selection (a bad annotation, an image
            without one, a symlink out of the folder): the batch rule's `skipped` lines.
    """

    spec: PreprocessSpec
    items: tuple[tuple[Path, Box | None], ...]
    fingerprint: str
    problems: tuple[tuple[str, str], ...] = ()

    def load(self, strict: bool = False) -> "CalibrationInputs":
        """Decode and preprocess the selected images (crop, resize, normalise exactly as at inference).

        Under the batch rule (`cunet.batch`): the data's `problems`, an unreadable image (truncated, empty, over
        the pixel limit, not an image) and a crop box (almost) wholly outside its image are left out and listed in
        `CalibrationInputs.skipped`; with `strict` the first one raises instead.

        Raises:
            CunetError: `strict` and any file left out, or no selected image usable at all.
        """
        from cunet.data.preprocess import box_problem

        size = self.spec.input_size
        skips = Skips(strict)
        skips.extend(self.problems)
        arrays, used = [], []
        for path, box in self.items:
            try:
                image = _read_image(path)
            except CunetError as e:
                skips.add_error(path, e)
                continue
            bad_box = None if box is None else box_problem(box, image.shape[1], image.shape[0])
            if bad_box is not None:
                skips.add(path, bad_box)
                continue
            spec = self.spec
            x, _ = prepare_inputs([image], [box or _whole_image_box(image)], size, spec.mean, spec.std, spec.stretch,
                                  spec.crop)
            arrays.append(x[0])
            used.append(str(path))
        if not arrays:
            first = skips.items[-1]  # the last: a selected image, not a file left out before selection
            raise CunetError(f"{first.file}: {first.problem} (none of the {len(self.items)} selected calibration "
                             "image(s) is usable)")
        skipped = tuple((s.file, s.problem) for s in skips)
        return CalibrationInputs(self.spec.input_name, np.stack(arrays), self.fingerprint, tuple(used), skipped)


def select_calibration_images(data: str | os.PathLike, spec: PreprocessSpec, samples: int) -> CalibrationSelection:
    """Select up to `samples` images under `data`, evenly spread over the sorted set.

    Args:
        data: a dataset root (300-W / MPII layout; the training split is used) or a folder of images.
        spec: the model's preprocessing (`read_preprocess_spec`).
        samples: how many images to use (fewer when the folder has fewer).
    """
    root = Path(data)
    if not root.exists():
        raise CunetError(f"{root}: calibration data folder does not exist")
    if samples < 1:
        raise CunetError(f"calibration needs at least 1 sample, got {samples}")
    items, problems = _collect(root, spec.task, spec.box_margin)
    if not items:
        first = f" ({len(problems)} left out, first: {problems[0][0]}: {problems[0][1]})" if problems else ""
        raise CunetError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) to calibrate with{first}")
    chosen = tuple(items[i] for i in _spread(len(items), samples))
    # Content, not names: two folders with the same names, sizes and times but other pixels must not share ranges.
    digest = hashlib.sha256()
    for path, box in chosen:
        where = "whole" if box is None else f"{box.cx:.6g},{box.cy:.6g},{box.size:.6g}"
        digest.update(f"{sha256_file(path)}|{where}\n".encode())
    for file, problem in problems:  # a cached result repeats its skipped lines only for the same bad files
        digest.update(f"skipped|{file}|{problem}\n".encode())
    return CalibrationSelection(spec, chosen, digest.hexdigest(), tuple(problems))


def inputs_from_arrays(input_name: str, arrays: Sequence[np.ndarray] | np.ndarray) -> CalibrationInputs:
    """Calibration inputs from already preprocessed arrays [N, 3, S, S]; fingerprinted by content."""
    x = np.ascontiguousarray(np.asarray(arrays, dtype=np.float32))
    if x.ndim != 4 or len(x) == 0:
        raise CunetError(f"calibration arrays must be [N, C, H, W] with N >= 1, got shape {x.shape}")
    digest = hashlib.sha256(str(x.shape).encode())
    digest.update(x.tobytes())
    return CalibrationInputs(input_name, x, digest.hexdigest())

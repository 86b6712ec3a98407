"""`Predictor`: images in, landmarks in original-image pixels out, the same way on every backend.

One runner interface (Polygraphy's `BaseRunner` idea): `open_predictor` picks a backend from the file type
(`.pt` → PyTorch, `.onnx` → ONNX Runtime, `.engine` → TensorRT, `.xml` → OpenVINO), the Predictor is a context
manager that allocates in `open` and frees in `close`, and every backend shares the preprocessing (crop, warp,
normalise — strictly from the model's metadata through `cunet.data.preprocess`) and the decoding
(`cunet.data.decode`). The three stages are public
(`preprocess`, `predict_heatmaps`, `postprocess`) so profiling can time them apart and calibration can feed raw
batches.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from cunet.data.decode import (DEFAULT_METHOD, DecodeMethod, decode, flip_back, heatmap_to_image, merge_flip,
                               original_to_image)
from cunet.data.preprocess import Box, apply_affine, crop_affines, invert_affine, prepare_inputs
from cunet.errors import CunetError, require_torch
from cunet.filetype import ModelKind, import_original_advice, sniff
from cunet.io import sha256_file
from cunet.limits import refuse_empty
from cunet.runtime.base import BACKENDS, Backend, cuda_device_available
from cunet.runtime.meta import ModelMeta, read_engine_meta, read_ir_meta, read_onnx_meta

__all__ = ["Predictor", "open_predictor", "available_backends", "whole_image_box", "DEFAULT_DECODE"]

#: DARK decoding (the best of argmax / quarter-pixel / DARK on sub-pixel Gaussian peaks, see cunet.data.decode).
DEFAULT_DECODE = DEFAULT_METHOD.value
TORCH_SUFFIXES = (".pt", ".pth")
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan")
IR_SUFFIXES = (".xml",)


def whole_image_box(image: np.ndarray) -> Box:
    """The square box around the image centre with side max(H, W) (pixel centres on integers)."""
    h, w = image.shape[:2]
    return Box((w - 1) / 2.0, (h - 1) / 2.0, float(max(h, w)))


class Predictor:
    """Landmark prediction with one model on one backend.

    Use it as a context manager (or call `open` / `close`):

        with open_predictor("model.onnx", backend="ort-cpu") as p:
            points = p.predict([cv2.imread("face.jpg")])        # [1, K, 2], 0-based original pixels

    Attributes:
        meta: the model's `ModelMeta` (task, input size, normalisation, flip pairs ...).
        path: the model file.
        backend: the backend name ("torch", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt", "openvino" or "auto").
        decode_method: the `cunet.data.decode` method ("dark", "quarter", "argmax" or "original"); for a model that
            decodes in its graph (`cunet export --decode`, `meta.decode`) the graph's method, whatever was asked.
    """

    def __init__(self, path: Path, meta: ModelMeta, backend: Backend, decode_method: str = DEFAULT_DECODE) -> None:
        if decode_method not in {m.value for m in DecodeMethod}:
            choices = ", ".join(m.value for m in DecodeMethod)
            raise CunetError(f"unknown decode method {decode_method!r}; choose {choices}")
        self.path = Path(path)
        self.meta = meta
        self.decode_method = meta.decode or decode_method
        self._backend = backend
        self._open = False
        self._device_ms: float | None = None

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def provider(self) -> str | None:
        """What really runs (after `open`): an ONNX Runtime provider, "torch-cpu", "tensorrt-cuda:0" ..."""
        return self._backend.provider

    @property
    def device(self) -> str | None:
        """Where it runs (after `open`): "cpu", "cuda:N", or an OpenVINO device ("gpu", "npu")."""
        return self._backend.device

    @property
    def note(self) -> str | None:
        """Why the backend skipped a provider "auto" could have used (ONNX Runtime), else None."""
        return getattr(self._backend, "note", None)

    @property
    def device_ms(self) -> float | None:
        """Device time of the last `predict_heatmaps` measured with CUDA events, summed over every chunk a large
        batch was split into (None on CPU backends)."""
        return self._device_ms

    def open(self) -> "Predictor":
        """Allocate the backend (session, engine, device memory). Idempotent."""
        if not self._open:
            self._backend.open()
            self._open = True
        return self

    def close(self) -> None:
        """Free what `open` allocated. Idempotent."""
        if self._open:
            self._backend.close()
            self._open = False

    def __enter__(self) -> "Predictor":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Predictor({str(self.path)!r}, backend={self.backend!r}, provider={self.provider!r})"

    # ------------------------------------------------------------------------------------------------ the stages

    def preprocess(
        self, images: Sequence[np.ndarray], boxes: Sequence[Box | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Crop, warp and normalise images exactly as the model was trained.

        Args:
            images: N BGR uint8 arrays [H, W, 3] (as `cv2.imread` returns them), sizes may differ.
            boxes: N crop boxes in original pixels, or None (or a None entry) for the whole image.

        Returns:
            (x [N, 3, S, S] float32 network input, affines [N, 2, 3] original → input-crop pixels of what was
            sampled; the model's crop rule is `meta.crop`).
        """
        m = self.meta
        return prepare_inputs(images, self._boxes(images, boxes), m.input_size, m.mean, m.std, m.stretch, m.crop)

    def _boxes(self, images: Sequence[np.ndarray], boxes: Sequence[Box | None] | None) -> list[Box]:
        """Each image's crop box (the whole image where none is given), after checking the images."""
        if boxes is not None and len(boxes) != len(images):
            raise CunetError(f"{len(images)} images but {len(boxes)} boxes")
        chosen = []
        for i, image in enumerate(images):
            ok = isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            if not ok:
                got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
                raise CunetError(f"image {i}: expected a BGR uint8 array [H, W, 3], got {got}")
            chosen.append(boxes[i] if boxes is not None and boxes[i] is not None else whole_image_box(image))
        return chosen

    def predict_heatmaps(self, x: np.ndarray) -> np.ndarray:
        """Raw inference: x [N, 3, S, S] float32 → heatmaps [N, K, S/4, S/4] float32 (split to fit the backend).

        A model that decodes in its graph (`meta.decode`) returns its "landmarks" [N, K, 3] instead: x, y in
        input-crop pixels and the score; `postprocess` takes either.
        """
        if not self._open:
            raise RuntimeError("Predictor is closed: use `with open_predictor(...) as p:` or call p.open()")
        s = self.meta.input_size
        if x.ndim != 4 or x.shape[1:] != (3, s, s):
            raise CunetError(f"{self.path}: input must be [N, 3, {s}, {s}], got {list(x.shape)}")
        step = self._backend.max_batch or max(len(x), 1)
        chunks, device_ms = [], []
        for i in range(0, max(len(x), 1), step):
            chunks.append(self._backend.infer(x[i : i + step]))
            device_ms.append(self._backend.device_ms)
        out = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        self._device_ms = None if None in device_ms else float(sum(device_ms))  # type: ignore[arg-type]
        k, h = self.meta.num_landmarks, self.meta.heatmap_size
        want = (len(x), k, 3) if self.meta.decode else (len(x), k, h, h)
        if out.shape != want:
            # Decoding garbage would give confident wrong landmarks (or crash later with a numpy error).
            what = "decoded landmarks" if self.meta.decode else "heatmaps"
            raise CunetError(
                f"{self.path}: the model outputs {list(out.shape)} but its cunet metadata promises "
                f"{list(want)} {what}; the file is not the model its metadata describes"
            )
        return out

    def postprocess(self, heatmaps: np.ndarray, affines: np.ndarray, boxes: Sequence[Box] | None = None) -> np.ndarray:
        """Decode heatmaps [N, K, h, w] and map them through the inverse crop affines [N, 2, 3] → [N, K, 2] floats.

        DARK smooths with the training sigma recorded in the metadata (the decoder's default when it is unknown).
        A model that decodes in its graph gives [N, K, 3] crop-pixel landmarks here: only the affine is left.
        The "original" decoder maps through the boxes' nominal geometry (`boxes`, required for it), as the original
        did, not through the sampled crop's `affines` (`cunet.data.decode.original_to_image`).
        """
        return self.postprocess_scores(heatmaps, affines, boxes)[0]

    def postprocess_scores(self, heatmaps: np.ndarray, affines: np.ndarray,
                           boxes: Sequence[Box] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`postprocess` that also returns each landmark's score: (points [N, K, 2], scores [N, K]).

        The score is the heatmap's peak value (the training target peaks at 1 on the landmark; a crop without the
        face gives low peaks), or for a model that decodes in its graph the score its graph outputs. Video tracking
        uses it to tell when the face is lost.
        """
        if self.meta.decode:
            return apply_affine(heatmaps[..., :2], invert_affine(affines)), np.asarray(heatmaps[..., 2], np.float64)
        coords, scores = decode(heatmaps, method=self.decode_method, sigma=self.meta.sigma)
        if self.decode_method == DecodeMethod.ORIGINAL.value:
            if boxes is None:
                raise CunetError("the original decoder needs the crop boxes: postprocess(heatmaps, affines, boxes)")
            size = self.meta.input_size
            nominal = crop_affines(np.array([(b.cx, b.cy) for b in boxes]).reshape(-1, 2), [b.size for b in boxes], size)
            return original_to_image(coords, nominal, self.meta.heatmap_stride), scores
        return heatmap_to_image(coords, affines, self.meta.heatmap_stride), scores

    # -------------------------------------------------------------------------------------------------- the API

    def predict(
        self, images: Sequence[np.ndarray], boxes: Sequence[Box | None] | None = None, flip: bool = False
    ) -> np.ndarray:
        """Landmarks of each image in its original pixel coordinates (0-based, float).

        Args:
            images: N BGR uint8 arrays [H, W, 3].
            boxes: N crop boxes (a face or person box from a detector, see `cunet.data.preprocess.box_from_*`), or
                None for the square box around the whole image (side max(H, W)).
            flip: also run the mirrored crop and average the heatmaps (flip test); doubles inference.

        Returns:
            [N, K, 2] float64 (x, y) per landmark.
        """
        if len(images) == 0:
            return np.zeros((0, self.meta.num_landmarks, 2))
        boxes = self._boxes(images, boxes)
        x, affines = self.preprocess(images, boxes)
        if not flip:
            return self.postprocess(self.predict_heatmaps(x), affines, boxes)
        # Mirroring the normalised input is crop_affine(flip=True) exactly: column c becomes S - 1 - c.
        both = self.predict_heatmaps(np.concatenate([x, np.ascontiguousarray(x[..., ::-1])]))
        n = len(x)
        if self.meta.decode:  # decoded in the graph: average the points (the flipped ones mirrored back) instead
            back = both[n:][:, self.meta.flip_permutation].astype(np.float64)
            back[..., 0] = self.meta.input_size - 1 - back[..., 0]
            return self.postprocess(0.5 * (both[:n] + back), affines, boxes)
        merged = merge_flip(both[:n], flip_back(both[n:], self.meta.flip_permutation))
        return self.postprocess(merged, affines, boxes)


# ---------------------------------------------------------------------------------------------------- factories


def _cuda_index(device: str | None) -> int:
    if device in (None, "cuda"):
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise CunetError(f"device {device!r} is not a CUDA device (use cuda or cuda:N)")


def open_predictor(
    model_path: str | os.PathLike,
    backend: str = "auto",
    threads: int | None = None,
    device: str | None = None,
    decode_method: str = DEFAULT_DECODE,
) -> Predictor:
    """A (not yet opened) Predictor for a `.pt`, `.onnx` or `.engine` file.

    Args:
        model_path: checkpoint (`.pt`), ONNX model (`.onnx`), TensorRT engine (`.engine`, metadata in the
            `<engine>.manifest.json` beside it) or OpenVINO IR (`.xml` + `.bin`, metadata in its rt_info).
        backend: "auto" (by file type; for ONNX the TensorRT EP > CUDA EP > CPU, whichever this onnxruntime offers;
            `.xml` OpenVINO), "torch", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt" or "openvino" (`.xml` and `.onnx`).
        threads: CPU threads for inference (None: the runtime's default).
        device: "cpu", "cuda" or "cuda:N" (torch backend: default CUDA when available, else CPU; GPU backends:
            which CUDA device); for openvino an OpenVINO device name ("CPU" by default, "GPU", "NPU" ...).
        decode_method: "dark", "quarter", "argmax" or "original" (the original code's, to reproduce its numbers).

    Raises:
        CunetError: missing or unreadable file, a backend that does not run this file type, or a backend this
            machine cannot run (no CUDA device, no GPU build of onnxruntime, no TensorRT) — one line, no crash.
    """
    path = Path(model_path)
    if backend != "auto" and backend not in BACKENDS:
        raise CunetError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    if threads is not None and threads < 1:
        raise CunetError(f"threads must be at least 1, got {threads}")
    if not path.is_file():
        raise CunetError(f"{path}: no such model file")
    refuse_empty(path)
    if sniff(path) is ModelKind.ORIGINAL:  # before the suffix: `.pth.tar` is no suffix a runtime knows
        raise CunetError(import_original_advice(path))
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        return _open_torch(path, backend, threads, device, decode_method)
    if suffix in IR_SUFFIXES or (suffix in ONNX_SUFFIXES and backend == "openvino"):
        return _open_openvino(path, backend, threads, device, decode_method)
    if suffix in ONNX_SUFFIXES:
        if backend == "tensorrt":
            raise CunetError(
                f"{path}: the tensorrt backend runs .engine files; build one with `cunet compile` or use ort-trt"
            )
        if backend == "torch":
            raise CunetError(f"{path}: the torch backend runs .pt checkpoints; use auto, ort-cpu, ort-cuda or ort-trt")
        from cunet.runtime.ort_backend import OrtBackend

        meta = read_onnx_meta(path)
        device_id = _cuda_index(device) if backend != "ort-cpu" else 0
        ort_backend = OrtBackend(path, backend, threads, device_id, meta.precision, lowbit=meta.quant is not None,
                                 recipe=meta.recipe)
        return Predictor(path, meta, ort_backend, decode_method)
    if suffix in ENGINE_SUFFIXES:
        if backend not in ("auto", "tensorrt"):
            raise CunetError(f"{path}: a TensorRT engine runs only on the tensorrt backend, not {backend}")
        from cunet.runtime.trt_backend import TensorRTBackend, require_cuda

        require_cuda(path)
        meta = read_engine_meta(path)
        return Predictor(path, meta, TensorRTBackend(path, f"cuda:{_cuda_index(device)}"), decode_method)
    raise CunetError(
        f"{path}: unknown model type {suffix or '(no suffix)'}; expected .pt, .onnx, .engine or .xml (OpenVINO IR)"
    )


def _open_openvino(path: Path, backend: str, threads: int | None, device: str | None, decode_method: str) -> Predictor:
    if backend not in ("auto", "openvino"):
        raise CunetError(f"{path}: an OpenVINO IR runs on the openvino backend, not {backend}")
    from cunet.runtime.ov_backend import OpenVinoBackend

    meta = read_ir_meta(path) if path.suffix.lower() in IR_SUFFIXES else read_onnx_meta(path)
    return Predictor(path, meta, OpenVinoBackend(path, threads, device), decode_method)


def _open_torch(path: Path, backend: str, threads: int | None, device: str | None, decode_method: str) -> Predictor:
    if backend not in ("auto", "torch"):
        raise CunetError(f"{path}: a .pt checkpoint runs on the torch backend; export it first for {backend}")
    require_torch(f"{path}: a .pt checkpoint")
    from cunet.model.checkpoint import model_from_checkpoint
    from cunet.runtime.torch_backend import TorchBackend

    if device is None:
        device = "cuda" if cuda_device_available() else "cpu"
    elif device != "cpu":
        _cuda_index(device)
        if not cuda_device_available():
            raise CunetError(f"{path}: device {device} asked for, but no CUDA device is visible")
    model, ckpt = model_from_checkpoint(path)
    meta = ModelMeta.from_checkpoint(ckpt, source_sha256=sha256_file(path))
    return Predictor(path, meta, TorchBackend(model, device, threads), decode_method)


def available_backends(model_path: str | os.PathLike | None = None) -> list[str]:
    """The backends this machine can run (for a given model file: those that run its file type).

    Never imports TensorRT: "tensorrt" is listed when a CUDA device is visible and the package is installed.
    """
    import importlib.util

    from cunet.runtime.ort_backend import ORT_PROVIDERS, ort_available_providers

    found: list[str] = []
    if importlib.util.find_spec("torch") is not None:
        found.append("torch")
    providers = ort_available_providers()
    cuda = cuda_device_available()
    for name in ("ort-cpu", "ort-cuda", "ort-trt"):
        primary = ORT_PROVIDERS[name][0]
        if primary in providers and (name == "ort-cpu" or cuda):
            found.append(name)
    if cuda and importlib.util.find_spec("tensorrt") is not None:
        found.append("tensorrt")
    if importlib.util.find_spec("openvino") is not None:
        found.append("openvino")
    if model_path is not None:
        suffix = Path(model_path).suffix.lower()
        kinds = {"torch": TORCH_SUFFIXES, "tensorrt": ENGINE_SUFFIXES, "openvino": ONNX_SUFFIXES + IR_SUFFIXES}
        found = [b for b in found if suffix in kinds.get(b, ONNX_SUFFIXES)]
    return found

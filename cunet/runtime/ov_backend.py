"""The OpenVINO backend: OpenVINO IR (`.xml` + `.bin`) and ONNX files (FP32, FP16, any Q/DQ model cunet writes).

OpenVINO turns the Q/DQ pairs of an ONNX model (and NNCF's FakeQuantize nodes in an IR) into int8 kernels itself, so
the same backend runs FP32 exports, the `tensorrt` and `cpu` recipes, and `cunet quantize --recipe openvino` IRs.

Two compiled models, made on first use: batch 1 runs one synchronous request of a model compiled with the LATENCY
hint (all threads on one request); a larger batch is split over the requests of a model compiled with the
THROUGHPUT hint (several CPU streams, each with its share of the threads) and run asynchronously. `threads` sets
`INFERENCE_NUM_THREADS`. On the CPU the inference precision is pinned to f32: OpenVINO's default on CPUs with
bf16/AMX units is bf16, which would change the accuracy `cunet evaluate` reports without any flag saying so.

`openvino` is an optional extra (`pip install 'cunet[openvino]'`); without it this backend is one line naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cunet.errors import CunetError
from cunet.runtime.base import Backend

__all__ = ["OpenVinoBackend", "require_openvino", "openvino_info", "ir_files_bytes", "IR_SUFFIXES"]

IR_SUFFIXES = (".xml",)
MISSING = "openvino is not installed (pip install 'cunet[openvino]')"


def require_openvino(what: str | Path = "the openvino backend") -> Any:
    """The `openvino` module, or a one-line CunetError naming the extra that installs it."""
    try:
        import openvino
    except ImportError:
        raise CunetError(f"{what}: {MISSING}") from None
    return openvino


def openvino_info() -> dict[str, Any]:
    """{"installed", "version", "devices"}: what `cunet doctor` shows (devices as OpenVINO lists them)."""
    try:
        import openvino as ov
    except ImportError:
        return {"installed": False, "version": None, "devices": []}
    try:
        devices = list(ov.Core().available_devices)
    except RuntimeError:
        devices = []
    return {"installed": True, "version": ov.get_version(), "devices": devices}


def ir_files_bytes(path: str | Path) -> int:
    """Size on disk of a model: an IR's `.xml` plus its `.bin`, any other file its own size."""
    p = Path(path)
    size = p.stat().st_size
    if p.suffix.lower() in IR_SUFFIXES and p.with_suffix(".bin").is_file():
        size += p.with_suffix(".bin").stat().st_size
    return size


class OpenVinoBackend(Backend):
    """An OpenVINO compiled model on one device.

    Args:
        path: an IR `.xml` (its `.bin` beside it) or an `.onnx` file.
        threads: `INFERENCE_NUM_THREADS` (None: OpenVINO's default, all cores).
        device: an OpenVINO device name ("CPU", "GPU", "NPU", "GPU.1", ...); None or "cpu" mean "CPU".
    """

    name = "openvino"

    def __init__(self, path: Path, threads: int | None = None, device: str | None = None) -> None:
        ov = require_openvino(path)
        self._path = Path(path)
        self._threads = threads
        self._device = "CPU" if device in (None, "cpu") else device
        self._core = ov.Core()
        available = list(self._core.available_devices)
        family = self._device.split(".")[0].upper()
        if self._device not in available and family not in {d.split(".")[0] for d in available}:
            raise CunetError(
                f"{self._path}: OpenVINO device {self._device!r} is not on this machine (it lists "
                f"{', '.join(available) or 'none'})"
            )
        self._model = None
        self._compiled: dict[str, Any] = {}
        self._requests: dict[str, Any] = {}
        self._input_dtype = np.float32

    def open(self) -> None:
        if self._model is not None:
            return
        if self._path.suffix.lower() in IR_SUFFIXES and not self._path.with_suffix(".bin").is_file():
            raise CunetError(f"{self._path}: no {self._path.with_suffix('.bin').name} beside it (the IR's weights)")
        try:
            self._model = self._core.read_model(str(self._path))
        except RuntimeError as e:
            detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
            raise CunetError(f"{self._path}: OpenVINO cannot read it ({detail})") from e
        element = self._model.inputs[0].get_element_type().get_type_name()
        self._input_dtype = np.float16 if element == "f16" else np.float32
        self._compile("LATENCY")
        self.provider = f"openvino-{self._device}"
        self.device = self._device.lower()

    def _config(self, hint: str) -> dict[str, Any]:
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
        if self._threads is not None:
            config["INFERENCE_NUM_THREADS"] = self._threads
        if self._device.upper().startswith("CPU"):
            config["INFERENCE_PRECISION_HINT"] = "f32"
        return config

    def _compile(self, hint: str) -> Any:
        if hint not in self._compiled:
            try:
                self._compiled[hint] = self._core.compile_model(self._model, self._device, self._config(hint))
            except RuntimeError as e:
                detail = " ".join(str(e).split())[:200]
                raise CunetError(f"{self._path}: OpenVINO cannot compile it for {self._device} ({detail})") from e
            if hint == "LATENCY":
                self._requests[hint] = self._compiled[hint].create_infer_request()
            else:
                import openvino as ov

                jobs = int(self._compiled[hint].get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
                self._requests[hint] = ov.AsyncInferQueue(self._compiled[hint], max(1, jobs))
        return self._requests[hint]

    def infer(self, x: np.ndarray) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("OpenVinoBackend.infer called before open()")
        x = np.ascontiguousarray(x, self._input_dtype)
        try:
            if len(x) == 1:
                request = self._requests["LATENCY"]
                request.infer({0: x})
                return np.array(request.get_output_tensor(0).data, dtype=np.float32)
            return self._infer_throughput(x)
        except RuntimeError as e:
            detail = " ".join(str(e).split())[:200]
            raise CunetError(f"{self._path}: the graph rejects the input its metadata describes ({detail})") from e

    def _infer_throughput(self, x: np.ndarray) -> np.ndarray:
        queue = self._compile("THROUGHPUT")
        parts = np.array_split(x, min(len(queue), len(x)))
        outputs: list[np.ndarray | None] = [None] * len(parts)

        def done(request: Any, index: int) -> None:
            outputs[index] = np.array(request.get_output_tensor(0).data, dtype=np.float32)

        queue.set_callback(done)
        for i, part in enumerate(parts):
            queue.start_async({0: np.ascontiguousarray(part)}, i)
        queue.wait_all()
        return np.concatenate(outputs)  # type: ignore[arg-type]

    def properties(self) -> dict[str, dict[str, Any]]:
        """hint → {"PERFORMANCE_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS", "OPTIMAL_NUMBER_OF_INFER_REQUESTS"}
        as the compiled models report them (models not compiled yet are compiled here)."""
        if self._model is None:
            raise RuntimeError("OpenVinoBackend.properties called before open()")
        out: dict[str, dict[str, Any]] = {}
        for hint in ("LATENCY", "THROUGHPUT"):
            self._compile(hint)
            compiled = self._compiled[hint]
            keys = ("PERFORMANCE_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS", "OPTIMAL_NUMBER_OF_INFER_REQUESTS")
            out[hint] = {k: _plain(compiled.get_property(k)) for k in keys}
        return out

    def close(self) -> None:
        self._requests.clear()
        self._compiled.clear()
        self._model = None


def _plain(value: Any) -> Any:
    # OpenVINO returns enums (PerformanceMode.LATENCY) and its own stream-count type for some properties.
    if isinstance(value, (int, float, str, bool)):
        return value
    text = str(value)
    return int(text) if text.lstrip("-").isdigit() else text.rsplit(".", 1)[-1]

"""The TensorRT backend: a serialised `.engine` run with TensorRT 10/11's Python API and torch CUDA tensors.

Written against the documented API (deserialize_cuda_engine, I/O tensors by name, `set_input_shape`,
`set_tensor_address`, `execute_async_v3`); it needs a GPU machine with TensorRT and is skipped elsewhere. The CUDA
device is checked BEFORE `import tensorrt`: without a device TensorRT can abort the process instead of raising.
Before deserialising, the engine's `<engine>.manifest.json` is compared with the running TensorRT version and GPU
(`cunet.runtime.manifest.check_compatible`): an engine built elsewhere is refused with a message naming the mismatch.
Batches larger than the engine's optimisation profile allows are split by the Predictor (`max_batch`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cunet.errors import CunetError
from cunet.runtime.base import Backend, cuda_device_available

__all__ = ["TensorRTBackend", "require_cuda"]


def require_cuda(path: Path) -> None:
    """Raise a one-line `CunetError` unless a CUDA device is visible (call before touching TensorRT)."""
    if not cuda_device_available():
        raise CunetError(f"{path}: the tensorrt backend needs a CUDA device and none is visible on this machine")


class TensorRTBackend(Backend):
    """One TensorRT engine with one input ("image") and one output ("heatmaps"), optimisation profile 0.

    Args:
        path: the `.engine` file.
        device: "cuda" or "cuda:N".
    """

    name = "tensorrt"

    def __init__(self, path: Path, device: str = "cuda") -> None:
        require_cuda(path)
        self._path = Path(path)
        self._device = device
        self._engine: Any = None
        self._context: Any = None

    def open(self) -> None:
        if self._engine is not None:
            return
        require_cuda(self._path)
        import torch

        try:
            import tensorrt as trt
        except ImportError as e:
            raise CunetError(f"{self._path}: TensorRT is not installed (pip install 'cunet[gpu]')") from e
        from cunet.runtime.manifest import check_compatible, current_device, manifest_path, read_manifest

        dev = torch.device(self._device)
        torch.cuda.set_device(dev)
        # Engines that only have the legacy folder-wide manifest.json carry no provenance to check.
        if manifest_path(self._path).is_file():
            check_compatible(self._path, read_manifest(self._path), current_device(trt.__version__, dev.index or 0))
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(self._path.read_bytes())
        if engine is None:
            raise CunetError(
                f"{self._path}: TensorRT {trt.__version__} cannot deserialise it (built by another TensorRT version "
                "or for another GPU?)"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise CunetError(f"{self._path}: expected one input and one output tensor, found {inputs} / {outputs}")
        self._in, self._out = inputs[0], outputs[0]
        to_torch = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        try:
            self._in_dtype = to_torch[engine.get_tensor_dtype(self._in)]
            self._out_dtype = to_torch[engine.get_tensor_dtype(self._out)]
        except KeyError as e:
            raise CunetError(f"{self._path}: unsupported I/O dtype {e.args[0]} (float32 or float16 expected)") from None
        lo, _, hi = engine.get_tensor_profile_shape(self._in, 0)
        self._min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self._engine, self._context = engine, engine.create_execution_context()
        self._stream = torch.cuda.Stream(device=dev)
        self.provider = f"tensorrt-{dev}"

    def infer(self, x: np.ndarray) -> np.ndarray:
        import torch

        if self._context is None:
            raise RuntimeError("TensorRTBackend.infer called before open()")
        if not self._min_batch <= len(x) <= self.max_batch:
            raise CunetError(
                f"{self._path}: batch {len(x)} outside the engine's profile {self._min_batch}..{self.max_batch}"
            )
        with torch.cuda.stream(self._stream):
            inp = torch.from_numpy(np.ascontiguousarray(x)).to(self._device, self._in_dtype, non_blocking=True)
            self._context.set_input_shape(self._in, tuple(inp.shape))
            out_shape = tuple(self._context.get_tensor_shape(self._out))
            out = torch.empty(out_shape, dtype=self._out_dtype, device=self._device)
            self._context.set_tensor_address(self._in, inp.data_ptr())
            self._context.set_tensor_address(self._out, out.data_ptr())
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(self._stream)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"{self._path}: TensorRT execute_async_v3 failed")
            end.record(self._stream)
            host = out.float().cpu()
        self._stream.synchronize()
        self.device_ms = float(start.elapsed_time(end))
        return host.numpy()

    def close(self) -> None:
        self._context = None
        self._engine = None

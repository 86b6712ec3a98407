"""The TensorRT backend: a serialised `.engine` run with TensorRT 10/11's Python API on cunet's CUDA device layer.

Written against the documented API (deserialize_cuda_engine, I/O tensors by name, `set_input_shape`,
`set_tensor_address`, `execute_async_v3`); device buffers, the stream and the timing events come from
`cunet.runtime.cuda` (cuda-python, else torch), so an engine runs without PyTorch. The CUDA device is checked BEFORE
`import tensorrt`: without a device TensorRT can abort the process instead of raising. The device is made current
before anything TensorRT touches it. Before deserialising, the engine's `<engine>.manifest.json` is compared with
the running TensorRT version and that device's GPU (`cunet.runtime.manifest.check_compatible`): an engine built
elsewhere is refused with a message naming the mismatch. Batches larger than the engine's optimisation profile
allows are split by the Predictor (`max_batch`); smaller than its minimum are padded with zeros here and the padding
rows dropped from the output. Every TensorRT call that reports failure by its return value (None, False) is checked
and becomes one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cunet.errors import CunetError
from cunet.runtime import cuda
from cunet.runtime.base import Backend

if TYPE_CHECKING:  # `make typecheck` checks the calls below against the tensorrt-stubs
    import tensorrt as trt

__all__ = ["TensorRTBackend", "require_cuda"]


def require_cuda(path: Path) -> None:
    """Raise a one-line `CunetError` unless a CUDA device is visible (call before touching TensorRT)."""
    if not cuda.available():
        raise CunetError(f"{path}: the tensorrt backend needs a CUDA device and none is visible on this machine")


class TensorRTBackend(Backend):
    """One TensorRT engine with one input ("image") and one output ("heatmaps"), optimisation profile 0.

    Args:
        path: the `.engine` file.
        device: "cuda" (device 0), "cuda:N" or N.
    """

    name = "tensorrt"

    def __init__(self, path: Path, device: str | int = "cuda") -> None:
        require_cuda(path)
        self._path = Path(path)
        self._index = cuda.device_index(device)
        self._engine: "trt.ICudaEngine | None" = None
        self._context: "trt.IExecutionContext | None" = None
        self._buffers: dict[str, cuda.DeviceBuffer] = {}

    def open(self) -> None:
        if self._engine is not None:
            return
        require_cuda(self._path)
        try:
            import tensorrt as trt
        except ImportError as e:
            raise CunetError(f"{self._path}: TensorRT is not installed (pip install 'cunet[gpu]')") from e
        from cunet.runtime.manifest import check_compatible, current_device, manifest_path, read_manifest

        cuda.select(self._index)
        # Engines that only have the legacy folder-wide manifest.json carry no provenance to check.
        dla_core = None
        if manifest_path(self._path).is_file():
            manifest = read_manifest(self._path)
            check_compatible(self._path, manifest, current_device(trt.__version__, self._index))
            dla_core = manifest.dla_core
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if dla_core is not None:  # a DLA engine runs on the core it was built for
            runtime.DLA_core = dla_core
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
        to_numpy = {trt.DataType.FLOAT: np.float32, trt.DataType.HALF: np.float16}
        try:
            self._in_dtype = to_numpy[engine.get_tensor_dtype(self._in)]
            self._out_dtype = to_numpy[engine.get_tensor_dtype(self._out)]
        except KeyError as e:
            raise CunetError(f"{self._path}: unsupported I/O dtype {e.args[0]} (float32 or float16 expected)") from None
        lo, _, hi = engine.get_tensor_profile_shape(self._in, 0)
        self._min_batch, self._max_batch = int(lo[0]), int(hi[0])
        self.max_batch = self._max_batch
        context = engine.create_execution_context()
        if context is None:  # the binding returns None when TensorRT cannot allocate the context's device memory
            raise CunetError(f"{self._path}: TensorRT could not create an execution context (out of device memory?)")
        self._engine, self._context = engine, context
        self._stream = cuda.Stream()
        self._start, self._end = cuda.Event(), cuda.Event()
        self.provider = f"tensorrt-cuda:{self._index}"
        self.device = f"cuda:{self._index}"

    def _buffer(self, name: str, nbytes: int) -> cuda.DeviceBuffer:
        buf = self._buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                buf.free()
            buf = self._buffers[name] = cuda.DeviceBuffer(nbytes)
        return buf

    def infer(self, x: np.ndarray) -> np.ndarray:
        if self._context is None:
            raise RuntimeError("TensorRTBackend.infer called before open()")
        # The context, its buffers and stream live on this engine's device; the caller's thread may have another
        # one current (a second engine, `cuda.memory_info`, another thread's work), so make ours current again.
        cuda.select(self._index)
        n = len(x)
        if not 1 <= n <= self._max_batch:
            raise CunetError(f"{self._path}: batch {n} outside the engine's profile 1..{self._max_batch}")
        host_in = np.ascontiguousarray(x, dtype=self._in_dtype)
        if n < self._min_batch:  # the profile starts above n: run min_batch rows, the extra ones zeros
            host_in = np.concatenate([host_in, np.zeros((self._min_batch - n, *x.shape[1:]), self._in_dtype)])
        ctx: "trt.IExecutionContext" = self._context
        if not ctx.set_input_shape(self._in, tuple(host_in.shape)):
            raise CunetError(f"{self._path}: TensorRT refused input shape {list(host_in.shape)} for {self._in!r}")
        out_shape = tuple(int(d) for d in ctx.get_tensor_shape(self._out)[:])
        if any(d < 0 for d in out_shape):
            raise CunetError(f"{self._path}: TensorRT left the output shape unresolved ({list(out_shape)})")
        host_out = np.empty(out_shape, dtype=self._out_dtype)
        inp, out = self._buffer(self._in, host_in.nbytes), self._buffer(self._out, host_out.nbytes)
        for name, buf in ((self._in, inp), (self._out, out)):
            if not ctx.set_tensor_address(name, buf.ptr):
                raise CunetError(f"{self._path}: TensorRT refused the device address of {name!r}")
        inp.upload(host_in, self._stream)
        self._start.record(self._stream)
        if not ctx.execute_async_v3(self._stream.handle):
            raise CunetError(f"{self._path}: TensorRT execute_async_v3 failed (its log above says why)")
        self._end.record(self._stream)
        out.download(host_out, self._stream)
        self._stream.synchronize()
        self.device_ms = cuda.Event.elapsed_ms(self._start, self._end)
        return host_out[:n].astype(np.float32, copy=False)

    def close(self) -> None:
        if self._engine is not None:
            cuda.select(self._index)  # free and destroy on the device they belong to
        for buf in self._buffers.values():
            buf.free()
        self._buffers = {}
        for handle in (getattr(self, "_start", None), getattr(self, "_end", None), getattr(self, "_stream", None)):
            if handle is not None:
                handle.close()
        self._context = None
        self._engine = None

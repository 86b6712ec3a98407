"""The CUDA device layer cunet's GPU paths share: probe, device queries, memory, buffers, streams and events.

Engines need CUDA but not PyTorch, so everything TensorRT and the GPU reports need from CUDA goes through this one
module. It talks to the CUDA runtime through `cuda-python` (the `gpu` extra) and falls back to torch's CUDA API
where torch is installed and cuda-python is not; neither is imported until a function here is called. Both drivers
implement the same small interface (`_Driver`), so a test can install a fake one with `use_driver` and drive every
caller without a GPU.

Device memory "of this process" comes from NVML's per-process accounting where `pynvml` is importable and the CUDA
index maps to the NVML index (no CUDA_VISIBLE_DEVICES remapping); elsewhere it is None and callers measure the
change of device-wide used memory instead, saying so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, Protocol

import numpy as np

from cunet.errors import CunetError

__all__ = [
    "DeviceProps",
    "available",
    "device_count",
    "device_index",
    "properties",
    "memory_info",
    "process_memory",
    "select",
    "DeviceBuffer",
    "Stream",
    "Event",
    "driver_name",
    "use_driver",
    "visible",
]


@dataclass(frozen=True)
class DeviceProps:
    """One CUDA device: its index, name, compute capability ("major.minor") and total memory in bytes."""

    index: int
    name: str
    compute_capability: str
    total_memory: int


class _Driver(Protocol):
    """What cunet needs from a CUDA binding; pointers, streams and events are opaque handles (ints where TensorRT
    needs them: `stream_handle`)."""

    name: str

    def device_count(self) -> int: ...
    def properties(self, index: int) -> tuple[str, int, int, int]: ...
    def mem_get_info(self, index: int) -> tuple[int, int]: ...
    def set_device(self, index: int) -> None: ...
    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def htod(self, ptr: int, host: np.ndarray, stream: Any) -> None: ...
    def dtoh(self, host: np.ndarray, ptr: int, stream: Any) -> None: ...
    def stream_create(self) -> Any: ...
    def stream_handle(self, stream: Any) -> int: ...
    def stream_sync(self, stream: Any) -> None: ...
    def event_create(self) -> Any: ...
    def event_record(self, event: Any, stream: Any) -> None: ...
    def event_elapsed_ms(self, start: Any, end: Any) -> float: ...


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6: the bindings live in cuda-bindings
    except ImportError:
        from cuda import cudart as runtime  # older cuda-python
    return runtime


class _CudaPython:
    """The CUDA runtime through cuda-python: every call returns (cudaError_t, *values)."""

    name = "cuda-python"

    def __init__(self) -> None:
        self._rt = _cudart()

    def _ok(self, result: Any, what: str) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self._rt.cudaError_t.cudaSuccess:
            raise CunetError(f"CUDA {what} failed: {getattr(err, 'name', err)}")
        return values[0] if len(values) == 1 else tuple(values)

    def device_count(self) -> int:
        err, count = self._rt.cudaGetDeviceCount()
        return int(count) if err == self._rt.cudaError_t.cudaSuccess else 0  # no driver / no device: none

    def properties(self, index: int) -> tuple[str, int, int, int]:
        p = self._ok(self._rt.cudaGetDeviceProperties(index), f"cudaGetDeviceProperties({index})")
        name = p.name.split(b"\0", 1)[0].decode() if isinstance(p.name, bytes) else str(p.name)
        return name, int(p.major), int(p.minor), int(p.totalGlobalMem)

    def mem_get_info(self, index: int) -> tuple[int, int]:
        self.set_device(index)
        free, total = self._ok(self._rt.cudaMemGetInfo(), "cudaMemGetInfo")
        return int(free), int(total)

    def set_device(self, index: int) -> None:
        self._ok(self._rt.cudaSetDevice(index), f"cudaSetDevice({index})")

    def malloc(self, nbytes: int) -> int:
        return int(self._ok(self._rt.cudaMalloc(nbytes), f"cudaMalloc({nbytes})"))

    def free(self, ptr: int) -> None:
        self._ok(self._rt.cudaFree(ptr), "cudaFree")

    def htod(self, ptr: int, host: np.ndarray, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self._rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, stream), "cudaMemcpyAsync")

    def dtoh(self, host: np.ndarray, ptr: int, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self._rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, stream), "cudaMemcpyAsync")

    def stream_create(self) -> Any:
        return self._ok(self._rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def stream_sync(self, stream: Any) -> None:
        self._ok(self._rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def event_create(self) -> Any:
        return self._ok(self._rt.cudaEventCreate(), "cudaEventCreate")

    def event_record(self, event: Any, stream: Any) -> None:
        self._ok(self._rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        self._ok(self._rt.cudaEventSynchronize(end), "cudaEventSynchronize")
        return float(self._ok(self._rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))


class _Torch:
    """torch's CUDA API as the same driver: buffers are uint8 tensors kept alive by their data pointer."""

    name = "torch"

    def __init__(self) -> None:
        import torch

        self._torch = torch
        self._buffers: dict[int, Any] = {}

    def device_count(self) -> int:
        return int(self._torch.cuda.device_count()) if self._torch.cuda.is_available() else 0

    def properties(self, index: int) -> tuple[str, int, int, int]:
        p = self._torch.cuda.get_device_properties(index)
        return str(p.name), int(p.major), int(p.minor), int(p.total_memory)

    def mem_get_info(self, index: int) -> tuple[int, int]:
        free, total = self._torch.cuda.mem_get_info(index)
        return int(free), int(total)

    def set_device(self, index: int) -> None:
        self._torch.cuda.set_device(index)

    def malloc(self, nbytes: int) -> int:
        t = self._torch.empty(nbytes, dtype=self._torch.uint8, device=f"cuda:{self._torch.cuda.current_device()}")
        self._buffers[t.data_ptr()] = t
        return int(t.data_ptr())

    def free(self, ptr: int) -> None:
        self._buffers.pop(ptr, None)

    def _view(self, ptr: int, nbytes: int) -> Any:
        return self._buffers[ptr][:nbytes]

    def htod(self, ptr: int, host: np.ndarray, stream: Any) -> None:
        src = self._torch.from_numpy(host.reshape(-1).view(np.uint8))
        with self._torch.cuda.stream(stream):
            self._view(ptr, host.nbytes).copy_(src, non_blocking=False)

    def dtoh(self, host: np.ndarray, ptr: int, stream: Any) -> None:
        with self._torch.cuda.stream(stream):
            data = self._view(ptr, host.nbytes).cpu().numpy()
        host.reshape(-1).view(np.uint8)[:] = data

    def stream_create(self) -> Any:
        return self._torch.cuda.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.cuda_stream)

    def stream_sync(self, stream: Any) -> None:
        stream.synchronize()

    def event_create(self) -> Any:
        return self._torch.cuda.Event(enable_timing=True)

    def event_record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        end.synchronize()
        return float(start.elapsed_time(end))


_DRIVER: _Driver | None = None
_CHOSEN = False


def _driver() -> _Driver | None:
    """cuda-python's driver, else torch's, else None; chosen once per process (or set by `use_driver`)."""
    global _DRIVER, _CHOSEN
    if not _CHOSEN:
        _CHOSEN = True
        for make in (_CudaPython, _Torch):
            try:
                _DRIVER = make()
                break
            except ImportError:
                continue
    return _DRIVER


class use_driver:
    """Install `driver` as this process's CUDA driver until the context exits (tests install a fake one)."""

    def __init__(self, driver: _Driver | None) -> None:
        self._driver = driver

    def __enter__(self) -> _Driver | None:
        global _DRIVER, _CHOSEN
        self._saved = (_DRIVER, _CHOSEN)
        _DRIVER, _CHOSEN = self._driver, True
        return self._driver

    def __exit__(self, *exc: object) -> None:
        global _DRIVER, _CHOSEN
        _DRIVER, _CHOSEN = self._saved


def _need() -> _Driver:
    d = _driver()
    if d is None or d.device_count() == 0:
        raise CunetError("no CUDA device is visible on this machine (GPU paths need one and cuda-python or torch)")
    return d


def driver_name() -> str | None:
    """"cuda-python", "torch" or a fake's name: which binding answers; None when neither is installed."""
    d = _driver()
    return None if d is None else d.name


def device_count() -> int:
    """Visible CUDA devices; 0 without a driver, a device or a binding. Never raises."""
    d = _driver()
    try:
        return 0 if d is None else int(d.device_count())
    except (CunetError, RuntimeError, OSError):
        return 0


def available() -> bool:
    """True when a CUDA device is visible. TensorRT must never be touched when this is False: without a device it
    can abort the process instead of raising."""
    return device_count() > 0


def device_index(device: str | int | None) -> int:
    """The CUDA index of `device`: None, "cuda" → 0 (the first visible device); "cuda:N" or N → N.

    Raises:
        CunetError: anything else, or an index no visible device has (when a device is visible at all).
    """
    if device is None or device == "cuda":
        index = 0
    elif isinstance(device, int) and not isinstance(device, bool):
        index = device
    elif isinstance(device, str) and device.startswith("cuda:") and device[5:].isdigit():
        index = int(device[5:])
    else:
        raise CunetError(f"device {device!r} is not a CUDA device (use cuda, cuda:N or an index)")
    count = device_count()
    if count and not 0 <= index < count:
        raise CunetError(f"CUDA device {index} does not exist; this machine shows {count} (0..{count - 1})")
    return index


def properties(index: int = 0) -> DeviceProps:
    """Name, compute capability and memory of CUDA device `index`.

    Raises:
        CunetError: no CUDA device, or no device `index`.
    """
    d = _need()
    index = device_index(index)
    name, major, minor, total = d.properties(index)
    return DeviceProps(index, name, f"{major}.{minor}", total)


def memory_info(index: int = 0) -> tuple[int, int]:
    """(free, total) bytes of device `index`, counting every process on it."""
    return _need().mem_get_info(device_index(index))


def process_memory(index: int = 0) -> int | None:
    """Bytes this process holds on device `index` (NVML's per-process accounting), None where that cannot be known:
    no `pynvml`, no NVML driver, or CUDA_VISIBLE_DEVICES renumbering CUDA's indices away from NVML's."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return None
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return None
    mine = [p.usedGpuMemory for p in procs if p.pid == os.getpid() and p.usedGpuMemory is not None]
    return int(sum(mine)) if mine else 0


def select(index: int) -> None:
    """Make device `index` current for this thread (TensorRT builds and runs on the current device)."""
    _need().set_device(device_index(index))


class Stream:
    """A CUDA stream; `handle` is the integer TensorRT's `execute_async_v3` takes."""

    def __init__(self) -> None:
        self._driver = _need()
        self.raw = self._driver.stream_create()

    @property
    def handle(self) -> int:
        return self._driver.stream_handle(self.raw)

    def synchronize(self) -> None:
        self._driver.stream_sync(self.raw)


class Event:
    """A timing CUDA event; `Event.elapsed_ms(start, end)` waits for `end` and returns the time between them."""

    def __init__(self) -> None:
        self._driver = _need()
        self.raw = self._driver.event_create()

    def record(self, stream: Stream) -> None:
        self._driver.event_record(self.raw, stream.raw)

    @staticmethod
    def elapsed_ms(start: "Event", end: "Event") -> float:
        return start._driver.event_elapsed_ms(start.raw, end.raw)


class DeviceBuffer:
    """`nbytes` of device memory on the current device, freed by `free` (idempotent) or when collected."""

    def __init__(self, nbytes: int) -> None:
        self._driver = _need()
        self.nbytes = int(nbytes)
        self.ptr = self._driver.malloc(self.nbytes)

    def upload(self, host: np.ndarray, stream: Stream) -> None:
        """Copy a C-contiguous host array (at most `nbytes`) to the start of the buffer on `stream`."""
        if host.nbytes > self.nbytes:
            raise ValueError(f"{host.nbytes} bytes do not fit a {self.nbytes}-byte device buffer")
        self._driver.htod(self.ptr, np.ascontiguousarray(host), stream.raw)

    def download(self, host: np.ndarray, stream: Stream) -> None:
        """Copy the start of the buffer into the C-contiguous host array `host` on `stream`."""
        if host.nbytes > self.nbytes or not host.flags.c_contiguous:
            raise ValueError("the host array must be C-contiguous and no larger than the device buffer")
        self._driver.dtoh(host, self.ptr, stream.raw)

    def free(self) -> None:
        if self.ptr:
            self._driver.free(self.ptr)
            self.ptr = 0

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:  # interpreter shutdown or a lost context: nothing left to free
            pass


def visible() -> Iterator[DeviceProps]:
    """Every visible device's `DeviceProps`, in index order (none without a device)."""
    for i in range(device_count()):
        yield properties(i)


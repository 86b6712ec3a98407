"""The CUDA device layer cunet's GPU paths share: probe, device queries, memory, buffers, streams and events.

Engines need CUDA but not PyTorch, so everything TensorRT and the GPU reports need from CUDA goes through this one
module. It talks to the CUDA runtime through `cuda-python` (the `gpu` extra) and falls back to torch's CUDA API
where torch is installed and cuda-python is not; neither is imported until a function here is called. Both drivers
implement the same small interface (`_Driver`), so a test can install a fake one with `use_driver` and drive every
caller without a GPU.

The current device is per thread and any call may change it, so every function that needs a device other than the
current one restores the caller's afterwards (`memory_info`), and long-lived users make theirs current before each
use (the TensorRT backend before every inference). Streams and events are destroyed by `close` (a long-lived process
that opens and closes engines would otherwise leak one stream and two events each time).

Device memory "of this process" comes from NVML's per-process accounting where `pynvml` is importable. CUDA and NVML
number devices differently (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER=FASTEST_FIRST), so the NVML device is found by
the CUDA device's UUID, else its PCI bus id, never by index. A process NVML does not list — in a container NVML shows
host PIDs, which the container's PIDs are not — has no attributable usage: None, not 0 MB.
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
    "current",
    "select",
    "format_uuid",
    "format_pci",
    "DeviceBuffer",
    "Stream",
    "Event",
    "driver_name",
    "use_driver",
    "visible",
]


@dataclass(frozen=True)
class DeviceProps:
    """One CUDA device: its index, name, compute capability ("major.minor"), total memory in bytes, UUID
    ("GPU-xxxxxxxx-xxxx-...", as nvidia-smi and NVML print it) and PCI bus id ("00000000:01:00.0"), the last two
    None where the binding does not say."""

    index: int
    name: str
    compute_capability: str
    total_memory: int
    uuid: str | None = None
    pci_bus_id: str | None = None


class _Driver(Protocol):
    """What cunet needs from a CUDA binding; pointers, streams and events are opaque handles (ints where TensorRT
    needs them: `stream_handle`)."""

    name: str

    def device_count(self) -> int: ...
    def properties(self, index: int) -> tuple[str, int, int, int]: ...
    def identity(self, index: int) -> tuple[str | None, str | None]: ...
    def mem_get_info(self, index: int) -> tuple[int, int]: ...
    def current_device(self) -> int: ...
    def set_device(self, index: int) -> None: ...
    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def htod(self, ptr: int, host: np.ndarray, stream: Any) -> None: ...
    def dtoh(self, host: np.ndarray, ptr: int, stream: Any) -> None: ...
    def stream_create(self) -> Any: ...
    def stream_handle(self, stream: Any) -> int: ...
    def stream_sync(self, stream: Any) -> None: ...
    def stream_destroy(self, stream: Any) -> None: ...
    def event_create(self) -> Any: ...
    def event_record(self, event: Any, stream: Any) -> None: ...
    def event_elapsed_ms(self, start: Any, end: Any) -> float: ...
    def event_destroy(self, event: Any) -> None: ...


def format_uuid(raw: bytes) -> str:
    """16 UUID bytes in NVML's and nvidia-smi's spelling: "GPU-" and 8-4-4-4-12 lower-case hex digits."""
    h = bytes(raw).hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def format_pci(domain: int, bus: int, device: int) -> str:
    """A PCI bus id as NVML prints it: 8 hex digits of domain, bus, device, function 0 ("00000000:01:00.0")."""
    return f"{int(domain):08X}:{int(bus):02X}:{int(device):02X}.0"


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

    def identity(self, index: int) -> tuple[str | None, str | None]:
        p = self._ok(self._rt.cudaGetDeviceProperties(index), f"cudaGetDeviceProperties({index})")
        raw = getattr(getattr(p, "uuid", None), "bytes", None)
        uuid = format_uuid(raw) if raw is not None and len(bytes(raw)) == 16 else None
        bus = getattr(p, "pciBusID", None)
        pci = None if bus is None else format_pci(getattr(p, "pciDomainID", 0), bus, getattr(p, "pciDeviceID", 0))
        return uuid, pci

    def mem_get_info(self, index: int) -> tuple[int, int]:
        # cudaMemGetInfo answers for the current device: switch to `index` and back, so the caller's current
        # device (a TensorRT context's, another thread's choice) is what it was.
        before = self.current_device()
        self.set_device(index)
        try:
            free, total = self._ok(self._rt.cudaMemGetInfo(), "cudaMemGetInfo")
        finally:
            self.set_device(before)
        return int(free), int(total)

    def current_device(self) -> int:
        return int(self._ok(self._rt.cudaGetDevice(), "cudaGetDevice"))

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

    def stream_destroy(self, stream: Any) -> None:
        self._ok(self._rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def event_create(self) -> Any:
        return self._ok(self._rt.cudaEventCreate(), "cudaEventCreate")

    def event_destroy(self, event: Any) -> None:
        self._ok(self._rt.cudaEventDestroy(event), "cudaEventDestroy")

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

    def identity(self, index: int) -> tuple[str | None, str | None]:
        p = self._torch.cuda.get_device_properties(index)
        raw = getattr(getattr(p, "uuid", None), "bytes", None)  # torch >= 2.1: a UUID object
        uuid = format_uuid(raw) if raw is not None else None
        bus = getattr(p, "pci_bus_id", None)
        pci = None if bus is None else format_pci(getattr(p, "pci_domain_id", 0), bus, getattr(p, "pci_device_id", 0))
        return uuid, pci

    def mem_get_info(self, index: int) -> tuple[int, int]:
        free, total = self._torch.cuda.mem_get_info(index)  # torch switches to `index` and back itself
        return int(free), int(total)

    def current_device(self) -> int:
        return int(self._torch.cuda.current_device())

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

    def stream_destroy(self, stream: Any) -> None:
        stream.synchronize()  # torch destroys a stream with its last reference, which the caller drops

    def event_create(self) -> Any:
        return self._torch.cuda.Event(enable_timing=True)

    def event_destroy(self, event: Any) -> None:
        event.synchronize()  # likewise freed with its last reference

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
    uuid, pci = d.identity(index)
    return DeviceProps(index, name, f"{major}.{minor}", total, uuid, pci)


def memory_info(index: int = 0) -> tuple[int, int]:
    """(free, total) bytes of device `index`, counting every process on it; the current device is left as it was."""
    return _need().mem_get_info(device_index(index))


def current() -> int:
    """The calling thread's current CUDA device."""
    return _need().current_device()


def _nvml_handle(pynvml: Any, props: DeviceProps) -> Any:
    """The NVML handle of a CUDA device, found by UUID, else PCI bus id (NVML's indices are not CUDA's)."""
    if props.uuid is not None:
        return pynvml.nvmlDeviceGetHandleByUUID(props.uuid)
    if props.pci_bus_id is not None:
        return pynvml.nvmlDeviceGetHandleByPciBusId(props.pci_bus_id)
    return None


def process_memory(index: int = 0) -> int | None:
    """Bytes this process holds on CUDA device `index` (NVML's per-process accounting), None where that cannot be
    known: no `pynvml` or NVML driver, a device NVML cannot be matched to (no UUID or PCI bus id), or this process
    absent from NVML's list (a container: NVML lists host PIDs) — never 0 for "could not tell"."""
    try:
        import pynvml
    except ImportError:
        return None
    props = properties(index)
    try:
        pynvml.nvmlInit()
        try:
            handle = _nvml_handle(pynvml, props)
            procs = [] if handle is None else pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return None
    mine = [p.usedGpuMemory for p in procs if p.pid == os.getpid()]
    if not mine or any(m is None for m in mine):  # not listed (another PID namespace) or no figure from the driver
        return None
    return int(sum(mine))


def select(index: int) -> None:
    """Make device `index` current for this thread (TensorRT builds and runs on the current device)."""
    _need().set_device(device_index(index))


class Stream:
    """A CUDA stream on the current device; `handle` is the integer TensorRT's `execute_async_v3` takes. `close`
    destroys it (idempotent)."""

    def __init__(self) -> None:
        self._driver = _need()
        self.raw = self._driver.stream_create()

    @property
    def handle(self) -> int:
        return self._driver.stream_handle(self.raw)

    def synchronize(self) -> None:
        self._driver.stream_sync(self.raw)

    def close(self) -> None:
        if self.raw is not None:
            self._driver.stream_destroy(self.raw)
            self.raw = None


class Event:
    """A timing CUDA event; `Event.elapsed_ms(start, end)` waits for `end` and returns the time between them.
    `close` destroys it (idempotent)."""

    def __init__(self) -> None:
        self._driver = _need()
        self.raw = self._driver.event_create()

    def record(self, stream: Stream) -> None:
        self._driver.event_record(self.raw, stream.raw)

    @staticmethod
    def elapsed_ms(start: "Event", end: "Event") -> float:
        return start._driver.event_elapsed_ms(start.raw, end.raw)

    def close(self) -> None:
        if self.raw is not None:
            self._driver.event_destroy(self.raw)
            self.raw = None


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


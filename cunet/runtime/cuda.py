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
from cunet.runtime.cuda_drivers import CudaPython, TorchCuda, format_pci, format_uuid

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


_DRIVER: _Driver | None = None
_CHOSEN = False


def _driver() -> _Driver | None:
    """cuda-python's driver, else torch's, else None; chosen once per process (or set by `use_driver`)."""
    global _DRIVER, _CHOSEN
    if not _CHOSEN:
        _CHOSEN = True
        for make in (CudaPython, TorchCuda):
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


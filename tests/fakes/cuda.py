"""A fake of cunet's CUDA device layer driver (`cunet.runtime.cuda._Driver`): two devices of different names and
compute capabilities, host-backed device memory, streams and events, every call recorded; and `FakeCudart`, a fake of
cuda-python's runtime module (the calls `cunet.runtime.cuda_drivers.CudaPython` makes, with CUDA's per-thread current
device), and `FakeNvml`, a fake `pynvml` whose device order is not CUDA's.

Device memory is a bytearray per allocation, so a fake TensorRT engine can really read its input and write its output
through the pointers cunet hands it, and a test can check the bytes that come back. Another process's usage
(`other_process_bytes`) is counted in `mem_get_info`, as the CUDA runtime's `cudaMemGetInfo` does (its free/total are
device-wide, not per process).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FakeDevice:
    name: str
    major: int
    minor: int
    total: int
    dla_cores: int = 0  # read by the fake TensorRT's Builder.num_DLA_cores
    uuid: bytes = b"\x00" * 16
    pci: tuple[int, int, int] = (0, 1, 0)  # domain, bus, device


#: Two devices that differ in every field cunet records: an x86 GPU without DLA and a Jetson-class GPU with two DLA
#: cores (a real Jetson has one GPU; pairing them keeps both kinds in one fake machine).
DEVICES = (
    FakeDevice("NVIDIA GeForce RTX 4090", 8, 9, 24 << 30, uuid=bytes(range(16)), pci=(0, 0x41, 0)),
    FakeDevice("NVIDIA Jetson AGX Orin", 8, 7, 32 << 30, dla_cores=2, uuid=bytes(range(16, 32)), pci=(0, 0x01, 0)),
)


@dataclass
class FakeCudaDriver:
    """The driver interface of `cunet.runtime.cuda`; `calls` is shared with the fake TensorRT to check call order."""

    devices: tuple[FakeDevice, ...] = DEVICES
    calls: list[tuple[str, Any]] = field(default_factory=list)
    other_process_bytes: int = 1000 << 20
    name: str = "fake-cuda"
    current: int = 0
    memory: dict[int, bytearray] = field(default_factory=dict)
    owner: dict[int, int] = field(default_factory=dict)
    live_streams: set[int] = field(default_factory=set)
    live_events: list[dict] = field(default_factory=list)
    _next: int = 0x7F0000000000
    _clock: float = 0.0

    def device_count(self) -> int:
        return len(self.devices)

    def properties(self, index: int) -> tuple[str, int, int, int]:
        d = self.devices[index]  # IndexError like cudaErrorInvalidDevice for a wrong index
        return d.name, d.major, d.minor, d.total

    def identity(self, index: int) -> tuple[str | None, str | None]:
        from cunet.runtime.cuda import format_pci, format_uuid

        d = self.devices[index]
        return format_uuid(d.uuid), format_pci(*d.pci)

    def current_device(self) -> int:
        return self.current

    def used(self, index: int) -> int:
        return sum(len(b) for p, b in self.memory.items() if self.owner[p] == index)

    def mem_get_info(self, index: int) -> tuple[int, int]:
        total = self.devices[index].total
        return total - self.used(index) - self.other_process_bytes, total

    def set_device(self, index: int) -> None:
        if not 0 <= index < len(self.devices):
            raise RuntimeError(f"cudaErrorInvalidDevice: {index}")
        self.calls.append(("cuda.set_device", index))
        self.current = index

    def malloc(self, nbytes: int) -> int:
        ptr = self._next
        self._next += max(nbytes, 1) + 256
        self.memory[ptr] = bytearray(nbytes)
        self.owner[ptr] = self.current
        self.calls.append(("cuda.malloc", nbytes))
        return ptr

    def free(self, ptr: int) -> None:
        del self.memory[ptr]
        del self.owner[ptr]
        self.calls.append(("cuda.free", ptr))

    def htod(self, ptr: int, host: np.ndarray, stream: Any) -> None:
        self.memory[ptr][: host.nbytes] = host.tobytes()
        self.calls.append(("cuda.htod", host.nbytes))

    def dtoh(self, host: np.ndarray, ptr: int, stream: Any) -> None:
        host.reshape(-1).view(np.uint8)[:] = np.frombuffer(bytes(self.memory[ptr][: host.nbytes]), np.uint8)
        self.calls.append(("cuda.dtoh", host.nbytes))

    def read(self, ptr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """What a kernel would see at `ptr` (used by the fake TensorRT's execute)."""
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.frombuffer(bytes(self.memory[ptr][:n]), dtype).reshape(shape)

    def write(self, ptr: int, array: np.ndarray) -> None:
        self.memory[ptr][: array.nbytes] = np.ascontiguousarray(array).tobytes()

    def stream_create(self) -> Any:
        self.calls.append(("cuda.stream_create", None))
        stream = 0x5000 + len(self.calls)
        self.live_streams.add(stream)
        return stream

    def stream_destroy(self, stream: Any) -> None:
        self.live_streams.remove(stream)  # KeyError for a stream destroyed twice, as cudaErrorInvalidResourceHandle
        self.calls.append(("cuda.stream_destroy", stream))

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def stream_sync(self, stream: Any) -> None:
        self.calls.append(("cuda.stream_sync", stream))

    def event_create(self) -> Any:
        event = {"t": None, "id": len(self.calls) + len(self.live_events) * 1000}
        self.live_events.append(event)
        return event

    def event_destroy(self, event: Any) -> None:
        self.live_events.remove(event)  # ValueError for an event destroyed twice
        self.calls.append(("cuda.event_destroy", None))

    def event_record(self, event: Any, stream: Any) -> None:
        self._clock += 1.5  # each recorded event is 1.5 ms after the previous one: elapsed times are checkable
        event["t"] = self._clock
        self.calls.append(("cuda.event_record", stream))

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(end["t"] - start["t"])


class FakeCudart:
    """cuda-python's runtime module (`cuda.bindings.runtime`) as far as `cunet.runtime.cuda_drivers.CudaPython` calls it:
    every call returns (cudaError_t, *values); `cudaMemGetInfo` answers for the current device, `cudaSetDevice`
    changes it (CUDA runtime API: both act on the calling thread's current device)."""

    class cudaError_t:  # noqa: N801 - cuda-python's names
        cudaSuccess = 0
        cudaErrorInvalidDevice = 101

    def __init__(self, devices: tuple[FakeDevice, ...] = DEVICES) -> None:
        self.devices = devices
        self.current = 0
        self.used = {i: (i + 1) << 30 for i in range(len(devices))}  # bytes in use per device (other processes)

    def cudaGetDeviceCount(self):
        return self.cudaError_t.cudaSuccess, len(self.devices)

    def cudaGetDevice(self):
        return self.cudaError_t.cudaSuccess, self.current

    def cudaSetDevice(self, index: int):
        if not 0 <= index < len(self.devices):
            return (self.cudaError_t.cudaErrorInvalidDevice,)
        self.current = index
        return (self.cudaError_t.cudaSuccess,)

    def cudaMemGetInfo(self):
        total = self.devices[self.current].total
        return self.cudaError_t.cudaSuccess, total - self.used[self.current], total


@dataclass
class NvmlProcess:
    pid: int
    usedGpuMemory: int | None  # noqa: N815 - pynvml's name


class FakeNvml:
    """`pynvml` as `cunet.runtime.cuda.process_memory` calls it. NVML enumerates devices in PCI bus order, CUDA by
    default fastest first: here NVML index 0 is CUDA device 1 (the lower bus id) and the other way round, so code
    that uses one's index for the other reads the wrong device. `processes` maps a device UUID to its processes."""

    class NVMLError(Exception):
        pass

    def __init__(self, processes: dict[str, list[NvmlProcess]], devices: tuple[FakeDevice, ...] = DEVICES) -> None:
        from cunet.runtime.cuda import format_pci, format_uuid

        order = sorted(devices, key=lambda d: d.pci)  # PCI bus order
        self.handles = [{"uuid": format_uuid(d.uuid), "pci": format_pci(*d.pci)} for d in order]
        self.processes = processes
        self.calls: list[str] = []

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")

    def nvmlShutdown(self) -> None:
        self.calls.append("nvmlShutdown")

    def nvmlDeviceGetHandleByIndex(self, index: int):
        return self.handles[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str):
        self.calls.append("nvmlDeviceGetHandleByUUID")
        for h in self.handles:
            if h["uuid"] == uuid:
                return h
        raise self.NVMLError("NVML_ERROR_NOT_FOUND")

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str):
        for h in self.handles:
            if h["pci"] == bus_id:
                return h
        raise self.NVMLError("NVML_ERROR_NOT_FOUND")

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return list(self.processes.get(handle["uuid"], []))

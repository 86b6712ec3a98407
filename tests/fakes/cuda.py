"""A fake of cunet's CUDA device layer driver (`cunet.runtime.cuda._Driver`): two devices of different names and
compute capabilities, host-backed device memory, streams and events, every call recorded.

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


#: Two devices that differ in every field cunet records: an x86 GPU without DLA and a Jetson-class GPU with two DLA
#: cores (a real Jetson has one GPU; pairing them keeps both kinds in one fake machine).
DEVICES = (
    FakeDevice("NVIDIA GeForce RTX 4090", 8, 9, 24 << 30),
    FakeDevice("NVIDIA Jetson AGX Orin", 8, 7, 32 << 30, dla_cores=2),
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
    _next: int = 0x7F0000000000
    _clock: float = 0.0

    def device_count(self) -> int:
        return len(self.devices)

    def properties(self, index: int) -> tuple[str, int, int, int]:
        d = self.devices[index]  # IndexError like cudaErrorInvalidDevice for a wrong index
        return d.name, d.major, d.minor, d.total

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
        return 0x5000 + len(self.calls)

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def stream_sync(self, stream: Any) -> None:
        self.calls.append(("cuda.stream_sync", stream))

    def event_create(self) -> Any:
        return {"t": None}

    def event_record(self, event: Any, stream: Any) -> None:
        self._clock += 1.5  # each recorded event is 1.5 ms after the previous one: elapsed times are checkable
        event["t"] = self._clock
        self.calls.append(("cuda.event_record", stream))

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(end["t"] - start["t"])

"""The two CUDA bindings behind `cunet.runtime.cuda`'s driver interface: cuda-python's runtime API and torch's CUDA.

Both implement `cunet.runtime.cuda._Driver`; neither module is imported before a driver is made (cuda-python when
installed, else torch, else none). Written against the documented APIs: cuda-python's `cuda.bindings.runtime`
(every call returns `(cudaError_t, *values)`; `cudaMemGetInfo` answers for the calling thread's current device) and
`torch.cuda`. The UUID and PCI bus id are spelled as NVML spells them, so a CUDA device can be found in NVML.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cunet.errors import CunetError

__all__ = ["CudaPython", "TorchCuda", "format_uuid", "format_pci"]


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


class CudaPython:
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


class TorchCuda:
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

"""cunet's CUDA device layer: the probe and queries without a device, device indices, the buffer/stream/event
wrappers over the fake driver, cuda-python's driver over a fake runtime module, and NVML attribution over a fake
`pynvml` (tests/fakes/cuda.py; the real drivers need a GPU: bench/gpu_check.py)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from cunet.errors import CunetError
from cunet.runtime import cuda


def _fake_cuda_module():
    import importlib

    return importlib.import_module("cunet_test_fakes.cuda")


def test_no_binding_means_no_device():
    with cuda.use_driver(None):
        assert cuda.available() is False and cuda.device_count() == 0 and cuda.driver_name() is None
        assert list(cuda.visible()) == []
        with pytest.raises(CunetError, match="no CUDA device is visible"):
            cuda.properties(0)
        assert cuda.device_index("cuda:3") == 3  # nothing to check an index against


def test_device_index_forms(fake_gpu):
    assert [cuda.device_index(d) for d in (None, "cuda", "cuda:1", 1)] == [0, 0, 1, 1]
    for bad in ("cpu", "cuda:x", "gpu0", True):
        with pytest.raises(CunetError, match="is not a CUDA device"):
            cuda.device_index(bad)
    with pytest.raises(CunetError, match="CUDA device 2 does not exist; this machine shows 2"):
        cuda.device_index(2)


def test_queries_on_two_devices(fake_gpu, monkeypatch):
    assert [(d.index, d.name, d.compute_capability) for d in cuda.visible()] == [
        (0, "NVIDIA GeForce RTX 4090", "8.9"), (1, "NVIDIA Jetson AGX Orin", "8.7")]
    assert cuda.properties(1).uuid == "GPU-10111213-1415-1617-1819-1a1b1c1d1e1f"
    assert cuda.properties(0).pci_bus_id == "00000000:41:00.0"
    free, total = cuda.memory_info(1)
    assert total - free == 1000 << 20  # the other process
    monkeypatch.setitem(sys.modules, "pynvml", None)  # pynvml not installed: an import error
    assert cuda.process_memory(0) is None  # unknown, not a guess
    cuda.select(1)
    assert fake_gpu.driver.current == 1 and cuda.current() == 1


def test_buffers_streams_events_round_trip(fake_gpu):
    stream = cuda.Stream()
    buf = cuda.DeviceBuffer(64)
    data = np.arange(16, dtype=np.float32)
    start, end = cuda.Event(), cuda.Event()
    start.record(stream)
    buf.upload(data, stream)
    end.record(stream)
    back = np.empty(16, np.float32)
    buf.download(back, stream)
    stream.synchronize()
    np.testing.assert_array_equal(back, data)
    assert cuda.Event.elapsed_ms(start, end) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="do not fit"):
        buf.upload(np.zeros(17, np.float32), stream)
    assert fake_gpu.driver.used(0) == 64
    buf.free()
    buf.free()
    assert fake_gpu.driver.used(0) == 0


def test_memory_info_leaves_the_current_device_as_it_was(monkeypatch):
    """cudaMemGetInfo answers for the current device: asking about device 0 must not leave device 0 current for
    the caller, whose engine (and its next allocation) lives on device 1 (issue 23, item 9)."""
    fakes = _fake_cuda_module()
    runtime = fakes.FakeCudart()
    from cunet.runtime import cuda_drivers

    monkeypatch.setattr(cuda_drivers, "_cudart", lambda: runtime)
    driver = cuda_drivers.CudaPython()
    with cuda.use_driver(driver):
        cuda.select(1)
        free, total = cuda.memory_info(0)
        assert (free, total) == (runtime.devices[0].total - (1 << 30), runtime.devices[0].total)
        assert runtime.current == 1 and cuda.current() == 1


@pytest.fixture
def nvml(fake_gpu, monkeypatch):
    """A fake pynvml over the fake GPUs, in PCI bus order (the reverse of the fake CUDA order)."""
    fakes = _fake_cuda_module()

    def install(processes):
        module = fakes.FakeNvml(processes)
        monkeypatch.setitem(sys.modules, "pynvml", module)
        return module

    return install


def test_nvml_finds_the_cuda_device_by_uuid_not_by_index(nvml):
    orin, rtx = (cuda.properties(i).uuid for i in (1, 0))
    procs = _fake_cuda_module().NvmlProcess
    module = nvml({orin: [procs(os.getpid(), 300 << 20), procs(1, 5 << 30)], rtx: [procs(os.getpid(), 70 << 20)]})
    # NVML index 0 is CUDA device 1 here; by UUID each CUDA device gets its own figure
    assert module.nvmlDeviceGetHandleByIndex(0)["uuid"] == orin
    assert cuda.process_memory(1) == 300 << 20 and cuda.process_memory(0) == 70 << 20
    assert "nvmlDeviceGetHandleByUUID" in module.calls


def test_nvml_without_this_pid_is_unknown_not_zero(nvml):
    """In a container NVML lists host PIDs: this process is not among them, so its usage is unknown (None)."""
    procs = _fake_cuda_module().NvmlProcess
    nvml({cuda.properties(0).uuid: [procs(123456, 900 << 20)]})
    assert cuda.process_memory(0) is None
    nvml({cuda.properties(0).uuid: [procs(os.getpid(), None)]})  # listed without a figure (no accounting)
    assert cuda.process_memory(0) is None


def test_streams_and_events_are_destroyed(fake_gpu):
    stream, start = cuda.Stream(), cuda.Event()
    assert len(fake_gpu.driver.live_streams) == 1 and len(fake_gpu.driver.live_events) == 1
    stream.close()
    start.close()
    stream.close()  # idempotent
    assert not fake_gpu.driver.live_streams and not fake_gpu.driver.live_events

"""cunet's CUDA device layer: the probe and queries without a device, device indices, and the buffer/stream/event
wrappers over the fake driver (tests/fakes/cuda.py; the real drivers need a GPU: bench/gpu_check.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cunet.errors import CunetError
from cunet.runtime import cuda


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


def test_queries_on_two_devices(fake_gpu):
    assert [(d.index, d.name, d.compute_capability) for d in cuda.visible()] == [
        (0, "NVIDIA GeForce RTX 4090", "8.9"), (1, "NVIDIA Jetson AGX Orin", "8.7")]
    free, total = cuda.memory_info(1)
    assert total - free == 1000 << 20  # the other process
    assert cuda.process_memory(0) is None  # no pynvml here: unknown, not a guess
    cuda.select(1)
    assert fake_gpu.driver.current == 1


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

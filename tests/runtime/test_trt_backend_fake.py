"""The TensorRT engine backend driven through the fake TensorRT 10/11 and the fake two-device CUDA machine.

Engines are built by `compile_engine` on the fake (tests/fakes); the fake's `execute_async_v3` runs the engine's
ONNX bytes with ONNX Runtime's CPU provider on the bytes at the input's device address, so the heatmaps that come
back are compared with ONNX Runtime on the same ONNX model (tolerance 0: the same CPU kernels on the same input).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cunet.compile.tensorrt import compile_engine
from cunet.errors import CunetError
from cunet.runtime import open_predictor
from cunet.runtime.trt_backend import TensorRTBackend

S, K = 64, 68


def _tiny(path: Path) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_tiny_trt", Path(__file__).parents[1] / "compile" /
                                                  "test_tensorrt_fake.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tiny_model(path)


def _reference(model: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


@pytest.fixture
def model(tmp_path):
    return _tiny(tmp_path / "face.onnx")


def _x(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, S, S)).astype(np.float32)


def test_run_sequence_and_results(fake_gpu, model, tmp_path):
    engine = tmp_path / "e.engine"
    compile_engine(model, engine, "fp32", batch="1:4:8", device=1)
    with open_predictor(engine, device="cuda:1") as p:
        assert p.provider == "tensorrt-cuda:1"
        start = len(fake_gpu.calls)
        x = _x(3)
        out = p.predict_heatmaps(x)
    np.testing.assert_array_equal(out, _reference(model, x))
    run = [n for n in fake_gpu.names()[start:] if n not in ("cuda.malloc", "cuda.free")]
    # the engine's device made current first; on close its events and stream destroyed on that device
    assert run == ["cuda.set_device", "IExecutionContext.set_input_shape", "IExecutionContext.set_tensor_address",
                   "IExecutionContext.set_tensor_address", "cuda.htod", "cuda.event_record",
                   "IExecutionContext.execute_async_v3", "cuda.event_record", "cuda.dtoh", "cuda.stream_sync",
                   "cuda.set_device", "cuda.event_destroy", "cuda.event_destroy", "cuda.stream_destroy"]
    assert ("IExecutionContext.set_input_shape", ("image", (3, 3, S, S))) in fake_gpu.calls
    assert ("cuda.set_device", 1) in fake_gpu.calls


def test_pads_to_the_profile_minimum(fake_gpu, model, tmp_path):
    engine = tmp_path / "e.engine"
    compile_engine(model, engine, "fp32", batch="4:4:4")
    x = _x(1)
    with open_predictor(engine) as p:
        out = p.predict_heatmaps(x)
    assert out.shape == (1, K, S // 4, S // 4)
    np.testing.assert_array_equal(out, _reference(model, x))
    assert ("IExecutionContext.set_input_shape", ("image", (4, 3, S, S))) in fake_gpu.calls


def test_split_batches_sum_device_time(fake_gpu, model, tmp_path):
    engine = tmp_path / "e.engine"
    compile_engine(model, engine, "fp32", batch="1:2:4")
    x = _x(10)
    with open_predictor(engine) as p:
        out = p.predict_heatmaps(x)
        # 3 chunks (4 + 4 + 2), each 1.5 ms between its two events on the fake clock
        assert p.device_ms == pytest.approx(4.5)
    np.testing.assert_array_equal(out, _reference(model, x))


def test_plain_cuda_device_means_device_0(fake_gpu, model, tmp_path):
    # Defect 4: "cuda" (no index) used to go to torch.cuda.set_device, which needs an index.
    engine = tmp_path / "e.engine"
    compile_engine(model, engine, "fp32", batch="1:1:2", device=0)
    backend = TensorRTBackend(engine, device="cuda")
    backend.open()
    assert backend.provider == "tensorrt-cuda:0"
    assert backend.infer(_x(2)).shape == (2, K, S // 4, S // 4)
    backend.close()


def test_engine_from_the_other_gpu_is_refused(fake_gpu, model, tmp_path):
    engine = tmp_path / "e.engine"
    compile_engine(model, engine, "fp32", batch="1:1:2", device=0)
    with pytest.raises(CunetError, match="built on GPU 'NVIDIA GeForce RTX 4090' but this machine has 'NVIDIA Jetson"):
        with open_predictor(engine, device="cuda:1"):
            pass
    with pytest.raises(CunetError, match="CUDA device 2 does not exist"):
        open_predictor(engine, device="cuda:2")


@pytest.mark.parametrize("failing, message", [
    ("create_execution_context", "could not create an execution context"),
    ("set_input_shape", "refused input shape"),
    ("execute_async_v3", "execute_async_v3 failed"),
])
def test_failures_reported_by_return_value(fake_gpu, model, tmp_path, failing, message):
    engine = tmp_path / "e.engine"
    compile_engine(model, engine, "fp32", batch="1:1:2")
    fake_gpu.state.fail.add(failing)
    with pytest.raises(CunetError, match=message):
        with open_predictor(engine) as p:
            p.predict_heatmaps(_x(1))


def test_buffers_are_freed_on_close(fake_gpu, model, tmp_path):
    engine = tmp_path / "e.engine"
    compile_engine(model, engine, "fp32", batch="1:2:4")
    with open_predictor(engine) as p:
        p.predict_heatmaps(_x(2))
        assert fake_gpu.driver.used(0) > 0
    assert fake_gpu.driver.used(0) == 0


def test_profile_device_memory_and_gpu_name(fake_gpu, model, tmp_path, monkeypatch):
    import os
    import sys

    from cunet.evaluate.profile import profile

    engine = tmp_path / "e.engine"
    compile_engine(model, engine, "fp32", batch="1:2:4", device=1)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML: the process's own usage cannot be attributed
    report = profile(engine, batch_sizes=(2,), warmup=0, iters=2, device="cuda:1")
    row = report["results"][0]
    # This process's buffers only (input 2x3x64x64 + output 2x68x16x16 float32), not the other process's 1000 MB.
    assert row["device_memory_mb"] == pytest.approx((2 * 3 * S * S + 2 * K * 16 * 16) * 4 / 1e6)
    assert row["device_memory_scope"] == "change of the device's used memory since open"
    assert row["device_peak_mb"] is None  # not attributable: unknown, never 0
    assert report["environment"]["device"] == "cuda:1 (NVIDIA Jetson AGX Orin)" and report["device"] == "cuda:1"
    assert row["device_inference_ms"]["mean"] == pytest.approx(1.5)
    import importlib

    from cunet.runtime import cuda

    fakes = importlib.import_module("cunet_test_fakes.cuda")  # NVML that lists this process on the engine's GPU
    nvml = fakes.FakeNvml({cuda.properties(1).uuid: [fakes.NvmlProcess(os.getpid(), 42 << 20)]})
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    report = profile(engine, batch_sizes=(2,), warmup=0, iters=2, device="cuda:1")
    assert report["results"][0]["device_peak_mb"] == pytest.approx((42 << 20) / 1e6)


def test_infer_makes_its_device_current_again(fake_gpu, model, tmp_path):
    """A second engine, a memory query or another thread can leave another device current; the engine must run
    (and allocate) on its own device every time (issue 23, item 9)."""
    from cunet.runtime import cuda

    engine = tmp_path / "e.engine"
    compile_engine(model, engine, "fp32", batch="1:2:4", device=1)
    with open_predictor(engine, device="cuda:1") as p:
        cuda.select(0)  # what another engine or thread on device 0 does
        out = p.predict_heatmaps(_x(2))
        np.testing.assert_array_equal(out, _reference(model, _x(2)))
        assert fake_gpu.driver.used(1) > 0 and fake_gpu.driver.used(0) == 0  # buffers on the engine's device


def test_open_and_close_leak_no_stream_or_event(fake_gpu, model, tmp_path):
    engine = tmp_path / "e.engine"
    compile_engine(model, engine, "fp32", batch="1:2:4")
    for _ in range(3):  # a long-lived process opening and closing engines
        with open_predictor(engine) as p:
            p.predict_heatmaps(_x(1))
    assert fake_gpu.driver.live_streams == set() and fake_gpu.driver.live_events == []
    assert fake_gpu.driver.used(0) == 0


def test_manifest_device_query(fake_gpu):
    from cunet.runtime.manifest import current_device

    info = current_device("10.13.0.35", 1)
    assert (info.gpu_name, info.compute_capability) == ("NVIDIA Jetson AGX Orin", "8.7")

"""ONNX Runtime GPU provider options, checked on CPU: they are plain data handed to `InferenceSession`.

The provider list is faked (`ort_available_providers`), the options are what `OrtBackend` would hand over; no session
is opened with a GPU provider here (that needs onnxruntime-gpu on a GPU: bench/gpu_check.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from cunet.errors import CunetError
from cunet.runtime import cuda, ort_backend
from cunet.runtime.ort_backend import CPU, CUDA, TRT, OrtBackend


@pytest.fixture
def gpu_ort(monkeypatch, tmp_path):
    monkeypatch.setattr(ort_backend, "ort_available_providers", lambda: [TRT, CUDA, CPU])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    model = tmp_path / "models" / "face.int8.onnx"
    model.parent.mkdir()
    model.write_bytes(b"not parsed here")
    return model


def test_trt_options_and_engine_cache_in_the_user_cache(gpu_ort, tmp_path):
    b = OrtBackend(gpu_ort, "ort-trt", device_id=1, precision="int8", recipe="tensorrt")
    opts = dict(b._provider_options())
    digest = hashlib.sha256(b"not parsed here").hexdigest()[:16]
    cache = str(tmp_path / "xdg" / "cunet" / "ort-trt" / f"{digest}-cuda1")
    assert opts[TRT] == {"device_id": 1, "trt_int8_enable": True, "trt_fp16_enable": False,
                         "trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
                         "trt_timing_cache_enable": True, "trt_timing_cache_path": cache}
    assert opts[CUDA] == {"device_id": 1} and opts[CPU] == {}
    assert not cache.startswith(str(gpu_ort.parent))


def test_cache_is_keyed_by_device_and_gpu(gpu_ort, monkeypatch):
    from cunet.runtime import cuda

    a = dict(OrtBackend(gpu_ort, "ort-trt", device_id=0)._provider_options())[TRT]["trt_engine_cache_path"]
    monkeypatch.setattr(cuda, "available", lambda: True)
    monkeypatch.setattr(cuda, "properties", lambda i: cuda.DeviceProps(i, "NVIDIA Jetson AGX Orin", "8.7", 1))
    b = dict(OrtBackend(gpu_ort, "ort-trt", device_id=0)._provider_options())[TRT]["trt_engine_cache_path"]
    assert a.endswith("-cuda0") and b.endswith("-cuda0-nvidia-jetson-agx-orin")


def test_auto_never_hands_a_cpu_recipe_model_to_tensorrt(gpu_ort):
    b = OrtBackend(gpu_ort, "auto", precision="int8", recipe="cpu")
    assert [p for p, _ in b._provider_options()] == [CUDA, CPU]
    assert "recipe cpu" in b.note
    assert OrtBackend(gpu_ort, "auto", precision="int8", recipe="tensorrt")._chain == (TRT, CUDA, CPU)
    with pytest.raises(CunetError, match="ort-trt: an INT8 model of --recipe cpu"):
        OrtBackend(gpu_ort, "ort-trt", precision="int8", recipe="cpu")


def test_tensorrt_11_needs_onnxruntime_1_27(gpu_ort, monkeypatch):
    versions = {"tensorrt": "11.1.0.106", "onnxruntime-gpu": "1.23.2"}
    monkeypatch.setattr(ort_backend, "_dist_version", lambda *names: next(
        (versions[n] for n in names if n in versions), None))
    b = OrtBackend(gpu_ort, "auto")
    assert b._chain == (CUDA, CPU) and "needs onnxruntime-gpu >= 1.27" in b.note
    versions["onnxruntime-gpu"] = "1.27.0"
    assert OrtBackend(gpu_ort, "auto")._chain == (TRT, CUDA, CPU)


def test_engine_cache_is_emptied_when_tensorrt_or_the_gpu_changed(gpu_ort, fake_gpu, monkeypatch):
    """ONNX Runtime names its TensorRT-EP engines by the model alone; after a TensorRT upgrade or on another GPU
    they would be reused and refused. The stamp catches it: the folder is emptied, with a line saying why."""
    digest = hashlib.sha256(b"not parsed here").hexdigest()
    versions = {"tensorrt": "10.13.0.35", "onnxruntime-gpu": "1.27.0"}
    monkeypatch.setattr(ort_backend, "_dist_version", lambda *names: next(
        (versions[n] for n in names if n in versions), None))
    folder, why = ort_backend.prepare_trt_cache(digest, 1)
    assert why is None and folder.name.endswith("-cuda1-nvidia-jetson-agx-orin")
    (folder / "TensorrtExecutionProvider_model.engine").write_bytes(b"engine of 10.13")
    assert ort_backend.prepare_trt_cache(digest, 1) == (folder, None)  # same TensorRT and GPU: kept
    assert (folder / "TensorrtExecutionProvider_model.engine").is_file()
    versions["tensorrt"] = "10.14.1.48"
    folder2, why = ort_backend.prepare_trt_cache(digest, 1)
    assert folder2 == folder and "tensorrt '10.13.0.35' → '10.14.1.48'" in why
    assert [p.name for p in folder.iterdir()] == [ort_backend.CACHE_STAMP]
    assert json.loads((folder / ort_backend.CACHE_STAMP).read_text())["gpu_uuid"] == cuda.properties(1).uuid
    # another card of the same model (same name and folder), another UUID
    (folder / "TensorrtExecutionProvider_model.engine").write_bytes(b"engine of that card")
    fake_gpu.driver.devices = (fake_gpu.driver.devices[0],
                               dataclasses.replace(fake_gpu.driver.devices[1], uuid=bytes(range(100, 116))))
    _, why = ort_backend.prepare_trt_cache(digest, 1)
    assert why.endswith("built with gpu_uuid 'GPU-10111213-1415-1617-1819-1a1b1c1d1e1f' → "
                        "'GPU-64656667-6869-6a6b-6c6d-6e6f70717273'") and "\n" not in why

"""ONNX Runtime GPU provider options, checked on CPU: they are plain data handed to `InferenceSession`.

The provider list is faked (`ort_available_providers`), the options are what `OrtBackend` would hand over; no session
is opened with a GPU provider here (that needs onnxruntime-gpu on a GPU: bench/gpu_check.py).
"""

from __future__ import annotations

import hashlib

import pytest

from cunet.errors import CunetError
from cunet.runtime import ort_backend
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

"""`compile_engine` driven through the recording fake TensorRT 10 and 11 and the fake two-device CUDA machine.

Each test runs once per TensorRT version (the `fake_gpu` fixture, tests/fakes). The model is a real ONNX file (one
4x4/4 convolution, "image" [N,3,64,64] → "heatmaps" [N,68,16,16], cunet metadata); the fake parses it with onnx, so
a model TensorRT's parser would reject is rejected here too. What only a GPU proves (kernels, real numerics, real
TensorRT error texts) is listed in the README's "Never run on real hardware yet".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cunet.compile.tensorrt import compile_engine
from cunet.errors import CunetError
from cunet.runtime.manifest import read_manifest
from cunet.runtime.meta import ModelMeta, write_onnx_meta

K, S = 68, 64
META = ModelMeta(task="face", num_landmarks=K, landmark_names=tuple(f"p{i}" for i in range(K)), flip_pairs=((0, 16),),
                 input_size=S, heatmap_stride=4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), config={"layers": 1})


def tiny_model(path: Path, batch: int | str = "N", seed: int = 0) -> Path:
    """A one-conv FP32 cunet model with a dynamic ("N") or static batch."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).standard_normal((K, 3, 4, 4)).astype(np.float32) * 0.1
    conv = helper.make_node("Conv", ["image", "w"], ["heatmaps"], name="conv", kernel_shape=[4, 4], strides=[4, 4])
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, S, S])
    heatmaps = helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [batch, K, S // 4, S // 4])
    graph = helper.make_graph([conv], "tiny", [image], [heatmaps], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    write_onnx_meta(model, META)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def model(tmp_path):
    return tiny_model(tmp_path / "face.onnx")


def test_builds_on_the_requested_device_and_names_it(fake_gpu, model, tmp_path):
    # Defect 1: device=N must be current before trt.Builder, and the manifest must name device N's GPU.
    manifest = compile_engine(model, tmp_path / "e.engine", "fp32", batch="1:4:8", device=1)
    names = fake_gpu.names()
    assert ("cuda.set_device", 1) in fake_gpu.calls
    assert names.index("cuda.set_device") < names.index("Builder")
    assert ("Builder", 1) in fake_gpu.calls
    assert (manifest.gpu_name, manifest.compute_capability) == ("NVIDIA Jetson AGX Orin", "8.7")
    assert read_manifest(tmp_path / "e.engine").gpu_name == "NVIDIA Jetson AGX Orin"


def test_creation_flags_call_order_and_fp32_without_tf32(fake_gpu, model, tmp_path):
    manifest = compile_engine(model, tmp_path / "e.engine", "fp32", batch="2:4:8", workspace_mb=64)
    strong = 1 << int(fake_gpu.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert strong == (2 if fake_gpu.trt.__version__.startswith("10.") else 1)  # the bit moved in TensorRT 11
    assert ("Builder.create_network", strong) in fake_gpu.calls
    assert ("IBuilderConfig.clear_flag", "TF32") in fake_gpu.calls
    assert ("IBuilderConfig.set_memory_pool_limit", ("WORKSPACE", 64 << 20)) in fake_gpu.calls
    assert ("IOptimizationProfile.set_shape", ("image", (2, 3, S, S), (4, 3, S, S), (8, 3, S, S))) in fake_gpu.calls
    order = ["cuda.set_device", "Builder", "Builder.create_network", "OnnxParser.parse",
             "IOptimizationProfile.set_shape", "IBuilderConfig.add_optimization_profile",
             "Builder.build_serialized_network"]
    names = fake_gpu.names()
    assert [n for n in names if n in order] == order
    assert manifest.strongly_typed and manifest.builder_flags == () and manifest.tf32 is False
    assert manifest.shapes == {"min": [2, 3, S, S], "opt": [4, 3, S, S], "max": [8, 3, S, S]}
    header = json.loads((tmp_path / "e.engine").read_bytes().split(b"\n")[1])
    assert "TF32" not in header["flags"]


def test_fp16_from_fp32_weak_flag_on_10_typed_model_on_11(fake_gpu, model, tmp_path):
    from cunet.compile.tensorrt import fp16_converter

    v11 = fake_gpu.trt.__version__.startswith("11.")
    if v11 and fp16_converter() is None:
        pytest.skip("TensorRT 11 needs an FP16-typed model and no float16 converter is installed")
    manifest = compile_engine(model, tmp_path / "e.engine", "fp16", batch="1:1:2")
    if v11:
        assert manifest.strongly_typed and ("IBuilderConfig.set_flag", "FP16") not in fake_gpu.calls
    else:
        assert ("Builder.create_network", 0) in fake_gpu.calls  # weakly typed: the FP16 flag does the work
        assert ("IBuilderConfig.set_flag", "FP16") in fake_gpu.calls
        assert manifest.builder_flags == ("FP16",) and not manifest.strongly_typed
    assert manifest.tf32 is True and manifest.precision == "fp16"


def test_timing_cache_reused_on_the_same_gpu_refused_from_another(fake_gpu, model, tmp_path):
    cache = tmp_path / "trt.cache"
    compile_engine(model, tmp_path / "a.engine", "fp32", batch="1:1:1", timing_cache=cache, device=0)
    first = cache.read_bytes()
    assert b"RTX 4090" in first
    compile_engine(model, tmp_path / "b.engine", "fp32", batch="1:1:1", timing_cache=cache, device=0)
    assert ("IBuilderConfig.create_timing_cache", len(first)) in fake_gpu.calls
    # Defect 2: a cache from another GPU makes set_timing_cache return False; before, the build went on and
    # `get_timing_cache()` (None) crashed after it. Now: refused in one line before the build, nothing lost.
    builds = fake_gpu.names().count("Builder.build_serialized_network")
    with pytest.raises(CunetError, match="rejects this timing cache") as e:
        compile_engine(model, tmp_path / "c.engine", "fp32", batch="1:1:1", timing_cache=cache, device=1)
    assert "\n" not in str(e.value)
    assert fake_gpu.names().count("Builder.build_serialized_network") == builds
    assert cache.read_bytes() == first and not (tmp_path / "c.engine").exists()


def test_static_batch_model(fake_gpu, tmp_path):
    static = tiny_model(tmp_path / "static.onnx", batch=1)
    with pytest.raises(CunetError, match="batch dimension is fixed at 1, so --batch 1:8:32"):
        compile_engine(static, tmp_path / "s.engine", "fp32")
    assert compile_engine(static, tmp_path / "s.engine", "fp32", batch="1").shapes["max"] == [1, 3, S, S]


@pytest.mark.parametrize("failing, message", [
    ("add_optimization_profile", "rejects the batch profile"),
    ("build", "could not build an engine"),
])
def test_refusals_become_one_line(fake_gpu, model, tmp_path, failing, message):
    fake_gpu.state.fail.add(failing)
    with pytest.raises(CunetError, match=message) as e:
        compile_engine(model, tmp_path / "e.engine", "fp32", batch="1:2:4")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "e.engine").exists() and not (tmp_path / "e.engine.manifest.json").exists()


def test_dla(fake_gpu, model, tmp_path):
    with pytest.raises(CunetError, match="DLA has no FP32"):
        compile_engine(model, tmp_path / "e.engine", "fp32", dla_core=0)
    assert "Builder" not in fake_gpu.names()
    if fake_gpu.trt.__version__.startswith("11."):  # the fake's 11.1: TensorRT 11.0-11.3 have no DLA at all
        for device in (0, 1):
            with pytest.raises(CunetError) as e:
                compile_engine(model, tmp_path / "e.engine", "fp16", batch="1:1:1", dla_core=0, device=device)
            assert str(e.value).startswith("--dla 0: TensorRT 11.1.0.106 has no DLA support") and \
                "\n" not in str(e.value)
        assert "Builder" not in fake_gpu.names() and not (tmp_path / "e.engine").exists()
        return
    with pytest.raises(CunetError, match="this device has no DLA"):
        compile_engine(model, tmp_path / "e.engine", "fp16", batch="1:1:1", dla_core=0, device=0)
    with pytest.raises(CunetError, match="has DLA cores 0..1"):
        compile_engine(model, tmp_path / "e.engine", "fp16", batch="1:1:1", dla_core=2, device=1)
    manifest = compile_engine(model, tmp_path / "e.engine", "fp16", batch="1:1:1", dla_core=1, device=1)
    assert manifest.dla_core == 1 and read_manifest(tmp_path / "e.engine").dla_core == 1
    assert ("IBuilderConfig.set_flag", "GPU_FALLBACK") in fake_gpu.calls
    header = json.loads((tmp_path / "e.engine").read_bytes().split(b"\n")[1])
    assert header["dla_core"] == 1


def test_compile_command_dla_flag(fake_gpu, model, tmp_path):
    from click.testing import CliRunner

    from cunet.cli import cli

    result = CliRunner().invoke(cli, ["compile", str(model), "--precision", "fp32", "-o", str(tmp_path / "e.engine"),
                                       "--batch", "1", "--dla", "0", "--json"])
    assert result.exit_code != 0 and "DLA has no FP32" in str(result.exception)
    result = CliRunner().invoke(cli, ["compile", str(model), "--precision", "fp32", "-o", str(tmp_path / "e.engine"),
                                       "--batch", "1", "--device", "1", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["gpu_name"] == "NVIDIA Jetson AGX Orin" and doc["dla_core"] is None and doc["tf32"] is False


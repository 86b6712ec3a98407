"""TensorRT engines: everything around the TensorRT calls, checked on CPU.

The models here are real ONNX files built node by node (a 4x4/4 convolution from "image" [N,3,64,64] to
"heatmaps" [N,68,16,16], with cunet metadata), so these tests need no exporter run. The one test that builds and
loads a real engine runs only where TensorRT and a CUDA device exist.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cunet.compile.tensorrt import (
    BatchProfile,
    build_manifest,
    calibration_sha256,
    fp16_converter,
    inspect_source,
    model_precision,
    to_fp16_onnx,
    unavailable_reason,
)
from cunet.errors import CunetError
from cunet.io import sha256_file
from cunet.runtime.manifest import (
    DeviceInfo,
    EngineManifest,
    check_compatible,
    manifest_path,
    read_manifest,
    write_manifest,
)
from cunet.runtime.meta import ModelMeta, read_engine_meta, write_onnx_meta

K, S = 68, 64
META = ModelMeta(task="face", num_landmarks=K, landmark_names=tuple(f"p{i}" for i in range(K)), flip_pairs=((0, 16),),
                 input_size=S, heatmap_stride=4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), config={"layers": 1})
JETSON = DeviceInfo("10.3.0", "Orin", "8.7")
NO_TRT = unavailable_reason()


def _model(path: Path, qdq: bool = False, act_scale: float = 0.02, zero_point: int = 0, seed: int = 0) -> Path:
    """A one-conv cunet model; with `qdq`, TensorRT-style Q/DQ on the input and per-channel int8 weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((K, 3, 4, 4)).astype(np.float32) * 0.1
    inits, nodes = [], []
    x_name, w_name = "image", "w"
    if qdq:
        w_scale = (np.abs(w).reshape(K, -1).max(axis=1) / 127).astype(np.float32)
        w_q = np.round(w / w_scale[:, None, None, None]).astype(np.int8)
        inits += [numpy_helper.from_array(np.float32(act_scale), "x_scale"),
                  numpy_helper.from_array(np.int8(zero_point), "x_zp"),
                  numpy_helper.from_array(w_q, "w_q"), numpy_helper.from_array(w_scale, "w_scale"),
                  numpy_helper.from_array(np.zeros(K, np.int8), "w_zp")]
        nodes += [helper.make_node("QuantizeLinear", ["image", "x_scale", "x_zp"], ["x_q"], name="in/Q"),
                  helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"], name="in/DQ"),
                  helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], name="w/DQ", axis=0)]
        x_name = "x_dq"
    else:
        inits.append(numpy_helper.from_array(w, "w"))
    nodes.append(helper.make_node("Conv", [x_name, w_name], ["heatmaps"], name="conv", kernel_shape=[4, 4],
                                  strides=[4, 4]))
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, S, S])
    heatmaps = helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["N", K, S // 4, S // 4])
    graph = helper.make_graph(nodes, "tiny", [image], [heatmaps], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    write_onnx_meta(model, dataclasses.replace(META, precision="int8" if qdq else "fp32"))
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture()
def fp32(tmp_path) -> Path:
    return _model(tmp_path / "tiny.onnx")


@pytest.fixture()
def int8(tmp_path) -> Path:
    return _model(tmp_path / "tiny.int8.onnx", qdq=True)


def _proto(path: Path):
    import onnx

    return onnx.load(str(path))


# ------------------------------------------------------------------------------------------------- batch profile


@pytest.mark.parametrize("spec, expected", [("1:8:32", (1, 8, 32)), (" 2:4:4 ", (2, 4, 4)), ("8", (8, 8, 8)),
                                            ("1:1:1", (1, 1, 1))])
def test_batch_profile_parses(spec, expected):
    p = BatchProfile.parse(spec)
    assert (p.min, p.opt, p.max) == expected
    assert str(BatchProfile.parse(str(p))) == str(p)


@pytest.mark.parametrize("spec", ["0:1:2", "4:2:8", "1:8:4", "1:8", "1:2:3:4", "a:b:c", "", "-1", "1.5:2:3", "1::3"])
def test_batch_profile_rejects(spec):
    with pytest.raises(CunetError, match="batch profile"):
        BatchProfile.parse(spec)


def test_profile_shapes():
    assert BatchProfile(1, 8, 32).shapes(S) == {"min": [1, 3, S, S], "opt": [8, 3, S, S], "max": [32, 3, S, S]}


# ---------------------------------------------------------------------------------------- what the model must be


def test_model_types_and_precision_rules(fp32, int8):
    assert model_precision(_proto(fp32)) == "fp32" and model_precision(_proto(int8)) == "int8"
    assert inspect_source(fp32, "fp32")[2] == "fp32"
    assert inspect_source(fp32, "fp16")[2] == "fp32"  # FP16 from FP32: TensorRT 10's flag, or converted for 11
    assert inspect_source(int8, "int8")[1].precision == "int8"
    with pytest.raises(CunetError, match="needs a Q/DQ model.*--recipe tensorrt"):
        inspect_source(fp32, "int8")
    for precision in ("fp32", "fp16"):
        with pytest.raises(CunetError, match="INT8 Q/DQ model.*--precision int8"):
            inspect_source(int8, precision)
    with pytest.raises(CunetError, match="unknown precision"):
        inspect_source(fp32, "int4")
    with pytest.raises(CunetError, match="no such ONNX file"):
        inspect_source(fp32.with_name("missing.onnx"), "fp32")


def test_int8_that_breaks_tensorrt_rules_is_refused(tmp_path):
    asymmetric = _model(tmp_path / "asym.onnx", qdq=True, zero_point=3)
    with pytest.raises(CunetError, match="TensorRT Q/DQ rule violation"):
        inspect_source(asymmetric, "int8")


def test_calibration_hash_follows_activation_scales_not_weights(tmp_path):
    a = calibration_sha256(_proto(_model(tmp_path / "a.onnx", qdq=True, act_scale=0.02, seed=0)))
    other_weights = calibration_sha256(_proto(_model(tmp_path / "b.onnx", qdq=True, act_scale=0.02, seed=1)))
    other_scale = calibration_sha256(_proto(_model(tmp_path / "c.onnx", qdq=True, act_scale=0.03, seed=0)))
    assert a is not None and len(a) == 64
    assert a == other_weights and a != other_scale
    assert calibration_sha256(_proto(_model(tmp_path / "d.onnx"))) is None


@pytest.mark.skipif(fp16_converter() is None, reason="no ONNX float16 converter installed")
def test_fp16_model_is_fp16_typed_and_close(fp32, tmp_path):
    import onnxruntime as ort

    half = to_fp16_onnx(fp32, tmp_path / "tiny.fp16.onnx")
    proto = _proto(half)
    assert model_precision(proto) == "fp16"
    assert inspect_source(half, "fp16")[1].precision == "fp16"
    with pytest.raises(CunetError, match="FP16-typed"):
        inspect_source(half, "fp32")
    x = np.random.default_rng(0).standard_normal((2, 3, S, S)).astype(np.float32)
    run = {p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
           for p in (fp32, half)}
    # float16 keeps ~3 significant digits; 48 products per output: 1e-2 of the output range is generous and
    # still catches a wrong graph (errors would be of the output's own size).
    scale = float(np.abs(run[fp32]).max())
    assert run[half].dtype == np.float32 and np.abs(run[half] - run[fp32]).max() < 1e-2 * scale


# ------------------------------------------------------------------------------------------------------ manifest


def _engine(tmp_path: Path, source: Path, device: DeviceInfo = JETSON) -> tuple[Path, EngineManifest]:
    engine = tmp_path / "model.int8.engine"
    engine.write_bytes(b"serialized engine bytes stand-in")
    proto, meta, _ = inspect_source(source, "int8")
    manifest = build_manifest(engine, source, proto, meta, "int8", BatchProfile(1, 8, 32), device,
                              strongly_typed=True, workspace_mb=512)
    write_manifest(engine, manifest)
    return engine, manifest


def test_manifest_round_trip(tmp_path, int8):
    engine, manifest = _engine(tmp_path, int8)
    path = manifest_path(engine)
    assert path.name == "model.int8.engine.manifest.json"
    assert read_manifest(engine) == manifest
    doc = json.loads(path.read_text())
    assert doc["format"] == "cunet-engine-manifest"
    assert (doc["tensorrt_version"], doc["gpu_name"], doc["compute_capability"]) == ("10.3.0", "Orin", "8.7")
    assert doc["precision"] == "int8" and doc["strongly_typed"] is True and doc["workspace_mb"] == 512
    assert doc["shapes"] == {"min": [1, 3, S, S], "opt": [8, 3, S, S], "max": [32, 3, S, S]}
    assert doc["source_model"] == "tiny.int8.onnx" and doc["source_sha256"] == sha256_file(int8)
    assert doc["engine_sha256"] == sha256_file(engine)
    assert doc["calibration_sha256"] == calibration_sha256(_proto(int8))
    import cunet

    assert doc["cunet_version"] == cunet.__version__
    # the runtime reads the model metadata from the new per-engine manifest
    assert read_engine_meta(engine) == dataclasses.replace(META, precision="int8")


def test_new_manifest_wins_over_legacy_folder_manifest(tmp_path, int8):
    engine, _ = _engine(tmp_path, int8)
    legacy = dataclasses.replace(META, task="face", precision="fp32", sigma=9.0)
    (tmp_path / "manifest.json").write_text(json.dumps({"cunet": legacy.to_dict()}))
    assert read_engine_meta(engine).precision == "int8"
    manifest_path(engine).unlink()
    assert read_engine_meta(engine) == legacy  # engines built before per-engine manifests still load


def test_same_machine_is_accepted(tmp_path, int8):
    engine, manifest = _engine(tmp_path, int8)
    check_compatible(engine, read_manifest(engine), JETSON)


@pytest.mark.parametrize("field, value, words", [
    ("tensorrt_version", "10.8.0", "built with TensorRT '10.3.0' but this machine has '10.8.0'"),
    ("gpu_name", "NVIDIA GeForce RTX 4090", "built on GPU 'Orin' but this machine has 'NVIDIA GeForce RTX 4090'"),
    ("compute_capability", "8.9", "built for compute capability '8.7' but this machine has '8.9'"),
])
def test_mismatch_is_refused(tmp_path, int8, field, value, words):
    engine, manifest = _engine(tmp_path, int8)
    with pytest.raises(CunetError, match="refusing to load") as e:
        check_compatible(engine, manifest, dataclasses.replace(JETSON, **{field: value}))
    assert words in str(e.value) and "cunet compile tiny.int8.onnx --precision int8" in str(e.value)
    assert "\n" not in str(e.value)


def test_engine_replaced_after_its_manifest_is_refused(tmp_path, int8):
    engine, manifest = _engine(tmp_path, int8)
    engine.write_bytes(b"an engine rebuilt without its manifest")
    with pytest.raises(CunetError, match="sha256"):
        check_compatible(engine, read_manifest(engine), JETSON)


@pytest.mark.parametrize("content, words", [
    (None, "no model.int8.engine.manifest.json"),
    ("{not json", "not valid JSON"),
    (json.dumps({"cunet": {}}), "not a cunet engine manifest"),
])
def test_bad_manifest_files(tmp_path, int8, content, words):
    engine, _ = _engine(tmp_path, int8)
    path = manifest_path(engine)
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    with pytest.raises(CunetError, match=words):
        read_manifest(engine)


def test_manifest_missing_a_field(tmp_path, int8):
    engine, _ = _engine(tmp_path, int8)
    doc = json.loads(manifest_path(engine).read_text())
    del doc["compute_capability"]
    doc["surprise"] = 1
    manifest_path(engine).write_text(json.dumps(doc))
    with pytest.raises(CunetError, match=r"missing \['compute_capability'\], unknown \['surprise'\]"):
        read_manifest(engine)


# ----------------------------------------------------------------------------------------------- the command


@pytest.mark.skipif(NO_TRT is None, reason="TensorRT and a CUDA device are present")
def test_compile_without_tensorrt_says_so_in_one_line(tmp_path, fp32):
    out = tmp_path / "tiny.engine"
    proc = subprocess.run([sys.executable, "-m", "cunet", "compile", str(fp32), "--precision", "fp32", "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0] == f"error: cannot build a TensorRT engine on this machine: {NO_TRT}"
    assert proc.stdout == "" and not out.exists() and not manifest_path(out).exists()


@pytest.mark.gpu
@pytest.mark.skipif(NO_TRT is not None, reason=f"needs TensorRT and a CUDA device ({NO_TRT})")
def test_real_engine_builds_loads_and_refuses_a_foreign_manifest(tmp_path, fp32):
    from cunet.compile.tensorrt import compile_engine
    from cunet.runtime import open_predictor

    engine = tmp_path / "tiny.engine"
    manifest = compile_engine(fp32, engine, "fp32", batch="1:2:4", timing_cache=tmp_path / "cache")
    x = np.zeros((2, 3, S, S), np.float32)
    with open_predictor(engine) as p:
        assert p.predict_heatmaps(x).shape == (2, K, S // 4, S // 4)
    doc = json.loads(manifest_path(engine).read_text())
    doc["gpu_name"] = manifest.gpu_name + " (another one)"
    manifest_path(engine).write_text(json.dumps(doc))
    with pytest.raises(CunetError, match="refusing to load"):
        open_predictor(engine).open()

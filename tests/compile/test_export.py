"""ONNX export: one file, dynamic batch, metadata round trip, ORT vs PyTorch, clear errors for bad files.

The export itself runs once per module, through the real CLI in a subprocess (it is the slow part: the dynamo
exporter takes several seconds even for a tiny model).
"""

import dataclasses
import hashlib
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from cunet.compile.export import export_onnx
from cunet.compile.verify import VERIFY_FACTOR, VERIFY_FLOOR
from cunet.errors import CunetError
from cunet.model import CUNet, CUNetConfig
from cunet.runtime.meta import META_KEY, ModelMeta, read_onnx_meta, write_onnx_meta
from cunet.model.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

TINY = CUNetConfig(layers=2, order=1, channels=16, growth=8, input_size=64, num_landmarks=68)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    ckpt = d / "tiny.pt"
    save_checkpoint(ckpt, CUNet(TINY), task="face", args={"sigma": 1.5})
    out = d / "out" / "tiny.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "cunet", "export", str(ckpt), "-o", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # stdout is exactly one JSON object: exporter chatter went to stderr
    return ckpt, out, report


def test_writes_one_self_contained_file(exported):
    _, out, report = exported
    # no .onnx.data, no stray temp file; the folder's manifest lists the one file the export wrote
    assert sorted(p.name for p in out.parent.iterdir()) == [".cunet-outputs", "tiny.onnx"]
    assert list(json.loads((out.parent / ".cunet-outputs").read_text())["files"]) == ["tiny.onnx"]
    model = onnx.load(str(out))
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    onnx.checker.check_model(model)
    assert report["opset"] >= 17 and report["exporter"] == "dynamo" and report["simplified"]
    assert report["file_bytes"] == out.stat().st_size


def test_io_names_and_dynamic_batch(exported):
    ckpt, out, _ = exported
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, outp.name) == ("image", "heatmaps")
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [3, 64, 64]
    assert inp.type == "tensor(float)"
    model, _ = model_from_checkpoint(ckpt)
    rng = np.random.default_rng(1)
    for n in (1, 3):
        x = rng.standard_normal((n, 3, 64, 64)).astype(np.float32)
        (hm,) = session.run(None, {"image": x})
        assert hm.shape == (n, 68, 16, 16)
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).numpy()
        # FP32 on both sides, different conv kernels: differences are accumulated rounding, ~1e-5 on heatmaps of
        # magnitude ~1; 1e-4 is ten times that and far below any wiring error.
        np.testing.assert_allclose(hm, ref, atol=1e-4, rtol=0)


def test_reported_verification_error(exported):
    _, _, report = exported
    assert 0 <= report["verify_error_ort"] <= report["tolerance"]
    assert report["tolerance"] == VERIFY_FACTOR * report["verify_error_torch32"] + VERIFY_FLOOR
    assert report["max_abs_error"] is not None and report["verify_worst_output"] == "heatmaps"
    assert report["verify_error_torch32"] > 0 and report["verify_samples"] == 4  # the CLI's --json carries the check
    assert (report["verify_factor"], report["verify_floor"]) == (VERIFY_FACTOR, VERIFY_FLOOR)


def test_metadata_round_trip(exported):
    ckpt, out, report = exported
    model = onnx.load(str(out), load_external_data=False)
    assert [p.key for p in model.metadata_props] == [META_KEY]
    meta = read_onnx_meta(out)
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    expected = ModelMeta.from_checkpoint(load_checkpoint(ckpt), source_sha256=sha)
    assert meta == expected
    assert meta.task == "face" and meta.num_landmarks == 68 and len(meta.landmark_names) == 68
    assert meta.sigma == 1.5 and meta.precision == "fp32" and meta.input_size == 64 and meta.heatmap_stride == 4
    assert meta.config == TINY.to_dict() and (36, 45) in meta.flip_pairs
    assert ModelMeta.from_dict(json.loads(meta.to_json())) == meta
    assert report["meta"]["source_sha256"] == meta.source_sha256


def test_write_onnx_meta_replaces_the_entry(exported):
    _, out, _ = exported
    model = onnx.load(str(out))
    meta = read_onnx_meta(out)
    write_onnx_meta(model, dataclasses.replace(meta, precision="int8"))
    assert [p.key for p in model.metadata_props] == [META_KEY]
    assert json.loads(model.metadata_props[0].value)["precision"] == "int8"


def test_truncated_file_is_a_clear_error(exported, tmp_path):
    _, out, _ = exported
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    with pytest.raises(CunetError, match="cut.onnx"):
        read_onnx_meta(bad)
    with pytest.raises(CunetError, match="no such"):
        read_onnx_meta(tmp_path / "missing.onnx")


def test_foreign_onnx_is_a_clear_error(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(CunetError, match="foreign.onnx: no 'cunet' metadata"):
        read_onnx_meta(path)


def test_export_errors_before_any_work(tmp_path):
    with pytest.raises(CunetError, match="opset 16"):
        export_onnx(tmp_path / "x.pt", tmp_path / "x.onnx", opset=16)
    with pytest.raises(CunetError, match="no such checkpoint"):
        export_onnx(tmp_path / "x.pt", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()

"""`cunet quantize --recipe openvino` at the command line: the IR it writes and the mistakes it refuses in one line.

Accuracy and `--max-drop` on a trained model are in tests/compile/test_int8_accuracy.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

TINY = dict(layers=1, order=0, channels=16, growth=8, input_size=64, num_landmarks=68)


@pytest.fixture(scope="module")
def model_and_images(tmp_path_factory) -> tuple[Path, Path]:
    import cv2
    import torch

    from cunet.compile.export import export_onnx
    from cunet.model import CUNet, CUNetConfig

    root = tmp_path_factory.mktemp("ovq")
    torch.manual_seed(0)
    export_onnx(CUNet(CUNetConfig(**TINY)), root / "tiny.onnx", task="face")
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    for i in range(6):
        cv2.imwrite(str(root / "images" / f"{i}.png"), rng.integers(0, 256, (80, 96, 3), dtype=np.uint8))
    return root / "tiny.onnx", root / "images"


def _cunet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cunet", *args], capture_output=True, text=True, timeout=600)


def test_quantize_writes_a_self_describing_ir(model_and_images, tmp_path):
    from cunet.calib.reader import read_preprocess_spec, select_calibration_images
    from cunet.runtime import open_predictor, read_ir_meta, read_onnx_meta

    onnx_path, images = model_and_images
    out = tmp_path / "tiny.int8.xml"
    proc = _cunet("quantize", str(onnx_path), "--recipe", "openvino", "--data", str(images), "--samples", "4",
                  "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    selection = select_calibration_images(images, read_preprocess_spec(onnx_path), 4)
    assert report["recipe"] == "openvino" and report["samples"] == 4
    assert report["data_fingerprint"] == selection.fingerprint  # the same selection as the ONNX recipes
    assert report["int8_bytes"] == out.stat().st_size + out.with_suffix(".bin").stat().st_size
    meta, src = read_ir_meta(out), read_onnx_meta(onnx_path)
    assert (meta.precision, meta.recipe) == ("int8", "openvino")
    assert meta.landmark_names == src.landmark_names and meta.config == src.config
    assert not list(tmp_path.glob(".*.tmp-*"))
    with open_predictor(out, threads=1) as p:
        assert p.backend == "openvino" and p.predict([np.zeros((64, 64, 3), np.uint8)]).shape == (1, 68, 2)


def test_quantize_openvino_refuses_a_non_xml_output_before_any_work(model_and_images, tmp_path):
    onnx_path, images = model_and_images
    proc = _cunet("quantize", str(onnx_path), "--recipe", "openvino", "--data", str(images), "-o",
                  str(tmp_path / "tiny.int8.onnx"))
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "NAME.xml" in proc.stderr and not list(tmp_path.iterdir())


def _fq_source(node):
    """The FakeQuantize a tensor's int8 values come from: through MaxPool / Interpolate (they keep the grid)."""
    while node.get_type_name() in ("MaxPool", "Interpolate"):
        node = node.input(0).get_source_output().get_node()
    return node if node.get_type_name() == "FakeQuantize" else None


def test_openvino_recipe_quantizes_each_concatenated_map_once(model_and_images, tmp_path):
    """What the recipe's speed rests on (issue 26), read off the IR: every Concat joins int8 maps (FakeQuantize
    outputs, or pooled / upsampled ones), each map has one FakeQuantize whatever its number of consumers, and every
    convolution reads an int8 input. (The inputs of one Concat may keep different scales: OpenVINO's CPU plugin
    concatenates them in int8 with per-channel dequantization; unifying them measured no faster, see docs/int8.md.)"""
    import openvino as ov

    from cunet.compile.openvino import quantize_openvino

    onnx_path, images = model_and_images
    out = tmp_path / "tiny.int8.xml"
    quantize_openvino(onnx_path, out, images, samples=4)
    model = ov.Core().read_model(str(out))
    feature_concats = [op for op in model.get_ordered_ops() if op.get_type_name() == "Concat"
                       and len(op.get_output_partial_shape(0)) == 4]
    assert feature_concats
    for cat in feature_concats:
        sources = [_fq_source(i.get_source_output().get_node()) for i in cat.inputs()]
        assert all(s is not None for s in sources), cat.get_friendly_name()
    for op in model.get_ordered_ops():
        if op.get_type_name() in ("Convolution", "GroupConvolution"):
            assert op.input(0).get_source_output().get_node().get_type_name() == "FakeQuantize"
    fq_inputs = [op.input(0).get_source_output() for op in model.get_ordered_ops()
                 if op.get_type_name() == "FakeQuantize"]
    assert len({(o.get_node().get_friendly_name(), o.get_index()) for o in fq_inputs}) == len(fq_inputs)

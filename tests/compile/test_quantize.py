"""INT8 recipes on a tiny CU-Net: TensorRT rules, metadata, closeness to FP32 and --max-drop."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from cunet.compile.export import export_onnx
from cunet.compile.quantize import bn_to_depthwise, quantize
from cunet.compile.trt_rules import check_trt

TINY = dict(layers=1, order=0, channels=16, growth=8, input_size=64, num_landmarks=68)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny exported model (BN statistics like a trained net) and smooth calibration images."""
    import cv2

    from cunet.model import CUNet, CUNetConfig

    root = tmp_path_factory.mktemp("q")
    torch.manual_seed(0)
    cfg = CUNetConfig(**TINY)
    model = CUNet(cfg).eval()
    for m in model.modules():  # scale conv weights down so activations stay O(1) like a trained net's
        if isinstance(m, torch.nn.Conv2d):
            m.weight.data *= 0.5
    for head in model.heads.values():  # a trained head's output spans ~1, not the 1e-3 of its init
        torch.nn.init.normal_(head.conv.weight, std=0.3)
    path = root / "tiny.onnx"
    export_onnx(model, path, task="face")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        img = cv2.GaussianBlur(rng.integers(0, 256, (72, 72, 3), dtype=np.uint8), (9, 9), 3)
        cv2.imwrite(str(images / f"{i}.png"), img)
    return path, images, root


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]


def test_bn_rewrite_is_exact(setup):
    path, _, root = setup
    out = root / "dw.onnx"
    onnx.save(bn_to_depthwise(onnx.load(str(path))), str(out))
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    # float32 reassociation only: BN and a 1x1 depthwise conv compute the same affine map.
    np.testing.assert_allclose(_run(out, x), _run(path, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("recipe", ["tensorrt", "cpu"])
def test_recipes_are_close_to_fp32_and_carry_metadata(setup, recipe):
    path, images, root = setup
    out = root / f"tiny.{recipe}.onnx"
    report = quantize(path, out, recipe, images, samples=6, cache_dir=root / "cache")
    meta = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["cunet"])
    assert meta["precision"] == "int8" and meta["recipe"] == recipe
    # At 16 channels the cpu recipe's depthwise-BN scales/biases outweigh the int8 savings; sizes are a bench topic.
    assert recipe == "cpu" or report.int8_bytes < report.fp32_bytes
    from cunet.calib.reader import read_preprocess_spec, select_calibration_images

    x = select_calibration_images(images, read_preprocess_spec(path), 3).load().arrays
    ref, got = _run(path, x), _run(out, x)
    # 8-bit activations through ~20 quantized layers on calibration-like inputs: within 10% of the output range.
    assert np.abs(got - ref).max() <= 0.1 * np.ptp(ref)
    errors = [v for v in check_trt(out) if v.severity == "error"]
    assert (errors == []) == (recipe == "tensorrt")


def test_max_drop_is_honoured(setup):
    path, images, root = setup
    report = quantize(path, root / "md.onnx", "cpu", images, samples=6, cache_dir=root / "cache", max_drop=0.0, val_samples=3)
    assert report.drop is not None and report.drop <= 0.0


def test_every_exported_node_belongs_to_a_block(setup):
    """--max-drop keeps whole blocks in float; the exporter must name nodes so every node maps to its block."""
    from cunet.compile.quantize import node_groups

    path, _, _ = setup
    model = onnx.load(str(path))
    groups = node_groups(model)
    assert sum(map(len, groups.values())) == len(model.graph.node)
    assert {"stem", "heads.0", "unets.0.bottom", "unets.0.down.0", "unets.0.up.0"} <= set(groups)

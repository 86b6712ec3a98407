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


def test_max_drop_is_measured_as_evaluate_scores_on_held_out_images(setup):
    """The drop `--max-drop` compares with is the NME difference `cunet evaluate` reports for the written INT8 model
    and its FP32 source, on the annotated images calibration did not use (issue 23, item 6): not a landmark
    agreement on the calibration crops, not normalised by a predicted eye distance."""
    from cunet.calib.reader import read_preprocess_spec, select_calibration_images
    from cunet.data.synth import synthesize
    from cunet.evaluate.accuracy import evaluate

    path, _, root = setup
    data = root / "faces"
    synthesize(data, "face", n=20, seed=5, image_size=96)
    calibration = [str(p) for p, _ in select_calibration_images(data, read_preprocess_spec(path), 6).items]
    train = sorted((data / "train").glob("*.png"))
    assert len(train) > len(calibration)
    report = quantize(path, root / "loose.onnx", "cpu", data, samples=6, cache_dir=root / "cache", max_drop=1e9,
                      val_samples=len(train))  # every held-out image
    assert report.excluded == [] and report.drop_metric == "nme"
    assert report.drop_images == len(train) - len(calibration)
    held_out = dict(split="train", exclude=calibration, backend="ort-cpu", batch=1)
    int8 = evaluate(root / "loose.onnx", data, **held_out)
    fp32 = evaluate(path, data, **held_out)
    assert int8["n"] == fp32["n"] == report.drop_images
    # the same crops, decoder and normaliser through the same ORT kernels: equal up to float summation order
    assert report.drop == pytest.approx(int8["nme"] - fp32["nme"], abs=1e-6)
    # A budget far below 0 asks INT8 to beat FP32 by 10^6 NME points: the all-float model loses exactly 0, so it is
    # out of reach, and that is one line (the budget being honoured is tested on a trained model in
    # test_int8_accuracy.py, whose INT8 really loses accuracy; this untrained one's may gain by chance).
    from cunet.errors import CunetError

    with pytest.raises(CunetError, match=r"even with every block in float the drop is 0\.000 > --max-drop -1000000"):
        quantize(path, root / "never.onnx", "cpu", data, samples=6, cache_dir=root / "cache", max_drop=-1e6,
                 val_samples=4)


def test_max_drop_needs_annotated_images_outside_the_calibration(setup):
    from cunet.errors import CunetError

    path, images, root = setup
    with pytest.raises(CunetError, match="no annotated face dataset"):
        quantize(path, root / "x.onnx", "cpu", images, samples=6, cache_dir=root / "cache", max_drop=0.5)


def test_every_exported_node_belongs_to_a_block(setup):
    """--max-drop keeps whole blocks in float; the exporter must name nodes so every node maps to its block."""
    from cunet.compile.quantize import node_groups

    path, _, _ = setup
    model = onnx.load(str(path))
    groups = node_groups(model)
    assert sum(map(len, groups.values())) == len(model.graph.node)
    assert {"stem", "heads.0", "unets.0.bottom", "unets.0.down.0", "unets.0.up.0"} <= set(groups)

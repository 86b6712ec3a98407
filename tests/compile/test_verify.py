"""Export verification against a float64 reference: a numerically hard deep model passes, broken graphs do not.

The model has cunet-face-8's depth (8 coupled U-Nets, 68 heatmaps) with narrow blocks at a 64x64 input to keep it
fast, and every BatchNorm holds the statistics and affine terms a briefly trained network has (not the identity of a
fresh one), so float32 rounding accumulates over its depth (~1e-4 relative) and a missing BatchNorm changes the
answer. It is exported
once per module; each broken graph is that export edited with onnx helpers and judged by the same `verify_onnx`
call `cunet export` makes.
"""

import copy

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from cunet.compile.export import INPUT_NAME, OUTPUT_NAME, export_onnx, refusal_message
from cunet.compile.verify import VERIFY_FACTOR, VERIFY_FLOOR, verification_inputs, verify_onnx
from cunet.model import CUNet, CUNetConfig
from cunet.runtime.meta import ModelMeta

#: cunet-face-8's depth (8 coupled U-Nets, 68 heatmaps) with narrow blocks and a 64x64 input, to export in seconds.
FACE8_SMALL = CUNetConfig(layers=8, order=1, num_landmarks=68, channels=32, growth=8, input_size=64)


def settle_batchnorms(model: CUNet, x: np.ndarray, seed: int = 0) -> CUNet:
    """Give every BatchNorm what a briefly trained network has: the statistics of real-looking crops `x` (not the
    identity of a fresh one) and gains 0.5-1.5, shifts ~N(0, 0.2). Returns `model` in eval mode."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: one batch sets the statistics exactly
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(x))
        for m in norms:
            m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))
    return model.eval()


# ------------------------------------------------------------------------------------------- broken graphs


def _rewire(graph: onnx.GraphProto, old: str, new: str) -> None:
    for n in graph.node:
        for i, name in enumerate(n.input):
            if name == old:
                n.input[i] = new


def swap_channels(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The network reads BGR where it was trained on RGB: a Gather reverses the input's channels."""
    p = copy.deepcopy(proto)
    p.graph.initializer.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr_order"))
    _rewire(p.graph, INPUT_NAME, "image_bgr")
    p.graph.node.insert(0, helper.make_node("Gather", [INPUT_NAME, "bgr_order"], ["image_bgr"], axis=1))
    return p


def drop_batchnorm(proto: onnx.ModelProto, index: int = 0) -> onnx.ModelProto:
    """One BatchNormalization is missing: its consumers read its input."""
    p = copy.deepcopy(proto)
    bn = [n for n in p.graph.node if n.op_type == "BatchNormalization"][index]
    _rewire(p.graph, bn.output[0], bn.input[0])
    p.graph.node.remove(bn)
    return p


def linear_resize(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The U-Nets' nearest-neighbour upsampling became bilinear."""
    p = copy.deepcopy(proto)
    resizes = [n for n in p.graph.node if n.op_type == "Resize"]
    assert resizes
    for n in resizes:
        keep = [a for a in n.attribute if a.name not in ("mode", "nearest_mode")]
        del n.attribute[:]
        n.attribute.extend([*keep, helper.make_attribute("mode", "linear")])
    return p


def drop_head(proto: onnx.ModelProto, landmarks: int) -> onnx.ModelProto:
    """The head conv is gone: the output is `landmarks` channels of the features that fed it (repeated as needed)."""
    p = copy.deepcopy(proto)
    head = next(n for n in p.graph.node if OUTPUT_NAME in n.output)
    assert head.op_type == "Conv"
    width = next(i.dims[1] for i in p.graph.initializer if i.name == head.input[1])
    p.graph.node.remove(head)
    for name, value in (("head_start", 0), ("head_end", landmarks), ("head_axis", 1)):
        p.graph.initializer.append(numpy_helper.from_array(np.array([value], np.int64), name))
    copies = -(-landmarks // width)
    p.graph.node.append(helper.make_node("Concat", [head.input[0]] * copies, ["head_features"], axis=1))
    slice_inputs = ["head_features", "head_start", "head_end", "head_axis"]
    p.graph.node.append(helper.make_node("Slice", slice_inputs, [OUTPUT_NAME]))
    return p


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """(model, exported proto, verification inputs, export report) for the BatchNorm-perturbed face-8-sized net."""
    torch.manual_seed(0)
    meta = ModelMeta.from_checkpoint({"task": "face", "config": FACE8_SMALL.to_dict()})
    x, what = verification_inputs(meta)
    model = settle_batchnorms(CUNet(FACE8_SMALL), x)
    out = tmp_path_factory.mktemp("verify") / "deep.onnx"
    report = export_onnx(model, out, task="face")
    return model, onnx.load(str(out)), x, what, report


def test_deep_model_exports_and_reports_both_errors(deep):
    _, _, _, _, report = deep
    v = report.verification
    assert v is not None and v.passed and v.worst_output == OUTPUT_NAME
    # The float32 error is real (far above float32's resolution) and ORT is as close to float64 as PyTorch is.
    assert v.error_torch32 > 1e-6 and v.error_ort <= VERIFY_FACTOR * v.error_torch32 + VERIFY_FLOOR
    assert report.tolerance == v.allowed and report.max_abs_error == v.max_abs_error
    d = report.to_dict()
    assert d["verify_error_ort"] == v.error_ort and d["verify_error_torch32"] == v.error_torch32
    assert d["verify_worst_output"] == OUTPUT_NAME and d["verify_samples"] == 4
    assert d["verify_inputs"] == "3 synthetic face crops + 1 Gaussian noise"


def test_inputs_look_like_normalised_crops(deep):
    _, _, x, _, report = deep
    assert x.shape == (4, 3, 64, 64) and x.dtype == np.float32
    crops = x[:3]
    # Normalised images: the 0..1 pixel range mapped through ImageNet mean/std, so within about [-2.2, 2.7], with
    # structure (neighbouring pixels correlate), unlike the noise image.
    assert crops.min() >= -2.2 and crops.max() <= 2.7
    corr = [np.corrcoef(c[0, :, :-1].ravel(), c[0, :, 1:].ravel())[0, 1] for c in x]
    assert min(corr[:3]) > 0.5 and abs(corr[3]) < 0.1


@pytest.mark.parametrize("broken", ["swapped channels", "missing batchnorm", "linear resize", "dropped head"])
def test_broken_graph_is_refused(deep, broken):
    model, proto, x, what, _ = deep
    edit = {
        "swapped channels": swap_channels,
        "missing batchnorm": drop_batchnorm,
        "linear resize": linear_resize,
        "dropped head": lambda p: drop_head(p, FACE8_SMALL.num_landmarks),
    }[broken]
    bad = edit(proto)
    onnx.checker.check_model(bad)
    v = verify_onnx(model, bad.SerializeToString(), x, what)
    assert not v.passed and v.problem is None
    # Far outside the allowance, not near it: the rule separates rounding from wiring by orders of magnitude.
    assert v.error_ort > 10 * v.allowed
    assert v.worst_output == OUTPUT_NAME and f"{v.error_ort:.3g}" in v.describe()


def test_shape_mismatch_is_a_problem_not_a_crash(deep):
    model, proto, x, what, _ = deep
    v = verify_onnx(model, drop_head(proto, 60).SerializeToString(), x, what)
    assert not v.passed and "[4, 60, 16, 16]" in v.problem and "[4, 68, 16, 16]" in v.problem


def test_calibration_images_replace_the_synthetic_crops(deep, tmp_path):
    import cv2

    from cunet.data.synth_face import make_face

    _, _, _, _, report = deep
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), make_face(np.random.default_rng(i), 0.5, 96)[0])
    x, what = verification_inputs(report.meta, images=tmp_path)
    assert x.shape == (3, 3, 64, 64) and what == f"2 images from {tmp_path} + 1 Gaussian noise"


def test_failure_message_names_errors_output_and_the_way_out(deep, tmp_path):
    model, proto, x, what, _ = deep
    v = verify_onnx(model, linear_resize(proto).SerializeToString(), x, what)
    out = tmp_path / "bad.onnx"
    msg = refusal_message(out, v)
    assert msg.startswith(f"{out}: not written") and "on 'heatmaps'" in msg
    assert f"ONNX Runtime is {v.error_ort:.3g}" in msg and f"PyTorch float32 {v.error_torch32:.3g}" in msg
    assert "rerun with --no-verify" in msg and "nothing then shows that the file computes" in msg

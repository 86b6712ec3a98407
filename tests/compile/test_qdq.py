"""The `tensorrt` recipe's Q/DQ placement: one scale per Concat, each map quantized once, TensorRT's rules.

Hand-built graphs check the scale arithmetic exactly; a cunet-tiny export (two coupled U-Nets, so Concats that read
features of the previous U-Net too) checks the whole recipe through `quantize` and `cunet check-trt --strict`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cunet.compile.qdq import place_trt_qdq
from cunet.compile.trt_rules import check_trt, check_trt_model


def _two_concats(pool: bool = False):
    """a, b, c → conv each; cat1 = [a', b'], cat2 = [b', c'] (b' read by both); each cat → Conv.

    With `pool`, a' is max-pooled 1x1 (an identity on values) before cat1, as CU-Net pools a block's output.
    """
    inits, nodes = [], []
    for t in "abc":
        inits.append(numpy_helper.from_array(np.full((2, 2, 1, 1), 0.5, np.float32), f"w_{t}"))
        nodes.append(helper.make_node("Conv", [t, f"w_{t}"], [f"{t}2"], name=f"conv_{t}"))
    first = "a2"
    if pool:
        nodes.append(helper.make_node("MaxPool", ["a2"], ["a3"], name="pool", kernel_shape=[1, 1]))
        first = "a3"
    inits.append(numpy_helper.from_array(np.ones((2, 4, 1, 1), np.float32), "w_out"))
    nodes += [helper.make_node("Concat", [first, "b2"], ["cat1"], name="cat1", axis=1),
              helper.make_node("Concat", ["b2", "c2"], ["cat2"], name="cat2", axis=1),
              helper.make_node("Conv", ["cat1", "w_out"], ["y1"], name="head1"),
              helper.make_node("Conv", ["cat2", "w_out"], ["y2"], name="head2")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(t, TensorProto.FLOAT, [1, 2, 4, 4]) for t in "abc"],
                          [helper.make_tensor_value_info(y, TensorProto.FLOAT, None) for y in ("y1", "y2")], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])


_RANGES = {"a": (-1.0, 1.0), "b": (-1.0, 0.5), "c": (-2.0, 1.0), "a2": (-1.0, 2.0), "a3": (-0.5, 2.0),
           "b2": (-3.0, 1.0), "c2": (0.0, 30.0), "cat1": (-3.0, 2.0), "cat2": (-3.0, 30.0)}


def _s(amax: float) -> float:
    """The float32 scale an int8 symmetric range ±amax is stored as."""
    return float(np.float32(amax / 127))


def _qdq_scales(model) -> dict[str, list[float]]:
    """Activation tensor → the scales of the Q nodes that read it."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out: dict[str, list[float]] = {}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear":
            out.setdefault(n.input[0], []).append(float(inits[n.input[1]]))
    return out


def test_concats_sharing_a_tensor_share_one_scale_and_each_map_is_quantized_once():
    # cat1 alone would reach |3|, cat2 |30|: b2 joins them, so a2, b2 and c2 all take ±30, each with one Q.
    model = place_trt_qdq(_two_concats(), _RANGES)
    assert _qdq_scales(model) == {"a2": [_s(30)], "b2": [_s(30)], "c2": [_s(30)],
                                  "a": [_s(1)], "b": [_s(1)], "c": [_s(2)]}
    assert check_trt_model(model, strict=True) == []
    producer = {o: n for n in model.graph.node for o in n.output}
    for cat in (n for n in model.graph.node if n.op_type == "Concat"):
        assert {producer[t].op_type for t in cat.input} == {"DequantizeLinear"}
        assert not any(n.op_type == "QuantizeLinear" and n.input[0] == cat.output[0] for n in model.graph.node)
    for head in ("head1", "head2"):  # a Conv reading a Concat of DQs is int8: its weight is int8 behind a DQ
        conv = next(n for n in model.graph.node if n.name == head)
        assert producer[conv.input[1]].op_type == "DequantizeLinear"


def test_a_pooled_map_is_quantized_before_the_pool():
    model = place_trt_qdq(_two_concats(pool=True), _RANGES)
    scales = _qdq_scales(model)
    assert scales["a2"] == [_s(30)] and "a3" not in scales  # the pool runs on int8; its output is on that grid
    assert check_trt_model(model, strict=True) == []
    # The checker follows the Concat input through the MaxPool to its DQ: a different scale there is still caught.
    pooled = place_trt_qdq(_two_concats(pool=True), {**_RANGES, "c2": (0.0, 1.0), "cat2": (-3.0, 1.0)},
                           exclude=["cat2"])
    assert check_trt_model(pooled, strict=True) == []
    pooled.graph.initializer.append(numpy_helper.from_array(np.array(0.5, np.float32), "odd"))
    for n in pooled.graph.node:
        if n.name in ("a2/QuantizeLinear", "a2/DequantizeLinear"):
            n.input[1] = "odd"
    assert {v.rule for v in check_trt_model(pooled, strict=True)} == {"concat-scales"}


def test_excluded_nodes_read_float():
    model = place_trt_qdq(_two_concats(), _RANGES, exclude=["cat2", "head2"])
    nodes = {n.name: n for n in model.graph.node}
    assert list(nodes["cat2"].input) == ["b2", "c2"] and nodes["head2"].input[1] == "w_out"
    assert "c2" not in _qdq_scales(model) and _qdq_scales(model)["b2"] == [_s(3)]  # cat1's own range now
    assert nodes["head1"].input[1] != "w_out"  # its weight is int8 behind a DQ


@pytest.fixture(scope="module")
def tiny_coupled(tmp_path_factory):
    """cunet-tiny's wiring (2 U-Nets, order 1; narrower) at 64², weights scaled like a trained net's, smooth images."""
    import cv2
    import torch

    from cunet.compile.export import export_onnx
    from cunet.model import CUNet, get_variant

    root = tmp_path_factory.mktemp("qdq")
    torch.manual_seed(0)
    model = CUNet(dataclasses.replace(get_variant("cunet-tiny"), input_size=64, channels=16, growth=8)).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.weight.data *= 0.5
        elif isinstance(m, torch.nn.BatchNorm2d):  # distinct BNs, some scales negative, as training leaves them
            m.weight.data = torch.empty_like(m.weight).uniform_(-0.5, 1.5)
            m.bias.data = torch.empty_like(m.bias).uniform_(-0.2, 0.2)
    for head in model.heads.values():
        torch.nn.init.normal_(head.conv.weight, std=0.3)
    path = root / "tiny.onnx"
    export_onnx(model, path, task="face")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(root / "images" / f"{i}.png"),
                    cv2.GaussianBlur(rng.integers(0, 256, (72, 72, 3), dtype=np.uint8), (9, 9), 3))
    return path, root / "images", root


def test_tensorrt_recipe_of_coupled_unets_has_one_scale_per_concat(tiny_coupled):
    import onnxruntime as ort

    from cunet.calib.reader import read_preprocess_spec, select_calibration_images
    from cunet.compile.quantize import quantize

    path, images, root = tiny_coupled
    out = root / "tiny.trt.onnx"
    quantize(path, out, "tensorrt", images, samples=6, cache_dir=root / "cache")
    assert check_trt(out, strict=True) == []  # no errors, and no concat-scales warning
    model = onnx.load(str(out))
    producer = {o: n for n in model.graph.node for o in n.output}
    concats = [n for n in model.graph.node if n.op_type == "Concat"]
    assert len(concats) > 20
    for cat in concats:  # int8 inputs: DQs, or a MaxPool / Resize of one (quantized before the op)
        for t in cat.input:
            p = producer[t]
            while p.op_type in ("MaxPool", "Resize"):
                p = producer[p.input[0]]
            assert p.op_type == "DequantizeLinear"
    # Every convolution is int8: its input a DQ, its weight an int8 initializer behind a per-channel DQ.
    inits = {i.name: i for i in model.graph.initializer}
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        assert producer[conv.input[0]].op_type == "DequantizeLinear"
        assert inits[producer[conv.input[1]].input[0]].data_type == TensorProto.INT8
    # Each map is quantized once per scale it is read at, never once per consumer.
    scales = _qdq_scales(model)
    assert all(len(set(v)) == len(v) for v in scales.values())
    x = select_calibration_images(images, read_preprocess_spec(path), 3).load().arrays
    ref, got = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
                for p in (path, out))
    # 8-bit activations through ~40 quantized layers on calibration-like inputs: within 10% of the output range.
    assert np.abs(got - ref).max() <= 0.1 * np.ptp(ref)

"""The TensorRT Q/DQ checker accepts a clean graph and catches each broken rule (small hand-built graphs)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from cunet.compile.trt_rules import check_trt_model


def _graph(act_dtype=np.int8, zp=0, w_scale=(0.1, 0.2), w_axis=0, bias_int32=False, extra=(), concat_scales=None):
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "s"),
        numpy_helper.from_array(np.array(zp, act_dtype), "zp"),
        numpy_helper.from_array(np.ones((2, 3, 1, 1), np.int8), "w_q"),
        numpy_helper.from_array(np.array(w_scale, np.float32), "w_s"),
        numpy_helper.from_array(np.zeros(len(w_scale), np.int8), "w_zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq"),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["w"], name="wdq", axis=w_axis),
    ]
    conv_in = ["xd", "w"]
    if bias_int32:
        inits += [numpy_helper.from_array(np.zeros(2, np.int32), "b_q"), numpy_helper.from_array(np.array(0.01, np.float32), "b_s")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_s"], ["b"], name="bdq"))
        conv_in.append("b")
    nodes.append(helper.make_node("Conv", conv_in, ["y"], name="conv"))
    if concat_scales:
        inits.append(numpy_helper.from_array(np.array(concat_scales, np.float32), "s2"))
        nodes += [
            helper.make_node("QuantizeLinear", ["y", "s2", "zp"], ["yq"], name="q2"),
            helper.make_node("DequantizeLinear", ["yq", "s2", "zp"], ["yd"], name="dq2"),
            helper.make_node("Concat", ["xd", "yd"], ["cat"], name="cat", axis=1),
        ]
    nodes += list(extra)
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])


def rules(model, severity="error"):
    return {v.rule for v in check_trt_model(model) if v.severity == severity}


def test_clean_graph_passes():
    assert check_trt_model(_graph()) == []


@pytest.mark.parametrize(
    "kwargs, rule",
    [
        (dict(act_dtype=np.uint8), "int8"),
        (dict(zp=3), "zero-point"),
        (dict(w_scale=(0.1,)), "per-channel"),
        (dict(w_axis=1), "per-channel"),
        (dict(bias_int32=True), "int32-bias"),
        (dict(extra=[helper.make_node("ConvInteger", ["xq", "w_q"], ["ci"], name="ci")]), "qdq-only"),
        (dict(extra=[helper.make_node("QLinearConv", ["xq", "s", "zp", "w_q", "w_s", "w_zp", "s", "zp"], ["qc"], name="qc")]), "qdq-only"),
    ],
)
def test_each_broken_rule_is_caught(kwargs, rule):
    assert rule in rules(_graph(**kwargs))


def test_unequal_concat_scales_warn_but_do_not_fail():
    model = _graph(concat_scales=0.5)
    assert rules(model) == set()
    assert rules(model, "warning") == {"concat-scales"}
    assert rules(_graph(concat_scales=0.05), "warning") == set()


def _conv_transpose(w_axis: int):
    """x → Q/DQ → ConvTranspose with int8 weights [in=3, out=2, 1, 1] quantized per channel on `w_axis`."""
    n_scales = 3 if w_axis == 0 else 2
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.int8), "zp"),
        numpy_helper.from_array(np.ones((3, 2, 1, 1), np.int8), "w_q"),
        numpy_helper.from_array(np.full(n_scales, 0.1, np.float32), "w_s"),
        numpy_helper.from_array(np.zeros(n_scales, np.int8), "w_zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq"),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["w"], name="wdq", axis=w_axis),
        helper.make_node("ConvTranspose", ["xd", "w"], ["y"], name="deconv"),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])


def test_conv_transpose_weights_per_channel_on_axis_1():
    # Defect 5: ConvTranspose weights are [in, out/groups, kH, kW]; TensorRT and ONNX Runtime quantize them per
    # output channel, axis 1. The checker wanted axis 0 there, as for Conv.
    assert rules(_conv_transpose(w_axis=1)) == set()
    assert [v.message for v in check_trt_model(_conv_transpose(w_axis=0))] == [
        "ConvTranspose weight scales are on axis 0; need axis 1"]


@pytest.mark.parametrize("bad", [0.0, -0.1, float("inf")])
def test_scales_must_be_positive(bad):
    assert "scale" in rules(_graph(w_scale=(0.1, bad)))


def test_activation_scales_are_per_tensor():
    model = _graph()
    scale = next(i for i in model.graph.initializer if i.name == "s")
    scale.CopyFrom(numpy_helper.from_array(np.array([0.05, 0.05, 0.05], np.float32), "s"))
    assert "per-tensor-activation" in rules(model)
    assert "per-tensor-activation" not in rules(_graph())


def test_strict_makes_the_concat_scales_warning_an_error(tmp_path, capsys):
    from cunet.cli import main

    model = _graph(concat_scales=0.5)
    assert [(v.rule, v.severity) for v in check_trt_model(model, strict=True)] == [("concat-scales", "error")]
    assert check_trt_model(_graph(concat_scales=0.05), strict=True) == []
    path = tmp_path / "cat.onnx"
    path.write_bytes(model.SerializeToString())
    assert main(["check-trt", str(path)]) == 0
    capsys.readouterr()
    assert main(["check-trt", str(path), "--strict"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: ") and "[concat-scales]" in err.strip().splitlines()[-1]

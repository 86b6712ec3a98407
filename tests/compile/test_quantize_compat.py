"""`quantize_with_ranges` on an ONNX Runtime whose `quantize_static` has no `calibration_cache_path` (< 1.32).

`pyproject` admits onnxruntime >= 1.18 and Jetson wheels lag; the argument arrived in 1.32. The old signature is
imitated by a wrapper around the installed `quantize_static` that lacks the argument (exactly what a 1.23 caller
sees); the model it produces must be byte-identical to the one the 1.32 path produces from the same ranges.
"""

from __future__ import annotations

import inspect

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cunet.calib.calibrate import Method, Ranges
from cunet.compile.quantize import Recipe, quantize_with_ranges


def _fp32(path):
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.2
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["heatmaps"], name="relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_ranges_reach_a_quantize_static_without_calibration_cache_path(tmp_path, monkeypatch):
    import onnxruntime.quantization as q

    fp32 = _fp32(tmp_path / "m.onnx")
    ranges = Ranges(Method.MINMAX, 1, "0" * 64, "x",
                    {"image": (-2.0, 2.0), "c": (-1.5, 1.5), "heatmaps": (0.0, 1.5)})
    new = quantize_with_ranges(fp32, ranges, Recipe.CPU, [])
    real = q.quantize_static
    if "calibration_cache_path" not in inspect.signature(real).parameters:
        pytest.skip("the installed onnxruntime is itself older than 1.32: the fallback already ran above")

    def quantize_static_1_23(model_input, model_output, calibration_data_reader, quant_format=q.QuantFormat.QDQ,
                             op_types_to_quantize=None, per_channel=False, reduce_range=False,
                             activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8, nodes_to_quantize=None,
                             nodes_to_exclude=None, use_external_data_format=False,
                             calibrate_method=q.CalibrationMethod.MinMax, calibration_providers=None,
                             extra_options=None):
        return real(model_input, model_output, calibration_data_reader, quant_format, op_types_to_quantize,
                    per_channel, reduce_range, activation_type, weight_type, nodes_to_quantize, nodes_to_exclude,
                    use_external_data_format, calibrate_method, calibration_providers, extra_options)

    monkeypatch.setattr(q, "quantize_static", quantize_static_1_23)
    old = quantize_with_ranges(fp32, ranges, Recipe.CPU, [])
    assert any(n.op_type == "QuantizeLinear" for n in old.graph.node)
    assert onnx.printer.to_text(old.graph) == onnx.printer.to_text(new.graph)
    assert [numpy_helper.to_array(t).tolist() for t in old.graph.initializer] == \
        [numpy_helper.to_array(t).tolist() for t in new.graph.initializer]

"""Decoding inside the ONNX graph: `cunet export --decode` ends the model in the quarter-pixel decoder.

The appended tail turns the "heatmaps" [N, K, H, W] into one output "landmarks" [N, K, 3]: (x, y) in input-crop
pixels and the heatmap maximum as a score per landmark. One output, not two, so every runtime that runs a
one-output cunet model (ONNX Runtime, OpenVINO, TensorRT engines) runs this one unchanged, and a device returns
K·3 floats per image instead of the K·H·W heatmaps. Only the inverse crop affine stays on the host: it is per image,
six numbers, and known only there.

The tail is the `cunet.data.decode` "quarter" method: argmax (the first maximum in row-major order), then
±0.25 px toward the larger neighbour along each axis where the maximum has neighbours on both sides, then the
heatmap → input mapping of `cunet.data.heatmaps` (x·stride + (stride−1)/2). It uses only Reshape, ArgMax,
GatherElements, ReduceSum, Cast, Div, Floor, Mul, Add, Sub, Clip, Sign and Concat, which TensorRT, OpenVINO and
ONNX Runtime all implement; index arithmetic is done in float32 (exact below 2²⁴ heatmap pixels) and cast to
int64 only for the gathers, so no integer Mod/Div is needed. A map that is not finite gives NaN coordinates and
score, as in Python: the tail adds 0 × (the map's sum), which is NaN exactly when the map holds a NaN or an
infinity (a finite map would need values near 1e34 for its float32 sum to overflow; heatmaps lie near [0, 1]).

DARK (the Python default) needs a log and a per-point Newton step with fallbacks; "quarter" is what the original
code used and the tail every backend runs the same way. What that costs in accuracy is measured in
tests/compile/test_decode_graph.py (max landmark difference to the Python decoders on a trained model's heatmaps).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from cunet.errors import CunetError
from cunet.runtime.meta import ModelMeta, write_onnx_meta

__all__ = ["DECODED_OUTPUT", "GRAPH_DECODE_METHOD", "append_decode"]

#: The one output of a model that decodes in its graph: [N, K, 3] = (x, y, score), x and y in input-crop pixels.
DECODED_OUTPUT = "landmarks"
#: The `cunet.data.decode` method the tail implements (recorded as `ModelMeta.decode`).
GRAPH_DECODE_METHOD = "quarter"


def append_decode(proto: Any, meta: ModelMeta, heatmaps: str = "heatmaps") -> tuple[Any, ModelMeta]:
    """End an exported model in the quarter-pixel decoder (in place) and record it in the metadata.

    Args:
        proto: an `onnx.ModelProto` whose only output is `heatmaps` [N, K, H, W] float32.
        meta: its metadata (`decode` must be None).
        heatmaps: the name of that output.

    Returns:
        (the same proto, now with the one output "landmarks" [N, K, 3] and the new metadata written into it,
        the metadata with `decode` = "quarter").
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if meta.decode is not None:
        raise CunetError("the model already decodes in its graph")
    outputs = [o.name for o in proto.graph.output]
    if outputs != [heatmaps]:
        raise CunetError(f"cannot append the decoder: expected the one output {heatmaps!r}, the model has {outputs}")
    k, h, w, stride = meta.num_landmarks, meta.heatmap_size, meta.heatmap_size, meta.heatmap_stride
    nodes: list[Any] = []
    consts: list[Any] = []

    def const(name: str, value: Any, dtype: Any = np.float32) -> str:
        consts.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), f"decode/{name}"))
        return f"decode/{name}"

    def node(op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        out = f"decode/{name}"
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    flat = node("Reshape", [heatmaps, const("flat_shape", [0, 0, h * w], np.int64)], "flat")  # [N, K, HW]
    idx = node("ArgMax", [flat], "argmax", axis=2, keepdims=1, select_last_index=0)  # [N, K, 1] int64
    score = node("GatherElements", [flat, idx], "score", axis=2)  # [N, K, 1]
    # 0 for a finite map, NaN for a map holding a NaN or an infinity (added to coordinates and score).
    total = node("ReduceSum", [flat, const("hw_axis", [2], np.int64)], "map_sum", keepdims=1)
    poison = node("Mul", [total, const("zero", 0.0)], "poison")
    idx_f = node("Cast", [idx], "argmax_f", to=TensorProto.FLOAT)
    y = node("Floor", [node("Div", [idx_f, const("width", float(w))], "row_f")], "y")
    x = node("Sub", [idx_f, node("Mul", [y, const("width_again", float(w))], "row_start")], "x")
    pos = node("Concat", [x, y], "pos", axis=2)  # [N, K, 2] integer-valued (x, y)
    # Neighbours: (left, up) and (right, down) flat indices, clipped into the map (a clipped or wrapped index is
    # masked out below); the difference is (right − left, down − up).
    lo = node("Add", [idx_f, const("before", [-1.0, -float(w)])], "before_f")
    hi = node("Add", [idx_f, const("after", [1.0, float(w)])], "after_f")
    first, last_index = const("first", 0.0), const("last_index", float(h * w - 1))
    gathered = []
    for name, where in (("before", lo), ("after", hi)):
        clipped = node("Clip", [where, first, last_index], f"{name}_clip")
        gathered.append(node("GatherElements", [flat, node("Cast", [clipped], f"{name}_i", to=TensorProto.INT64)],
                             f"{name}_value", axis=2))
    step = node("Sign", [node("Sub", [gathered[1], gathered[0]], "neighbour_diff")], "direction")
    # 1 where 0 < pos < side − 1 (pos is an integer), else 0: the maximum has neighbours on both sides.
    one = const("one", 1.0)
    above = node("Clip", [pos, first, one], "above_first")
    below = node("Clip", [node("Sub", [const("last", [float(w - 1), float(h - 1)]), pos], "to_last"), first, one],
                 "below_last")
    inside = node("Mul", [above, below], "inside")
    shift = node("Mul", [node("Mul", [step, inside], "masked_direction"), const("quarter", 0.25)], "shift")
    hm_xy = node("Add", [pos, shift], "heatmap_xy")
    crop_xy = node("Add", [node("Mul", [hm_xy, const("stride", float(stride))], "scaled"),
                           const("centre", (stride - 1) / 2.0)], "crop_xy")
    packed = node("Concat", [crop_xy, score], "packed", axis=2)  # [N, K, 3]
    nodes.append(helper.make_node("Add", [packed, poison], [DECODED_OUTPUT], name="decode/landmarks"))

    graph = proto.graph
    graph.node.extend(nodes)
    graph.initializer.extend(consts)
    batch = graph.output[0].type.tensor_type.shape.dim[0]
    out = helper.make_tensor_value_info(DECODED_OUTPUT, TensorProto.FLOAT, [batch.dim_param or "N", k, 3])
    del graph.output[:]
    graph.output.append(out)
    meta = dataclasses.replace(meta, decode=GRAPH_DECODE_METHOD)
    write_onnx_meta(proto, meta)
    onnx.checker.check_model(proto)
    return proto, meta

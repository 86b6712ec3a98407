"""Explicit Q/DQ placement for TensorRT: every feature map quantized once, one scale per Concat.

ONNX Runtime's `quantize_static` puts a Q/DQ pair on every tensor it meets, each with the tensor's own scale: a
Concat then reads inputs of different scales and is itself requantized to a third, so TensorRT inserts a
requantizing copy per input and cannot run the Concat in place (TensorRT issues #3861, #4366, #4401: U-Nets).
Here the placement follows TensorRT's explicit-quantization guide instead:

- every Conv's data input is quantized (the int8 convolution), its weights per output channel (axis 0), symmetric,
  zero point 0; biases stay float (TensorRT quantizes them itself);
- every Concat input is quantized, and all inputs of a Concat share one scale: tensors joined through Concats form
  one class whose range is the union of its members' calibrated ranges, so TensorRT propagates the DQs through the
  Concat and writes every producer's int8 output straight into the concatenated buffer. The Concat's output gets
  no Q/DQ of its own (it is already on that grid): its consumers read it without a requantization;
- a tensor is quantized once, and every consumer reads that one DQ. CU-Net is pre-activation (each consumer of a
  concatenated map applies its own BatchNorm → ReLU before its convolution), so the BatchNorm and ReLU sit between
  the map's DQ and the convolution's Q: TensorRT fuses DQ → BatchNorm(scale) → ReLU → Q into one int8-in int8-out
  pointwise kernel. Nothing is folded across the ReLU, so a BatchNorm with a negative scale needs no special case
  here (folding a BN into the next convolution's input range only works channel by channel where its scale is
  positive; see `cunet.compile.openvino` for the CPU recipe that does that).

Node names in `exclude` keep reading float tensors and their weights stay float (`--max-drop`'s float groups).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from cunet.compile.graph import set_nodes

__all__ = ["MERGE_RATIO", "place_trt_qdq", "concat_scales"]

#: Two Concats that read the same tensor share one scale when their ranges differ by at most this factor (at most
#: one bit lost on the smaller one, and one Q of that tensor instead of two); further apart, the tensor gets one Q/DQ
#: per scale. Chained unions across all of CU-Net's U-Nets spanned 100x and more (their maps grow from U-Net to
#: U-Net): one scale for all of them left the first U-Nets' maps a few int8 steps.
MERGE_RATIO = 2.0


class _Groups:
    """Union-find over Concat nodes, each group with the largest |value| of its members' inputs."""

    def __init__(self, amax: dict[str, float]) -> None:
        self.parent = {c: c for c in amax}
        self.amax = dict(amax)

    def find(self, c: str) -> str:
        while self.parent[c] != c:
            self.parent[c] = self.parent[self.parent[c]]
            c = self.parent[c]
        return c

    def join(self, a: str, b: str, ratio: float) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        hi, lo = max(self.amax[a], self.amax[b]), min(self.amax[a], self.amax[b])
        if hi <= ratio * max(lo, 1e-12):
            self.parent[b] = a
            self.amax[a] = hi


def _amax(ranges: dict[str, tuple[float, float]], t: str) -> float:
    if t not in ranges:
        raise KeyError(f"no calibrated range for tensor {t!r}")
    lo, hi = ranges[t]
    return max(abs(lo), abs(hi))


def concat_scales(model: Any, ranges: dict[str, tuple[float, float]], exclude: Iterable[str] = (),
                  ratio: float = MERGE_RATIO) -> dict[str, float]:
    """Concat node name → the |value| its inputs are quantized to (scale = that / 127).

    Every Concat's inputs share its scale; Concats that read a common tensor share one when within `ratio`, and a
    Concat fed by another Concat always shares its scale (the inner output is already on that grid).
    """
    skip = set(exclude)
    concats = [n for n in model.graph.node if n.op_type == "Concat" and n.name not in skip]
    inits = {i.name for i in model.graph.initializer}
    groups = _Groups({n.name: max(_amax(ranges, t) for t in [*n.input, n.output[0]] if t not in inits)
                      for n in concats})
    by_input: dict[str, list[str]] = {}
    for n in concats:
        for t in n.input:
            by_input.setdefault(t, []).append(n.name)
    made_by = {n.output[0]: n.name for n in concats}
    for t, readers in sorted(by_input.items()):
        if t in made_by:
            for r in readers:
                groups.join(made_by[t], r, float("inf"))
        for r in readers[1:]:
            groups.join(readers[0], r, ratio)
    return {n.name: groups.amax[groups.find(n.name)] for n in concats}


def _weights(model: Any) -> dict[str, Any]:
    inits = {i.name: i for i in model.graph.initializer}
    # The TorchScript exporter shares identical parameters through Identity nodes.
    inits.update({n.output[0]: inits[n.input[0]] for n in model.graph.node
                  if n.op_type == "Identity" and n.input[0] in inits})
    return inits


def place_trt_qdq(model: Any, ranges: dict[str, tuple[float, float]], exclude: Iterable[str] = (),
                  ratio: float = MERGE_RATIO) -> Any:
    """Insert TensorRT-style Q/DQ into an FP32 ONNX model (in place; see the module docstring).

    Args:
        model: an `onnx.ModelProto` (opset >= 13) with Conv weights as initializers.
        ranges: calibrated (lowest, highest) of every activation tensor that gets quantized.
        exclude: node names that stay float.
        ratio: `MERGE_RATIO`.

    Returns:
        The same model object.
    """
    from onnx import helper, numpy_helper

    g = model.graph
    skip = set(exclude)
    inits = _weights(model)
    producer = {o: n for n in g.node for o in n.output}
    concat_amax = concat_scales(model, ranges, skip, ratio)

    # tensor → the |value| ranges it is quantized to: one per distinct scale of the Concats reading it, or its own
    # when only Conv reads it. A Concat's output is on its inputs' grid already and gets none.
    amaxes: dict[str, set[float]] = {}
    for n in g.node:
        if n.name in skip:
            continue
        if n.op_type == "Conv" and n.input[0] not in inits:
            t = n.input[0]
            if not (t in producer and producer[t].name in concat_amax):
                amaxes.setdefault(t, set())
        elif n.name in concat_amax:
            for t in n.input:
                if t not in inits and not (t in producer and producer[t].name in concat_amax):
                    amaxes.setdefault(t, set()).add(concat_amax[n.name])
    for t, found in amaxes.items():
        if not found:
            found.add(_amax(ranges, t))

    zero = "qdq.zero_point"
    new_inits = [numpy_helper.from_array(np.array(0, np.int8), zero)]
    scale_of: dict[float, str] = {}
    dq_at: dict[tuple[str, float], str] = {}  # (tensor, amax) → its DQ output
    qdq_nodes: dict[str, list[Any]] = {}
    for t in sorted(amaxes):
        qdq_nodes[t] = []
        for k, a in enumerate(sorted(amaxes[t])):
            if a not in scale_of:
                scale_of[a] = f"qdq.scale.{len(scale_of)}"
                new_inits.append(numpy_helper.from_array(np.array(max(a, 1e-8) / 127.0, np.float32), scale_of[a]))
            s, tag = scale_of[a], "" if k == 0 else f".{k}"
            q, dq = f"{t}.q{tag}", f"{t}.dq{tag}"
            qdq_nodes[t] += [helper.make_node("QuantizeLinear", [t, s, zero], [q], name=f"{t}/QuantizeLinear{tag}"),
                             helper.make_node("DequantizeLinear", [q, s, zero], [dq], name=f"{t}/DequantizeLinear{tag}")]
            dq_at[t, a] = dq
    on_grid = set(dq_at.values())  # tensors whose values are int8 on one scale: DQ outputs, Concats of them
    weight_dq: dict[str, str] = {}

    def quantize_weight(name: str) -> list[Any]:
        """The DQ node of `name`'s per-channel int8 copy the first time a Conv asks for it, then nothing."""
        if name in weight_dq:
            return []
        w = numpy_helper.to_array(inits[name]).astype(np.float32)
        scale = np.abs(w.reshape(len(w), -1)).max(axis=1) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        wq = np.clip(np.round(w / scale.reshape(-1, *[1] * (w.ndim - 1))), -127, 127).astype(np.int8)
        base = f"{name}.int8"
        new_inits.extend([numpy_helper.from_array(wq, base), numpy_helper.from_array(scale, f"{base}.scale"),
                          numpy_helper.from_array(np.zeros(len(w), np.int8), f"{base}.zero_point")])
        weight_dq[name] = f"{base}.dq"
        return [helper.make_node("DequantizeLinear", [base, f"{base}.scale", f"{base}.zero_point"], [weight_dq[name]],
                                 name=f"{base}/DequantizeLinear", axis=0)]

    nodes = [m for t in sorted(amaxes) if t not in producer for m in qdq_nodes[t]]  # graph inputs first
    for n in g.node:
        if n.name not in skip:
            for i, t in enumerate(n.input):
                if t in amaxes:  # a Concat reads its own scale; others the finest the tensor has
                    n.input[i] = dq_at[t, concat_amax[n.name] if n.name in concat_amax else min(amaxes[t])]
            if n.name in concat_amax and all(t in on_grid for t in n.input):
                on_grid.add(n.output[0])
            if n.op_type == "Conv" and n.input[1] in inits and n.input[0] in on_grid:
                nodes += quantize_weight(n.input[1])
                n.input[1] = weight_dq[n.input[1]]
        nodes.append(n)
        for o in n.output:
            if o in qdq_nodes:  # a graph output keeps its float value: only consumers inside the graph read the DQ
                nodes += qdq_nodes[o]
    g.initializer.extend(new_inits)
    set_nodes(g, nodes)
    return model

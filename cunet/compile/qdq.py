"""Explicit Q/DQ placement for TensorRT: every feature map quantized once, one scale per Concat.

ONNX Runtime's `quantize_static` puts a Q/DQ pair on every tensor it meets, each with the tensor's own scale: a
Concat then reads inputs of different scales and is itself requantized to a third, so TensorRT inserts a
requantizing copy per input and cannot run the Concat in place (TensorRT issues #3861, #4366, #4401: U-Nets).
Here the placement follows TensorRT's explicit-quantization guide instead:

- every Conv's data input is quantized (the int8 convolution), its weights per output channel (axis 0), symmetric,
  zero point 0; biases stay float (TensorRT quantizes them itself);
- every Concat input is quantized, and all inputs of a Concat share one scale: tensors joined through Concats form
  one class whose range is the union of its members' calibrated ranges (NNCF unifies Concat scales the same way),
  so TensorRT propagates the DQs through the Concat and writes every producer's int8 output straight into the
  concatenated buffer. The Concat's output gets no Q/DQ of its own (it is already on that grid): its consumers read
  it without a requantization;
- each tensor is quantized once, and every consumer reads that one DQ. CU-Net is pre-activation (each consumer of
  a concatenated map applies its own BatchNorm → ReLU before its convolution), so the BatchNorm and ReLU sit between
  the map's DQ and the convolution's Q: TensorRT fuses DQ → BatchNorm(scale) → ReLU → Q into one int8-in int8-out
  pointwise kernel. Nothing is folded across the ReLU, so a BatchNorm with a negative scale needs no special case
  (folding a BN into the next convolution's input range would be valid only where its scale is positive);
- a MaxPool or nearest Resize whose output is quantized gets its Q/DQ on its input instead (same scale): the op
  runs on int8. TensorRT moves the Q there itself; OpenVINO, which runs this file on Intel CPUs, does not.

A class spans all U-Nets through the coupled features (block b of U-Net i reads U-Net i-1's block-b features). On a
trained cunet-tiny the ranges of Concats sharing an input are within 3.1x of each other, so one scale costs the
smaller ones at most two bits, and buys int8 producers and in-place Concats (one Q per map). A random-init model's
maps grow from U-Net to U-Net (100x and more): its first U-Nets keep only a few int8 steps, which says nothing
about a trained model.

Node names in `exclude` keep reading float tensors and their weights stay float (`--max-drop`'s float groups).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from cunet.compile.graph import set_nodes

__all__ = ["place_trt_qdq", "concat_classes"]


def concat_classes(model: Any, exclude: Iterable[str] = ()) -> dict[str, str]:
    """Tensor → its class representative: the inputs and output of every Concat not in `exclude` are one class."""
    skip = set(exclude)
    parent: dict[str, str] = {}

    def find(t: str) -> str:
        parent.setdefault(t, t)
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for n in model.graph.node:
        if n.op_type == "Concat" and n.name not in skip:
            root = find(n.output[0])
            for t in n.input:
                parent[find(t)] = root
    return {t: find(t) for t in list(parent)}


def _commutes(node: Any) -> bool:
    """MaxPool and nearest-neighbour Resize: their output is on their input's int8 grid."""
    if node.op_type == "MaxPool":
        return len(node.output) == 1
    if node.op_type == "Resize":
        return next((a.s for a in node.attribute if a.name == "mode"), b"nearest") == b"nearest"
    return False


def _weights(model: Any) -> dict[str, Any]:
    inits = {i.name: i for i in model.graph.initializer}
    # The TorchScript exporter shares identical parameters through Identity nodes.
    inits.update({n.output[0]: inits[n.input[0]] for n in model.graph.node
                  if n.op_type == "Identity" and n.input[0] in inits})
    return inits


def _amax(ranges: dict[str, tuple[float, float]], t: str) -> float:
    if t not in ranges:
        raise KeyError(f"no calibrated range for tensor {t!r}")
    lo, hi = ranges[t]
    return max(abs(lo), abs(hi))


def _quantized_tensors(model: Any, ranges: dict[str, tuple[float, float]], skip: set[str],
                       inits: dict[str, Any]) -> dict[str, float]:
    """Tensor → the |value| its one Q/DQ covers (scale = that / 127), after moving Qs above MaxPool/Resize."""
    producer = {o: n for n in model.graph.node for o in n.output}
    classes = concat_classes(model, skip)
    concat_out = {n.output[0] for n in model.graph.node if n.op_type == "Concat" and n.name not in skip}
    wanted: set[str] = set()
    for n in model.graph.node:
        if n.name in skip:
            continue
        if n.op_type == "Conv":
            wanted.add(n.input[0])
        elif n.op_type == "Concat":
            wanted.update(n.input)
    wanted = {t for t in wanted if t not in inits and t not in concat_out}  # a Concat's output is on its grid
    class_amax: dict[str, float] = {}
    for t, c in classes.items():
        if t in wanted or t in concat_out:
            class_amax[c] = max(class_amax.get(c, 0.0), _amax(ranges, t))
    amax = {t: class_amax[classes[t]] if t in classes else _amax(ranges, t) for t in wanted}
    # Clipping a MaxPool's input at its output's range changes no output (a pooled value beyond it would be in the
    # output's calibrated range); nearest Resize copies values. A tensor read by several nodes moves only when the
    # op is its one reader, so no other reader sees a range made for the op's output.
    readers: dict[str, int] = {}
    for n in model.graph.node:
        for t in n.input:
            readers[t] = readers.get(t, 0) + 1
    moved = True
    while moved:
        moved = False
        for t in sorted(amax):
            p = producer.get(t)
            if (p is not None and p.name not in skip and _commutes(p) and p.input[0] not in inits
                    and p.input[0] not in amax and readers.get(p.input[0]) == 1):
                amax[p.input[0]] = amax.pop(t)
                moved = True
    return amax


def place_trt_qdq(model: Any, ranges: dict[str, tuple[float, float]], exclude: Iterable[str] = ()) -> Any:
    """Insert TensorRT-style Q/DQ into an FP32 ONNX model (in place; see the module docstring).

    Args:
        model: an `onnx.ModelProto` (opset >= 13) with Conv weights as initializers.
        ranges: calibrated (lowest, highest) of every activation tensor that gets quantized.
        exclude: node names that stay float.

    Returns:
        The same model object.
    """
    from onnx import helper, numpy_helper

    g = model.graph
    skip = set(exclude)
    inits = _weights(model)
    producer = {o: n for n in g.node for o in n.output}
    amax = _quantized_tensors(model, ranges, skip, inits)

    zero = "qdq.zero_point"
    new_inits = [numpy_helper.from_array(np.array(0, np.int8), zero)]
    scale_of: dict[float, str] = {}
    dq_of: dict[str, str] = {}
    qdq_nodes: dict[str, list[Any]] = {}
    for t in sorted(amax):
        a = amax[t]
        if a not in scale_of:
            scale_of[a] = f"qdq.scale.{len(scale_of)}"
            new_inits.append(numpy_helper.from_array(np.array(max(a, 1e-8) / 127.0, np.float32), scale_of[a]))
        dq_of[t] = f"{t}.dq"
        qdq_nodes[t] = [
            helper.make_node("QuantizeLinear", [t, scale_of[a], zero], [f"{t}.q"], name=f"{t}/QuantizeLinear"),
            helper.make_node("DequantizeLinear", [f"{t}.q", scale_of[a], zero], [dq_of[t]],
                             name=f"{t}/DequantizeLinear"),
        ]
    on_grid = set(dq_of.values())  # int8 values on one scale: DQ outputs, Concats of them, MaxPool/Resize of them
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

    nodes = [m for t in sorted(amax) if t not in producer for m in qdq_nodes[t]]  # graph inputs first
    for n in g.node:
        if n.name not in skip:
            for i, t in enumerate(n.input):
                if t in dq_of:
                    n.input[i] = dq_of[t]
            if ((n.op_type == "Concat" and all(t in on_grid for t in n.input))
                    or (_commutes(n) and n.input[0] in on_grid)):
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

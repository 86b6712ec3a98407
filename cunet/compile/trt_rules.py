"""The TensorRT Q/DQ rules, checked on an ONNX model before anyone needs a GPU to find out.

TensorRT 11 has no implicit INT8: it builds what the Q/DQ nodes say, and rejects or silently mis-builds the rest.
A model is TensorRT-ready when every QuantizeLinear/DequantizeLinear is int8 with zero point 0, weights (initializer
DQs feeding Conv) are quantized per channel on the output-channel axis (0 for Conv, 1 for ConvTranspose), every
scale is positive, activations have one scale per tensor, no bias is quantized to int32, and the graph has no
ONNX Runtime-specific integer operators (QLinear*, ConvInteger, MatMulInteger). Unequal scales at a Concat's
inputs are legal but cost TensorRT a requantizing copy per input and the in-place Concat, so they are a warning,
not a violation; `strict` makes every warning an error (cunet's own `--recipe tensorrt` has none).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cunet.errors import CunetError
from cunet.limits import refuse_empty

__all__ = ["Violation", "check_trt", "check_trt_model"]

_INTEGER_OPS = ("ConvInteger", "MatMulInteger")


@dataclass(frozen=True)
class Violation:
    """One broken rule (severity "error") or performance advice (severity "warning") at a node."""

    rule: str
    node: str
    message: str
    severity: str = "error"


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return a.i
    return default


def _commutes(node) -> bool:
    """MaxPool and nearest Resize: TensorRT moves Q/DQ across them, their output keeps the input's scale."""
    if node.op_type == "MaxPool":
        return True
    return node.op_type == "Resize" and next((a.s for a in node.attribute if a.name == "mode"), b"nearest") == b"nearest"


def check_trt_model(model, strict: bool = False) -> list[Violation]:
    """Check an `onnx.ModelProto` against the TensorRT Q/DQ rules; returns errors then warnings (empty: clean).

    With `strict`, warnings (performance advice) are returned as errors.
    """
    from onnx import TensorProto, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in g.node if n.op_type == "Constant" and n.attribute}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)

    def tensor(name: str):
        t = inits.get(name) or consts.get(name)
        return None if t is None else numpy_helper.to_array(t)

    out: list[Violation] = []
    for n in g.node:
        if n.op_type.startswith("QLinear") or n.op_type in _INTEGER_OPS:
            out.append(Violation("qdq-only", n.name, f"{n.op_type} is an ONNX Runtime integer op; TensorRT wants Q/DQ"))
            continue
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp_name = n.input[2] if len(n.input) > 2 and n.input[2] else None
        if n.op_type == "QuantizeLinear":
            dtype = _attr(n, "output_dtype", 0) or (inits[zp_name].data_type if zp_name in inits else TensorProto.UINT8)
        else:
            src = inits.get(n.input[0])
            dtype = src.data_type if src is not None else (inits[zp_name].data_type if zp_name in inits else None)
            if dtype is None and n.input[0] in producer and producer[n.input[0]].op_type == "QuantizeLinear":
                q = producer[n.input[0]]
                qzp = q.input[2] if len(q.input) > 2 else None
                dtype = _attr(q, "output_dtype", 0) or (inits[qzp].data_type if qzp in inits else TensorProto.UINT8)
        if dtype is not None and dtype != TensorProto.INT8:
            name = TensorProto.DataType.Name(dtype).lower()
            out.append(Violation("int8", n.name, f"{n.op_type} is {name}; TensorRT Q/DQ must be int8"))
        zp = tensor(zp_name) if zp_name else None
        if zp is not None and np.any(zp != 0):
            out.append(Violation("zero-point", n.name, f"{n.op_type} has nonzero zero point(s); TensorRT needs 0"))
        scale = tensor(n.input[1]) if len(n.input) > 1 else None
        if scale is not None and not np.all(np.isfinite(scale) & (scale > 0)):
            out.append(Violation("scale", n.name, f"{n.op_type} has zero, negative or non-finite scale(s); TensorRT "
                                 "needs positive ones"))
        if n.input[0] not in inits and scale is not None and scale.size > 1:
            out.append(Violation("per-tensor-activation", n.name, f"{n.op_type} quantizes an activation per channel "
                                 f"({scale.size} scales); TensorRT needs one scale per activation tensor"))
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits:
            continue
        w = inits[n.input[0]]
        if w.data_type == TensorProto.INT32:
            out.append(Violation("int32-bias", n.name, "int32 bias quantization; leave biases float for TensorRT"))
            continue
        for c in consumers.get(n.output[0], []):
            if c.op_type in ("Conv", "ConvTranspose") and c.input[1] == n.output[0]:
                # Weights are [out, in, ...] for Conv but [in, out/groups, ...] for ConvTranspose: the output
                # channel axis, the one TensorRT and ONNX Runtime quantize per channel, is 0 resp. 1.
                want = 0 if c.op_type == "Conv" else 1
                axis = _attr(n, "axis", 1)
                if scale is None or scale.size <= 1:
                    out.append(Violation("per-channel", n.name,
                                         f"{c.op_type} weight is per-tensor; use per-channel on axis {want}"))
                elif axis != want:
                    out.append(Violation("per-channel", n.name,
                                         f"{c.op_type} weight scales are on axis {axis}; need axis {want}"))
    for n in g.node:
        if n.op_type != "Concat":
            continue
        scales = []
        for t in n.input:
            p = producer.get(t)
            while p is not None and _commutes(p):  # MaxPool / nearest Resize keep their input's int8 grid
                p = producer.get(p.input[0])
            s = tensor(p.input[1]) if p is not None and p.op_type == "DequantizeLinear" else None
            scales.append(None if s is None else float(np.max(s)))
        known = [s for s in scales if s is not None]
        if len(known) > 1 and not np.allclose(known, known[0], rtol=1e-6):
            out.append(
                Violation("concat-scales", n.name, f"Concat inputs have {len(set(known))} different scales", "warning")
            )
    if strict:
        out = [dataclasses.replace(v, severity="error") for v in out]
    return sorted(out, key=lambda v: v.severity != "error")


def check_trt(model_path: str | os.PathLike, strict: bool = False) -> list[Violation]:
    """Check an ONNX file against the TensorRT Q/DQ rules (see `check_trt_model`; `strict`: warnings are errors).

    Raises:
        CunetError: the file is missing or not a readable ONNX model.
    """
    import onnx

    path = Path(model_path)
    if not path.is_file():
        raise CunetError(f"{path}: no such model file")
    refuse_empty(path)
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf raises several types for truncated/foreign files
        raise CunetError(f"{path}: not a readable ONNX model ({type(e).__name__})") from e
    return check_trt_model(model, strict)

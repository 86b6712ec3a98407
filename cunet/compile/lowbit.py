"""Low-bit CU-Net export: a quantized model as int8 Q/DQ ONNX that ONNX Runtime runs and TensorRT builds.

Export. `torch.fake_quantize_*` exports as QuantizeLinear/DequantizeLinear only for the int8 range, so a 1/2/4-bit
weight cannot be exported as such. Every weight scheme of `cunet.model.quant` is "integer code x one scale per output
channel", so it IS an int8 per-channel weight with zero point 0 whose codes happen to use few values: `export_onnx`
exports the model's deploy form (weights replaced by their quantized values, inputs quantized by ops that export as
Q/DQ), and `LowbitExport.rewrite`, before onnxslim runs, stores each such weight as an int8 initializer + its scales
+ DequantizeLinear(axis 0), exactly the form TensorRT builds and `check_trt` accepts, then proves that every
quantized conv reads its input through a Q/DQ with the step training used (`check_input_qdq`).

Two exporter details matter. The dynamo exporter's optimizer fuses a conv with the BatchNorm that follows it (the
dense layer's 1x1 conv, an adapter before a head): the fused weight is the same codes times a per-channel factor, so
the rewrite takes that factor into the scale, and refuses any weight that is not codes x one number per channel (up
to float32 rounding). The fused BN shift, a conv bias, becomes a float Add after the conv: ONNX Runtime quantizes
the bias of a Q/DQ conv to int32 with scale input step x weight scale (measured: up to 0.07 on heatmaps of peak
0.13, the argmax moved in 59 % of the heatmaps), which PyTorch never does.

The small files made from such an export (bit-packed `.cunetq`, INT4 ONNX) are `cunet.compile.packing`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from cunet.compile.graph import set_nodes

__all__ = ["LowbitExport", "check_input_qdq", "weights_to_qdq"]


# ----------------------------------------------------------------------------------------------------- export


class LowbitExport:
    """The export hook for a quantized `CUNet` (used by `cunet.compile.export.export_onnx`).

    Attributes:
        model: the deploy form to trace (see `cunet.model.quant.deploy_model`).
        meta: the metadata to write: precision "int8" when anything is Q/DQ, `quant` = the model's bits.
        codes: {weight initializer name: (int8 codes, float32 scales [C_out], bits)}.
        steps: {weight name of every conv with quantized inputs: (bits_a, input step)}.
        verify_rule: (factor, floor) of the export check (`cunet.compile.verify`): the FP32 rule for weights-only
            models, whose export is exact, and the low-bit rule when conv inputs are quantized (their rounding flips
            between float32 and float64).
    """

    def __init__(self, model: Any, meta: Any) -> None:
        from cunet.compile import verify
        from cunet.model.quant import QuantConv2d, deploy_model, quant_config_of

        quant = quant_config_of(model)
        if quant is None:
            raise ValueError("LowbitExport needs a quantized model")
        self.model, codes = deploy_model(model)
        self.codes = {k: (q.numpy().astype(np.int8), s.numpy().astype(np.float32), b) for k, (q, s, b) in codes.items()}
        self.steps = {
            f"{name}.weight": (m.bits_a, float(m.frozen_step))
            for name, m in self.model.named_modules()
            if isinstance(m, QuantConv2d) and m.bits_a is not None
        }
        qdq = quant.bits_w is not None or quant.bits_a is not None
        self.meta = dataclasses.replace(meta, precision="int8" if qdq else meta.precision, quant=quant.to_dict())
        self.verify_rule = (
            (verify.VERIFY_FACTOR, verify.VERIFY_FLOOR)
            if quant.bits_a is None
            else (verify.LOWBIT_VERIFY_FACTOR, verify.LOWBIT_VERIFY_FLOOR)
        )

    def rewrite(self, proto: Any) -> Any:
        """Store the quantized weights as int8 + DequantizeLinear and check every input Q/DQ (in place)."""
        proto = weights_to_qdq(proto, self.codes)
        check_input_qdq(proto, self.steps)
        return proto


def check_input_qdq(proto: Any, steps: dict[str, tuple[int, float]]) -> None:
    """Prove that every quantized conv reads its input through the Q/DQ that training used.

    For each conv whose weight is named in `steps`: input ← DequantizeLinear ← QuantizeLinear, both with scale ==
    the step (as float32) and int8 zero point 0, and for fewer than 8 bits a Clip to (2^(k-1) - 1) x step before
    the QuantizeLinear (the int8 saturation does the clipping at 8 bits).

    Raises:
        RuntimeError: a conv's input is not quantized exactly so (an exporter change; a bug).
    """
    from onnx import numpy_helper

    g = proto.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node if n.op_type == "Constant"})
    producer = {o: n for n in g.node for o in n.output}

    def const(name: str) -> np.ndarray | None:
        return consts.get(name)

    def qparams_ok(n: Any, step: float) -> bool:
        scale = const(n.input[1])
        zp = const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        return (
            scale is not None and scale.size == 1 and float(scale) == float(np.float32(step))
            and zp is not None and zp.dtype == np.int8 and not np.any(zp)
        )

    seen = set()
    for conv in g.node:
        if conv.op_type != "Conv":
            continue
        w = conv.input[1].removesuffix("_dequantized")
        if w not in steps:
            continue
        bits, step = steps[w]
        seen.add(w)
        dq = producer.get(conv.input[0])
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or not (qparams_ok(dq, step) and qparams_ok(q, step)):
            raise RuntimeError(f"the input of {w} is not Q/DQ int8 with step {step} and zero point 0")
        if bits < 8:
            clip = producer.get(q.input[0])
            hi = const(clip.input[2]) if clip is not None and clip.op_type == "Clip" and len(clip.input) > 2 else None
            if hi is None or not np.isclose(float(hi), (2 ** (bits - 1) - 1) * step, rtol=1e-6):
                raise RuntimeError(f"the input of {w} is not clipped to {2 ** (bits - 1) - 1} steps before its Q")
    lost = sorted(k for k in set(steps) - seen if not k.startswith("heads."))
    if lost:
        raise RuntimeError(f"convs with quantized inputs not found in the exported graph: {lost[:3]}")


def _channel_scales(w: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, positive scales [C_out]) with codes * scales == w up to float rounding; refuses anything else.

    `w` is the exported weight: the quantized weight itself, or it times a per-channel factor when onnxslim fused
    the following BatchNormalization into the conv (gamma / sqrt(var + eps), possibly negative). Either way it is
    the same integer codes times one number per channel: the least-squares scale (exact in float64 for unfused
    weights) recovers it; a negative one flips the channel's codes, since Q/DQ scales must be positive.
    """
    c = q.shape[0]
    w2, q2 = w.reshape(c, -1).astype(np.float64), q.reshape(c, -1).astype(np.float64)
    norm = (q2 * q2).sum(1)
    scale = np.where(norm > 0, (w2 * q2).sum(1) / np.where(norm > 0, norm, 1), 1.0)
    # A zero scale (an all-zero binary filter) is codes 0 with any positive scale.
    sign = np.where(scale < 0, -1, np.where(scale > 0, 1, 0))
    codes = (q2 * sign[:, None]).astype(np.int8).reshape(q.shape)
    scale = np.abs(scale).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1.0))
    recon = codes.reshape(c, -1).astype(np.float32) * scale[:, None]
    # A fused factor costs at most a couple of float32 roundings: 1e-6 of the channel's scale bounds them.
    if not np.all(np.abs(recon - w2) <= 1e-6 * scale[:, None] * np.abs(q2).max(initial=1)):
        raise RuntimeError("an exported weight is not integer codes x one scale per channel")
    return codes, scale


def weights_to_qdq(proto: Any, codes: dict[str, tuple[np.ndarray, np.ndarray, int]]) -> Any:
    """Store each float Conv weight named in `codes` as int8 codes → DequantizeLinear (per channel, axis 0), in place.

    Args:
        proto: an `onnx.ModelProto` whose Conv weights are initializers named like the PyTorch parameters.
        codes: {initializer name: (int8 codes [C_out, ...], float32 scales [C_out], bits)}; the initializer must be
            these codes times one factor per output channel (the scale, or the scale times a fused BatchNorm factor).

    Returns:
        `proto`.

    Raises:
        RuntimeError: a weight is missing from the graph or is not codes x per-channel factor (an exporter change).
    """
    from onnx import helper, numpy_helper

    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    convs = [n for n in g.node if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in codes]
    found = {n.input[1] for n in convs}
    # Intermediate heads are dead code at inference and leave the graph; every other quantized conv must be there.
    lost = sorted(k for k in set(codes) - found if not k.startswith("heads."))
    if lost:
        raise RuntimeError(f"quantized weights not found in the exported graph: {lost[:3]}")
    dq_nodes = []
    for name in sorted(found):
        q = codes[name][0]
        w = numpy_helper.to_array(inits[name])
        if w.shape != q.shape:
            raise RuntimeError(f"exported weight {name} has shape {w.shape}, its codes {q.shape}")
        try:
            q, scale = _channel_scales(w, q)
        except RuntimeError as e:
            raise RuntimeError(f"{name}: {e}; refusing to rewrite") from None
        g.initializer.extend(
            [
                numpy_helper.from_array(q, f"{name}_quantized"),
                numpy_helper.from_array(scale, f"{name}_scale"),
                numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}_zero_point"),
            ]
        )
        dq_nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"],
                [f"{name}_dequantized"],
                name=f"{name}/DequantizeLinear",
                axis=0,
            )
        )
    after: dict[str, Any] = {}
    for n in convs:
        n.input[1] = f"{n.input[1]}_dequantized"
        if len(n.input) > 2 and n.input[2]:
            # A bias here is a BatchNorm the exporter fused into the conv. ONNX Runtime would quantize it to int32
            # with scale input_step x weight_scale (as for an int8 conv), an error of up to half that step that
            # PyTorch, which applies the BN in float, never makes: keep it a float Add after the conv instead.
            bias = numpy_helper.to_array(inits[n.input[2]])
            out = n.output[0]
            n.output[0] = f"{out}_nobias"
            b_name = f"{n.input[2]}_nchw"
            g.initializer.append(numpy_helper.from_array(bias.reshape(1, -1, 1, 1), b_name))
            after[n.output[0]] = helper.make_node("Add", [n.output[0], b_name], [out], name=f"{n.name}/bias")
            del n.input[2]
    nodes = list(dq_nodes)
    for n in g.node:  # DQ nodes read only initializers: first keeps the graph topologically sorted
        nodes.append(n)
        if n.output and n.output[0] in after:
            nodes.append(after[n.output[0]])
    set_nodes(g, nodes)
    return proto

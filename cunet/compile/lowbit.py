"""Low-bit CU-Net artifacts: the Q/DQ ONNX export of a quantized model, the bit-packed `.cunetq` file, INT4 ONNX.

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

Packing. An int8 weight whose codes are {-1, +1} needs 1 bit per weight, {-1, 0, +1} 2 bits, [-8, 7] 4 bits. The
`.cunetq` file holds the ONNX model with those initializers emptied, followed by their codes bit-packed with
`numpy.packbits`; everything else (graph, scales, BatchNorm, full-precision stem and head) is kept as it is.
Unpacking refills the initializers and re-serialises: the result is the original ONNX file byte for byte, which
`pack` proves before it writes and `unpack` checks against the recorded sha256.

Layout of a `.cunetq` file: the magic `CUNETQ\\x00\\x01`, a little-endian uint32 header length, the JSON header
({"format", "version", "onnx_bytes", "onnx_sha256", "stripped_bytes", "tensors": [{"name", "bits", "count",
"nbytes"}]}), the stripped ONNX model, then each tensor's packed codes in header order.

INT4. ONNX (opset 21) has an INT4 type and the installed ONNX Runtime (1.32, CPU) runs DequantizeLinear from INT4
initializers per channel: `to_int4` turns every weight whose codes fit [-8, 7] into one, a self-contained model that
is as small as the packed file for 4-bit weights. It is an ONNX Runtime artifact: TensorRT's Q/DQ rules (and
`check_trt`) want int8.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cunet.compile.graph import set_nodes
from cunet.errors import CunetError
from cunet.io import write_bytes

__all__ = [
    "LowbitExport",
    "LOWBIT_VERIFY_ATOL",
    "check_input_qdq",
    "weights_to_qdq",
    "to_int4",
    "write_int4",
    "PackReport",
    "pack",
    "pack_bytes",
    "unpack",
    "unpack_bytes",
    "pack_codes",
    "unpack_codes",
    "code_bits",
    "MAGIC",
    "SUFFIX",
]

MAGIC = b"CUNETQ\x00\x01"
SUFFIX = ".cunetq"
FORMAT_VERSION = 1
INT4_OPSET = 21  # the first opset with INT4 DequantizeLinear
INT4_IR_VERSION = 10


# ----------------------------------------------------------------------------------------------------- export


#: End-to-end check of an export whose conv inputs are quantized, relative to max(1, max |heatmap|) like
#: `cunet.compile.export.VERIFY_ATOL`. PyTorch and ONNX Runtime sum convolutions in different orders (~1e-6
#: relative), so a conv input within that distance of a rounding boundary lands one step apart in the two, and
#: such flips cascade through later quantizers. Measured on tiny 1/2/4/8-bit models with 8-bit inputs: up to 0.047
#: on random-noise inputs, up to 0.016 on synthetic faces. 0.1 covers that with margin; it is a smoke check (a
#: wrong step or a missing clip is caught exactly, by `check_input_qdq`, not by this number). Weights-only models
#: have no rounding after export and keep the FP32 tolerance.
LOWBIT_VERIFY_ATOL = 0.1


class LowbitExport:
    """The export hook for a quantized `CUNet` (used by `cunet.compile.export.export_onnx`).

    Attributes:
        model: the deploy form to trace (see `cunet.model.quant.deploy_model`).
        meta: the metadata to write: precision "int8" when anything is Q/DQ, `quant` = the model's bits.
        codes: {weight initializer name: (int8 codes, float32 scales [C_out], bits)}.
        steps: {weight name of every conv with quantized inputs: (bits_a, input step)}.
        verify_atol: the end-to-end tolerance of the export check (see `LOWBIT_VERIFY_ATOL`).
    """

    def __init__(self, model: Any, meta: Any) -> None:
        from cunet.compile.export import VERIFY_ATOL
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
        self.verify_atol = VERIFY_ATOL if quant.bits_a is None else LOWBIT_VERIFY_ATOL

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


# ------------------------------------------------------------------------------------------------ bit packing


def code_bits(codes: np.ndarray) -> int | None:
    """The fewest bits (1, 2 or 4) that hold these int8 codes losslessly, None when they need all 8.

    1 bit holds {-1, +1} (binary weights), 2 bits {-2 .. 1} (ternary uses {-1, 0, 1}), 4 bits {-8 .. 7}.
    """
    if codes.size == 0:
        return None
    lo, hi = int(codes.min()), int(codes.max())
    if np.all(np.abs(codes) == 1):
        return 1
    if lo >= -2 and hi <= 1:
        return 2
    if lo >= -8 and hi <= 7:
        return 4
    return None


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Bit-pack int8 codes: 1 bit (+1 → 1, -1 → 0) or 2/4-bit two's complement, most significant bit first."""
    flat = np.asarray(codes, np.int8).reshape(-1)
    if bits == 1:
        return np.packbits(flat > 0).tobytes()
    if bits not in (2, 4):
        raise ValueError(f"cannot pack {bits}-bit codes")
    fields = (flat.view(np.uint8) & ((1 << bits) - 1)).reshape(-1, 1)
    planes = np.unpackbits(fields, axis=1)[:, 8 - bits :]
    return np.packbits(planes.reshape(-1)).tobytes()


def unpack_codes(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of `pack_codes`: `count` int8 codes."""
    raw = np.frombuffer(data, np.uint8)
    if bits == 1:
        return np.where(np.unpackbits(raw, count=count) == 1, 1, -1).astype(np.int8)
    planes = np.unpackbits(raw, count=count * bits).reshape(count, bits)
    fields = np.packbits(np.pad(planes, ((0, 0), (8 - bits, 0))), axis=1).reshape(-1).astype(np.int16)
    return np.where(fields >= 1 << (bits - 1), fields - (1 << bits), fields).astype(np.int8)


def _packable(proto: Any) -> list[Any]:
    from onnx import TensorProto

    g = proto.graph
    dq_inputs = {n.input[0] for n in g.node if n.op_type == "DequantizeLinear"}
    return [i for i in g.initializer if i.name in dq_inputs and i.data_type == TensorProto.INT8 and i.raw_data]


@dataclass(frozen=True)
class PackReport:
    """What `pack` / `unpack` did.

    Attributes:
        source, output: the files read and written.
        onnx_bytes: size of the ONNX model; packed_bytes: size of the `.cunetq` file.
        tensors: how many initializers were bit-packed, per bit width ({"1": n, "2": n, "4": n}).
        onnx_sha256: sha256 of the ONNX model (the unpacked file has exactly this hash).
    """

    source: str
    output: str
    onnx_bytes: int
    packed_bytes: int
    tensors: dict[str, int]
    onnx_sha256: str

    @property
    def ratio(self) -> float:
        """ONNX size / packed size."""
        return self.onnx_bytes / self.packed_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ratio": self.ratio}


def pack_bytes(onnx_bytes: bytes, where: str = "model") -> tuple[bytes, dict[str, Any]]:
    """Pack an ONNX model held in memory; returns (`.cunetq` bytes, header). See the module docstring."""
    proto = _parse_onnx(onnx_bytes, where)
    entries, blobs = [], []
    for init in _packable(proto):
        codes = np.frombuffer(init.raw_data, np.int8)
        bits = code_bits(codes)
        if bits is None:
            continue
        blob = pack_codes(codes, bits)
        entries.append({"name": init.name, "bits": bits, "count": int(codes.size), "nbytes": len(blob)})
        blobs.append(blob)
        init.raw_data = b""
    stripped = proto.SerializeToString()
    header = {
        "format": "cunetq",
        "version": FORMAT_VERSION,
        "onnx_bytes": len(onnx_bytes),
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "stripped_bytes": len(stripped),
        "tensors": entries,
    }
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    data = MAGIC + struct.pack("<I", len(head)) + head + stripped + b"".join(blobs)
    # Prove the promise before anything is written: unpacking gives the very same bytes. A model serialised by
    # another tool in a non-canonical field order would not round-trip; it is refused rather than altered.
    try:
        same = unpack_bytes(data, where) == onnx_bytes
    except CunetError:  # the sha256 check: the same finding
        same = False
    if not same:
        raise CunetError(
            f"{where}: this ONNX file does not re-serialise byte for byte (not written by cunet/onnx?); "
            f"re-save it with onnx.save and pack that"
        )
    return data, header


def _parse_onnx(data: bytes, where: str) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise CunetError(f"{where}: not a readable ONNX model ({type(e).__name__})") from e
    if not proto.graph.node:
        raise CunetError(f"{where}: not an ONNX model (empty graph)")
    return proto


def _split(data: bytes, where: str) -> tuple[dict[str, Any], bytes, int]:
    # (header, stripped ONNX bytes, offset of the first packed tensor), validating sizes against the header.
    if data[: len(MAGIC)] != MAGIC:
        raise CunetError(f"{where}: not a cunet packed model (bad magic; expected a {SUFFIX} file from `cunet pack`)")
    try:
        (n,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4
        header = json.loads(data[start : start + n].decode())
        if header.get("version", 0) > FORMAT_VERSION:
            raise CunetError(f"{where}: packed format {header['version']} is newer than this cunet; upgrade cunet")
        pos = start + n + header["stripped_bytes"]
        stripped = data[start + n : pos]
        total = pos + sum(t["nbytes"] for t in header["tensors"])
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise CunetError(f"{where}: damaged packed model header ({type(e).__name__})") from e
    if len(data) != total:
        raise CunetError(f"{where}: truncated or padded packed model ({len(data)} bytes, header says {total})")
    return header, stripped, pos


def unpack_bytes(data: bytes, where: str = "packed model") -> bytes:
    """The ONNX model bytes of a `.cunetq` file held in memory.

    Raises:
        CunetError: not a `.cunetq` file, a newer format, truncated, or corrupt (hash mismatch).
    """
    header, stripped, pos = _split(data, where)
    proto = _parse_onnx(stripped, where)
    inits = {i.name: i for i in proto.graph.initializer}
    for t in header["tensors"]:
        if t["name"] not in inits or t["bits"] not in (1, 2, 4):
            raise CunetError(f"{where}: damaged packed model (tensor {t['name']!r})")
        inits[t["name"]].raw_data = unpack_codes(data[pos : pos + t["nbytes"]], t["bits"], t["count"]).tobytes()
        pos += t["nbytes"]
    out = proto.SerializeToString()
    if hashlib.sha256(out).hexdigest() != header["onnx_sha256"]:
        raise CunetError(f"{where}: packed model is corrupt (unpacked ONNX does not match its recorded sha256)")
    return out


def _counts(header: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in header["tensors"]:
        counts[str(t["bits"])] = counts.get(str(t["bits"]), 0) + 1
    return counts


def _read(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise CunetError(f"{path}: no such {what} file")
    return path.read_bytes()


def pack(onnx_path: str | os.PathLike, out_path: str | os.PathLike) -> PackReport:
    """Write the bit-packed `.cunetq` form of an ONNX model (atomically); `unpack` restores it byte for byte.

    Raises:
        CunetError: missing or unreadable model, or a model that does not round-trip byte for byte.
    """
    src = Path(onnx_path)
    onnx_bytes = _read(src, "ONNX")
    data, header = pack_bytes(onnx_bytes, str(src))
    write_bytes(out_path, data)
    return PackReport(str(src), str(out_path), len(onnx_bytes), len(data), _counts(header), header["onnx_sha256"])


def unpack(packed_path: str | os.PathLike, out_path: str | os.PathLike) -> PackReport:
    """Restore the ONNX model of a `.cunetq` file (atomically), identical to the file that was packed."""
    src = Path(packed_path)
    data = _read(src, "packed model")
    onnx_bytes = unpack_bytes(data, str(src))
    write_bytes(out_path, onnx_bytes)
    header = _split(data, str(src))[0]
    return PackReport(str(src), str(out_path), len(onnx_bytes), len(data), _counts(header), header["onnx_sha256"])


# ------------------------------------------------------------------------------------------------------- INT4


def _pack_int4(codes: np.ndarray) -> bytes:
    # ONNX INT4: two values per byte, the first in the low nibble.
    flat = codes.reshape(-1).astype(np.int8).view(np.uint8) & 0x0F
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8).tobytes()


def to_int4(proto: Any) -> tuple[Any, int]:
    """Store every int8 DequantizeLinear weight whose codes fit [-8, 7] as ONNX INT4 (in place; opset ≥ 21).

    Returns:
        (`proto`, number of initializers converted).
    """
    from onnx import TensorProto, helper

    converted = 0
    g = proto.graph
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    replace: dict[str, Any] = {}
    for init in _packable(proto):
        codes = np.frombuffer(init.raw_data, np.int8)
        if code_bits(codes) is None:
            continue
        packed = _pack_int4(codes)
        replace[init.name] = helper.make_tensor(init.name, TensorProto.INT4, list(init.dims), packed, raw=True)
        for dq in consumers.get(init.name, []):
            if len(dq.input) > 2 and dq.input[2]:
                replace.setdefault(dq.input[2], None)
        converted += 1
    for i, init in enumerate(list(g.initializer)):
        if init.name not in replace:
            continue
        new = replace[init.name]
        if new is None:  # a zero point: same shape, INT4 zeros
            size = int(np.prod(init.dims)) if init.dims else 1
            new = helper.make_tensor(init.name, TensorProto.INT4, list(init.dims), _pack_int4(np.zeros(size)), raw=True)
        g.initializer[i].CopyFrom(new)
    for op in proto.opset_import:
        if op.domain in ("", "ai.onnx") and op.version < INT4_OPSET:
            op.version = INT4_OPSET
    proto.ir_version = max(proto.ir_version, INT4_IR_VERSION)
    return proto, converted


def write_int4(onnx_path: str | os.PathLike, out_path: str | os.PathLike) -> dict[str, Any]:
    """Write the INT4 form of a low-bit Q/DQ ONNX model (see `to_int4`); checks it and runs it once in ORT.

    Returns:
        {"source", "output", "onnx_bytes", "int4_bytes", "converted", "max_abs_diff"} where max_abs_diff compares the
        INT4 model with the source on one random input (both dequantize to the same float weights: expect ~0).

    Raises:
        CunetError: missing/unreadable model, or one without weights that fit 4 bits.
    """
    import onnx
    import onnxruntime as ort

    src = Path(onnx_path)
    data = _read(src, "ONNX")
    proto, converted = to_int4(_parse_onnx(data, str(src)))
    if not converted:
        raise CunetError(f"{src}: no int8 DequantizeLinear weights with codes in [-8, 7]; export a <=4-bit model first")
    onnx.checker.check_model(proto)
    out_bytes = proto.SerializeToString()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    a = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(out_bytes, so, providers=["CPUExecutionProvider"])
    inp = a.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    diff = float(np.max(np.abs(a.run(None, {inp.name: x})[0] - b.run(None, {inp.name: x})[0])))
    write_bytes(out_path, out_bytes)
    return {
        "source": str(src),
        "output": str(out_path),
        "onnx_bytes": len(data),
        "int4_bytes": len(out_bytes),
        "converted": converted,
        "max_abs_diff": diff,
    }

"""Small files for low-bit models: the bit-packed `.cunetq` file and INT4 ONNX, made from a `cunet export` of a
quantized model (`cunet.compile.lowbit`).

Packing. An int8 weight whose codes are {-1, +1} needs 1 bit per weight, {-1, 0, +1} 2 bits, [-8, 7] 4 bits. The
`.cunetq` file holds the ONNX model with those initializers emptied, followed by their codes bit-packed with
`numpy.packbits`; everything else (graph, scales, BatchNorm, full-precision stem and head) is kept as it is.
Unpacking refills the initializers and re-serialises: the result is the original ONNX file byte for byte, which
`pack` proves before it writes and `unpack` checks against the recorded sha256. A model none of whose weights fits
1, 2 or 4 bits (FP32, a PTQ INT8 recipe, 8-bit QAT) is refused before anything is written: its file would only grow.

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
from pathlib import Path
from typing import Any

import numpy as np

from cunet.errors import CunetError
from cunet.io import write_bytes
from cunet.limits import refuse_empty

__all__ = [
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


@dataclasses.dataclass(frozen=True)
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
    packable = _packable(proto)
    for init in packable:
        codes = np.frombuffer(init.raw_data, np.int8)
        bits = code_bits(codes)
        if bits is None:
            continue
        blob = pack_codes(codes, bits)
        entries.append({"name": init.name, "bits": bits, "count": int(codes.size), "nbytes": len(blob)})
        blobs.append(blob)
        init.raw_data = b""
    if not entries:  # the packed file would be the model plus a header: bigger, and nothing gained
        what = "its int8 weights need all 8 bits" if packable else "no int8 weights: a float model"
        raise CunetError(f"{where}: no low-bit weights to pack ({what}); `cunet pack` shrinks models trained with "
                         "--bits-w 1, 2 or 4 and exported")
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
    refuse_empty(path)
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

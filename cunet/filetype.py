"""What kind of model file a path holds, from its first bytes, so a wrong file reads as "wrong file", not corruption.

A `.pt` checkpoint handed to an ONNX command used to read "not a readable ONNX model (DecodeError)", and an `.onnx`
handed to `export` or `bench` "not a complete torch.save archive; truncated?": both true, both misleading. Commands
call `require(path, kind)` before loading; it raises one line saying what the file is and what to do with it, and
stays silent for a file it cannot place (the real loader then reports the real problem).

Signatures: torch.save writes a zip archive holding `data.pkl` (or, before torch 1.6 and in the original CU-Net
`.pth.tar` files, a pickle stream starting with 0x80); an ONNX model is a protobuf whose first field is `ir_version`
(byte 0x08); TensorRT engines and OpenVINO IR are recognised by their suffixes (`.engine`/`.plan`, `.xml`).
"""

from __future__ import annotations

import os
import zipfile
from enum import Enum
from pathlib import Path

from cunet.errors import CunetError
from cunet.limits import refuse_empty

__all__ = ["ModelKind", "sniff", "require"]


class ModelKind(str, Enum):
    """The model file kinds cunet commands take."""

    CHECKPOINT = "checkpoint"  # torch.save: `cunet train` output, `.pt`
    ONNX = "onnx"
    ENGINE = "engine"  # TensorRT
    OPENVINO = "openvino"  # OpenVINO IR (.xml + .bin)
    UNKNOWN = "unknown"


_WHAT = {
    ModelKind.CHECKPOINT: "a PyTorch checkpoint",
    ModelKind.ONNX: "an ONNX model",
    ModelKind.ENGINE: "a TensorRT engine",
    ModelKind.OPENVINO: "an OpenVINO IR model",
}


def sniff(path: str | os.PathLike) -> ModelKind:
    """The kind of model file at `path` (UNKNOWN for a missing, empty or unrecognised file)."""
    path = Path(path)
    if path.suffix.lower() in (".engine", ".plan", ".trt"):
        return ModelKind.ENGINE
    if path.suffix.lower() == ".xml":
        return ModelKind.OPENVINO
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return ModelKind.UNKNOWN
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                if any(n.endswith("data.pkl") for n in z.namelist()):
                    return ModelKind.CHECKPOINT
        except (zipfile.BadZipFile, OSError):
            return ModelKind.CHECKPOINT if path.suffix.lower() in (".pt", ".pth", ".tar") else ModelKind.UNKNOWN
        return ModelKind.UNKNOWN
    if head[:1] == b"\x80" and path.suffix.lower() in (".pt", ".pth", ".tar", ".ckpt", ".bin"):
        return ModelKind.CHECKPOINT
    if head[:1] == b"\x08":
        return ModelKind.ONNX
    return ModelKind.UNKNOWN


def require(path: str | os.PathLike, want: ModelKind | str, command: str) -> None:
    """Raise a one-line `CunetError` when `path` is clearly another kind of model file than `want`.

    Args:
        path: the model file given to `command`.
        want: the kind the command reads (a `ModelKind` or its value).
        command: the cunet command, for the advice (e.g. "quantize").

    Raises:
        CunetError: e.g. "m.pt: this is a PyTorch checkpoint, not an ONNX model: export it first
            (cunet export m.pt -o m.onnx)"; "m.onnx: empty file" for a 0-byte file.
    """
    refuse_empty(path)  # "empty file", as every reader says it, before "not a readable ..." of any loader
    want = ModelKind(want)
    kind = sniff(path)
    if kind in (want, ModelKind.UNKNOWN):
        return
    path = Path(path)
    head = f"{path}: this is {_WHAT[kind]}, not {_WHAT[want]}"
    if want is ModelKind.ONNX and kind is ModelKind.CHECKPOINT:
        advice = f"export it first (cunet export {path} -o {path.with_suffix('.onnx').name}), then cunet {command}"
    elif want is ModelKind.CHECKPOINT and kind is ModelKind.ONNX:
        advice = (f"`cunet {command}` starts from the .pt checkpoint that `cunet train` writes (the ONNX model is "
                  "made from it)")
    elif want is ModelKind.ONNX and kind is ModelKind.ENGINE:
        advice = f"`cunet {command}` reads the ONNX model the engine was built from"
    else:
        advice = f"`cunet {command}` needs {_WHAT[want]}"
    raise CunetError(f"{head}: {advice}")

"""What kind of model file a path holds, from its first bytes, so a wrong file reads as "wrong file", not corruption.

A `.pt` checkpoint handed to an ONNX command used to read "not a readable ONNX model (DecodeError)", and an `.onnx`
handed to `export` or `bench` "not a complete torch.save archive; truncated?": both true, both misleading. Commands
call `require(path, kind)` before loading; it raises one line saying what the file is and what to do with it, and
stays silent for a file it cannot place (the real loader then reports the real problem).

Signatures: torch.save writes a zip archive holding `data.pkl` (or, before torch 1.6 and in the original CU-Net
`.pth.tar` files, a pickle stream starting with 0x80); an ONNX model is a protobuf whose first field is `ir_version`
(byte 0x08); TensorRT engines and OpenVINO IR are recognised by their suffixes (`.engine`/`.plan`, `.xml`).
A checkpoint of the original CU-Net code is a torch.save file whose pickle names the original's stem weight
(`features.conv0.weight`, with or without `module.`) and not cunet's header: pickles store dict keys as plain UTF-8,
so the bytes are searched without unpickling anything (and without torch). Every command that reads a model then
says to run `cunet import-original` instead of reporting a foreign or truncated checkpoint.
"""

from __future__ import annotations

import os
import zipfile
from enum import Enum
from pathlib import Path

from cunet.errors import CunetError
from cunet.limits import refuse_empty

__all__ = ["ModelKind", "sniff", "require", "import_original_advice"]


class ModelKind(str, Enum):
    """The model file kinds cunet commands take."""

    CHECKPOINT = "checkpoint"  # torch.save: `cunet train` output, `.pt`
    ORIGINAL = "original"  # torch.save of the original CU-Net code (`.pth.tar`): `cunet import-original` reads it
    ONNX = "onnx"
    ENGINE = "engine"  # TensorRT
    OPENVINO = "openvino"  # OpenVINO IR (.xml + .bin)
    UNKNOWN = "unknown"


_WHAT = {
    ModelKind.CHECKPOINT: "a PyTorch checkpoint",
    ModelKind.ORIGINAL: "a checkpoint of the original CU-Net code",
    ModelKind.ONNX: "an ONNX model",
    ModelKind.ENGINE: "a TensorRT engine",
    ModelKind.OPENVINO: "an OpenVINO IR model",
}


#: Bytes only a pickle of the original code's state dict holds (its stem conv), and only a cunet checkpoint holds.
_ORIGINAL_KEY = b"features.conv0.weight"
_CUNET_HEADER = b"cunet-checkpoint"
#: How much of a legacy (pre-zip) torch.save file to search: its pickle of names comes before the tensor bytes, and
#: the largest original model's (16 U-Nets) names take about 0.3 MB.
_LEGACY_HEAD_BYTES = 8 << 20


def _torch_kind(pickled: bytes) -> ModelKind:
    if _ORIGINAL_KEY in pickled and _CUNET_HEADER not in pickled:
        return ModelKind.ORIGINAL
    return ModelKind.CHECKPOINT


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
                pickles = [n for n in z.namelist() if n.endswith("data.pkl")]
                return _torch_kind(z.read(pickles[0])) if pickles else ModelKind.UNKNOWN
        except (zipfile.BadZipFile, OSError):
            return ModelKind.CHECKPOINT if path.suffix.lower() in (".pt", ".pth", ".tar") else ModelKind.UNKNOWN
    if head[:1] == b"\x80" and path.suffix.lower() in (".pt", ".pth", ".tar", ".ckpt", ".bin"):
        with open(path, "rb") as f:
            return _torch_kind(f.read(_LEGACY_HEAD_BYTES))
    if head[:1] == b"\x08":
        return ModelKind.ONNX
    return ModelKind.UNKNOWN


def _base_name(path: Path) -> str:
    """`face-8.pth.tar` → `face-8`: the name without the checkpoint suffixes, for the advice's output names."""
    name = path.name
    for suffix in (".tar", ".pth", ".pt"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def import_original_advice(path: str | os.PathLike, then: str = "") -> str:
    """One line for an original CU-Net checkpoint given where a cunet model is expected: what it is, what to run.

    Args:
        path: the original checkpoint.
        then: what to do with the converted `.pt` afterwards (e.g. "then cunet evaluate face-8.pt ..."); empty: "use
            the .pt it writes".
    """
    path = Path(path)
    pt = f"{_base_name(path)}.pt"
    return (f"{path}: this is a checkpoint of the original CU-Net code: convert it first "
            f"(cunet import-original {path} -o {pt}), {then or f'then use {pt}'}")


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
    if kind is ModelKind.ORIGINAL:
        pt = f"{_base_name(path)}.pt"
        then = (f"then cunet {command} {pt}" if want is ModelKind.CHECKPOINT else
                f"export it (cunet export {pt} -o {_base_name(path)}.onnx), then cunet {command}")
        raise CunetError(import_original_advice(path, then))
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

"""`<engine>.manifest.json`: where a TensorRT engine came from, and the refusal to run it anywhere else.

A serialised TensorRT engine is a binary built for one TensorRT version and one GPU model; loaded elsewhere it is
rejected at best and misbehaves at worst, and nothing in the file says why. So `cunet compile` writes a manifest
beside every engine: the TensorRT version, GPU name and compute capability it was built with, the precision and
shape profile, the source model's and calibration's hashes, the cunet version, the engine's own sha256 and the
model metadata (`ModelMeta`, under the "cunet" key, because an engine cannot hold metadata). Before an engine is
deserialised, `check_compatible` compares the manifest with the running machine and refuses with one line naming
every field that differs.

This module never imports TensorRT: the running TensorRT version is passed in by the caller, which imports TensorRT
only after a CUDA device was seen.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import cunet
from cunet.errors import CunetError
from cunet.io import sha256_file, write_json
from cunet.limits import read_limited_text
from cunet.runtime.meta import META_KEY, PRECISIONS, ModelMeta, engine_manifest_path

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_SUFFIX",
    "DeviceInfo",
    "EngineManifest",
    "manifest_path",
    "read_manifest",
    "write_manifest",
    "check_compatible",
    "current_device",
]

MANIFEST_FORMAT = "cunet-engine-manifest"
MANIFEST_FORMAT_VERSION = 1
#: The full engine file name is kept (`a.engine.manifest.json`), so `a.engine` and `a.plan` never share one.
MANIFEST_SUFFIX = ".manifest.json"


#: `model.engine` → `model.engine.manifest.json` (defined once, in `cunet.runtime.meta`).
manifest_path = engine_manifest_path


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is tied to: the TensorRT version and the GPU.

    Attributes:
        tensorrt_version: `tensorrt.__version__`, e.g. "10.3.0".
        gpu_name: the CUDA device name, e.g. "NVIDIA GeForce RTX 4090" or "Orin".
        compute_capability: "major.minor", e.g. "8.9".
    """

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


def current_device(tensorrt_version: str, device: int = 0) -> DeviceInfo:
    """The running machine's `DeviceInfo` for CUDA device `device` (asked through `cunet.runtime.cuda`, which is
    safe without a GPU).

    Raises:
        CunetError: no CUDA device is visible, or none with that index.
    """
    from cunet.runtime import cuda

    if not cuda.available():
        raise CunetError("no CUDA device is visible on this machine; TensorRT engines need one")
    props = cuda.properties(device)
    return DeviceInfo(str(tensorrt_version), props.name, props.compute_capability)


@dataclass(frozen=True)
class EngineManifest:
    """The provenance of one engine (the JSON beside it).

    Attributes:
        engine: the engine's file name.
        engine_sha256: sha256 of the engine bytes (a rebuilt engine with a stale manifest is caught).
        tensorrt_version, gpu_name, compute_capability: what built it (`DeviceInfo`).
        precision: "fp32", "fp16" or "int8".
        strongly_typed: built as a strongly typed network (always on TensorRT 11; int8/fp16-typed models on 10).
        builder_flags: TensorRT 10 builder precision flags used instead of strong typing (e.g. ["FP16"]), else [].
        input_name: the network input; shapes: "min" / "opt" / "max" input shapes of the optimisation profile.
        workspace_mb: the workspace pool limit in MB (None: TensorRT's default).
        source_model: file name of the ONNX model; source_sha256: its sha256.
        calibration_sha256: for INT8, a hash of the Q/DQ scales and zero points the model carries (which
            calibration it embodies, independent of the weights); None otherwise.
        cunet_version: the cunet that built it.
        tf32: whether TensorRT could use TF32 for float tensors (False for FP32 engines; None: not recorded).
        dla_core: the DLA core the engine runs on (Jetson, `cunet compile --dla`), None for GPU-only engines.
        meta: the model metadata (`ModelMeta`), stored under the "cunet" key.
    """

    engine: str
    engine_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    strongly_typed: bool
    input_name: str
    shapes: dict[str, list[int]]
    source_model: str
    source_sha256: str
    meta: ModelMeta = field(hash=False)
    builder_flags: tuple[str, ...] = ()
    workspace_mb: int | None = None
    calibration_sha256: str | None = None
    cunet_version: str = cunet.__version__
    tf32: bool | None = None
    dla_core: int | None = None

    def __post_init__(self) -> None:
        # A hand-edited or damaged manifest must fail here as one line, not later inside a comparison or a slice.
        texts = ("engine", "engine_sha256", "tensorrt_version", "gpu_name", "compute_capability", "input_name",
                 "source_model", "source_sha256", "cunet_version")
        bad = [n for n in texts if not isinstance(getattr(self, n), str)]
        if not (self.calibration_sha256 is None or isinstance(self.calibration_sha256, str)):
            bad.append("calibration_sha256")
        if not isinstance(self.strongly_typed, bool):
            bad.append("strongly_typed")
        if not (self.workspace_mb is None or (type(self.workspace_mb) is int and self.workspace_mb >= 1)):
            bad.append("workspace_mb")
        if not (self.tf32 is None or isinstance(self.tf32, bool)):
            bad.append("tf32")
        if not (self.dla_core is None or (type(self.dla_core) is int and self.dla_core >= 0)):
            bad.append("dla_core")
        if bad:
            raise CunetError(f"invalid engine manifest: wrong type or value for {', '.join(bad)}")
        if self.precision not in PRECISIONS:
            raise CunetError(f"invalid engine manifest: precision must be one of {PRECISIONS}, got {self.precision!r}")
        if set(self.shapes) != {"min", "opt", "max"}:
            raise CunetError(f"invalid engine manifest: shapes need min, opt and max, got {sorted(self.shapes)}")

    @property
    def device(self) -> DeviceInfo:
        """The `DeviceInfo` the engine was built for."""
        return DeviceInfo(self.tensorrt_version, self.gpu_name, self.compute_capability)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written beside the engine."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "meta"}
        d["builder_flags"] = list(self.builder_flags)
        d["shapes"] = {k: list(v) for k, v in self.shapes.items()}
        header = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_FORMAT_VERSION}
        return {**header, **d, META_KEY: self.meta.to_dict()}

    @classmethod
    def from_dict(cls, d: Any, where: str = "engine manifest") -> "EngineManifest":
        """Rebuild from `to_dict()` output; anything else is a one-line `CunetError` naming `where`."""
        if not isinstance(d, dict) or d.get("format") != MANIFEST_FORMAT:
            raise CunetError(f"{where}: not a cunet engine manifest (no format {MANIFEST_FORMAT!r})")
        version = d.get("format_version", 1)
        if type(version) is not int:
            raise CunetError(f"{where}: invalid engine manifest: format_version must be an integer")
        if version > MANIFEST_FORMAT_VERSION:
            raise CunetError(f"{where}: manifest format {version} is newer than this cunet understands")
        names = {f.name for f in fields(cls)} - {"meta"}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING} - {"meta"}
        body = {k: v for k, v in d.items() if k not in ("format", "format_version", META_KEY)}
        missing, unknown = sorted(required - set(body)), sorted(set(body) - names)
        if missing or unknown or META_KEY not in d:
            missing += [] if META_KEY in d else [META_KEY]
            raise CunetError(f"{where}: invalid engine manifest: missing {missing}, unknown {unknown}")
        try:
            meta = ModelMeta.from_dict(d[META_KEY])
            shapes = {k: [int(v) for v in body["shapes"][k]] for k in body["shapes"]}
            return cls(**{**body, "shapes": shapes, "builder_flags": tuple(body.get("builder_flags", ())),
                          "meta": meta})
        except (TypeError, ValueError, AttributeError) as e:
            raise CunetError(f"{where}: invalid engine manifest ({e})") from e
        except CunetError as e:
            raise CunetError(f"{where}: {e}") from e


def write_manifest(engine_path: str | os.PathLike, manifest: EngineManifest) -> Path:
    """Atomically write `manifest` beside `engine_path`; returns the manifest's path."""
    out = manifest_path(engine_path)
    write_json(out, manifest.to_dict())
    return out


def read_manifest(engine_path: str | os.PathLike) -> EngineManifest:
    """The manifest of an engine.

    Raises:
        CunetError: the manifest is missing, not JSON, or not a valid cunet engine manifest.
    """
    path = manifest_path(engine_path)
    if not path.is_file():
        raise CunetError(f"{engine_path}: no {path.name} beside the engine (build engines with `cunet compile`)")
    try:
        d = json.loads(read_limited_text(path))
    except json.JSONDecodeError as e:
        raise CunetError(f"{path}: not valid JSON ({e})") from e
    return EngineManifest.from_dict(d, str(path))


def check_compatible(engine_path: str | os.PathLike, manifest: EngineManifest, running: DeviceInfo) -> None:
    """Refuse an engine built for another TensorRT version or GPU, or whose bytes changed since its manifest.

    TensorRT engines are only valid for the exact TensorRT version and GPU model that built them (compute
    capability alone is not enough: kernels are tuned per GPU). Every differing field is named in the message.

    Raises:
        CunetError: one line listing each mismatch and how to fix it (rebuild with `cunet compile`).
    """
    built = manifest.device
    problems = [
        f"{label} {getattr(built, attr)!r} but this machine has {getattr(running, attr)!r}"
        for attr, label in (
            ("tensorrt_version", "built with TensorRT"),
            ("gpu_name", "built on GPU"),
            ("compute_capability", "built for compute capability"),
        )
        if getattr(built, attr) != getattr(running, attr)
    ]
    actual = sha256_file(engine_path)
    if actual != manifest.engine_sha256:
        problems.append(f"the engine's sha256 {actual[:12]}… is not the manifest's {manifest.engine_sha256[:12]}…")
    if problems:
        raise CunetError(
            f"{engine_path}: refusing to load: {'; '.join(problems)}. Rebuild it here with `cunet compile "
            f"{manifest.source_model} --precision {manifest.precision}`"
        )


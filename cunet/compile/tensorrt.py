"""TensorRT engines from cunet ONNX models, each with a `<engine>.manifest.json` saying where it came from.

Precision comes from the model, not from builder flags, wherever TensorRT allows it:

- TensorRT 11 networks are always strongly typed (the INT8/FP16 builder flags and calibrators are gone): INT8 is
  built from the Q/DQ model of `cunet quantize --recipe tensorrt`, FP16 from an FP16-typed ONNX model (made here
  from the FP32 model when an ONNX float16 converter is installed), FP32 from the export itself.
- TensorRT 10 (the one on Jetson) builds the same models with the STRONGLY_TYPED creation flag; the only weakly
  typed build is FP16 from an FP32 model, with the FP16 builder flag.

One optimisation profile covers a dynamic batch (`--batch MIN:OPT:MAX`); the workspace pool can be limited and a
timing cache reused across builds. Everything that can be checked without a GPU is checked first (the model's
metadata and type, the Q/DQ rules for INT8, the batch profile); TensorRT is imported only after a CUDA device was
seen, because without one it can abort the process instead of raising, and after the requested device was made
current (TensorRT builds on the current device). FP32 engines are built with TF32 off. Every TensorRT call that
reports failure by a return value (-1, False, None) is checked and becomes one line. The TensorRT calls follow the
documented TensorRT 10/11 Python API (Builder, IBuilderConfig, IOptimizationProfile, OnnxParser, ITimingCache); the
tests drive them through a recording fake of that API (tests/fakes) and type-check them against its stubs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from cunet.errors import CunetError
from cunet.io import check_writable, sha256_file, write_bytes
from cunet.runtime.base import cuda_device_available
from cunet.runtime.manifest import DeviceInfo, EngineManifest, manifest_path, write_manifest
from cunet.runtime.meta import PRECISIONS, ModelMeta, meta_from_onnx_proto, write_onnx_meta
from cunet.tempdirs import temp_dir

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = [
    "BatchProfile",
    "unavailable_reason",
    "dla_unsupported",
    "model_precision",
    "calibration_sha256",
    "fp16_converter",
    "to_fp16_onnx",
    "inspect_source",
    "build_manifest",
    "compile_engine",
]

_QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class BatchProfile:
    """The batch range of the engine's one optimisation profile: min ≤ opt ≤ max, TensorRT tunes for `opt`."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise CunetError(f"batch profile needs 1 <= min <= opt <= max, got {self.min}:{self.opt}:{self.max}")

    @classmethod
    def parse(cls, spec: str) -> "BatchProfile":
        """`"1:8:32"` → min 1, opt 8, max 32; a single number `"8"` is a fixed batch (8:8:8).

        Raises:
            CunetError: anything else (not integers, not 1 or 3 parts, not ordered, below 1).
        """
        parts = str(spec).strip().split(":")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise CunetError(f"batch profile {spec!r}: expected MIN:OPT:MAX integers like 1:8:32, or one integer")
        if len(values) == 1:
            values *= 3
        if len(values) != 3:
            raise CunetError(f"batch profile {spec!r}: expected MIN:OPT:MAX (3 numbers) or one number")
        return cls(*values)

    def shapes(self, input_size: int, channels: int = 3) -> dict[str, list[int]]:
        """Input shapes of the profile: {"min", "opt", "max"} → [N, C, S, S]."""
        return {k: [getattr(self, k), channels, input_size, input_size] for k in ("min", "opt", "max")}

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"


def unavailable_reason() -> str | None:
    """Why this machine cannot build or run TensorRT engines, or None when it can. Never imports TensorRT."""
    missing = []
    if importlib.util.find_spec("tensorrt") is None:
        missing.append("TensorRT is not installed (pip install 'cunet[gpu]' on an NVIDIA GPU machine)")
    if not cuda_device_available():
        missing.append("no CUDA device is visible")
    return " and ".join(missing) or None


def dla_unsupported(version: str) -> str | None:
    """Why TensorRT `version` cannot build for a DLA, or None. The TensorRT 11 documentation ("Working with DLA"):
    DLA was unavailable in TensorRT 11.0 through 11.3; 10.x (10.7 the last with DLA) and 11.4.1 on JetPack 7.2.2+
    (Jetson AGX Orin) have it."""
    parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
    if len(parts) == 2 and parts[0] == 11 and parts[1] < 4:
        return (f"TensorRT {version} has no DLA support (TensorRT 11.0-11.3 removed it); build DLA engines with "
                "TensorRT 10 (up to 10.7) or 11.4.1 and later on JetPack 7.2.2+")
    return None


def model_precision(proto: Any) -> str:
    """What an ONNX model computes in: "int8" (it has Q/DQ nodes), "fp16" (float16 weights) or "fp32"."""
    from onnx import TensorProto

    if any(n.op_type in _QDQ for n in proto.graph.node):
        return "int8"
    if any(t.data_type == TensorProto.FLOAT16 for t in proto.graph.initializer):
        return "fp16"
    return "fp32"


def calibration_sha256(proto: Any) -> str | None:
    """A hash of the activation quantization (scale, zero point) of every QuantizeLinear fed by a computed tensor.

    Weight quantizers follow from the weights; activation quantizers are what calibration decided. So the hash
    names the calibration an INT8 model embodies, whatever its weights. None when the model has no Q/DQ.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    entries = []
    for n in proto.graph.node:
        if n.op_type != "QuantizeLinear" or n.input[0] in inits:
            continue
        values = [numpy_helper.to_array(inits[t]) for t in n.input[1:3] if t in inits]
        entries.append((n.input[0], b"".join(np.ascontiguousarray(v).tobytes() for v in values)))
    if not entries:
        return None
    h = hashlib.sha256()
    for name, blob in sorted(entries):
        h.update(name.encode() + b"\0" + blob)
    return h.hexdigest()


def fp16_converter() -> Callable[..., Any] | None:
    """An installed ONNX float32 → float16 converter: onnxconverter-common's, else the copy shipped inside
    onnxruntime (`onnxruntime.transformers.float16`); None when neither is importable."""
    for module in ("onnxconverter_common.float16", "onnxruntime.transformers.float16"):
        try:
            if importlib.util.find_spec(module) is None:
                continue
        except ModuleNotFoundError:  # the parent package itself is missing
            continue
        return getattr(importlib.import_module(module), "convert_float_to_float16")
    return None


def to_fp16_onnx(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write an FP16-typed copy of a cunet FP32 ONNX model (weights and compute in float16, I/O kept float32 so
    every runtime feeds it like the FP32 model), with its metadata's precision set to "fp16".

    Raises:
        CunetError: no converter is installed (say which to install), or `src` is not an FP32 cunet model.
    """
    import onnx

    convert = fp16_converter()
    if convert is None:
        raise CunetError(
            "an FP16 model needs an FP16-typed ONNX file and no float16 converter is installed: "
            "pip install onnxconverter-common (or onnxruntime, which ships one)"
        )
    proto = onnx.load(str(src))
    meta = meta_from_onnx_proto(proto, str(src))
    if model_precision(proto) != "fp32":
        raise CunetError(f"{src}: FP16 conversion needs the FP32 model, this one is {model_precision(proto)}")
    half = convert(proto, keep_io_types=True)
    write_onnx_meta(half, dataclasses.replace(meta, precision="fp16"))
    write_bytes(dst, half.SerializeToString())
    return Path(dst)


def inspect_source(onnx_path: str | os.PathLike, precision: str) -> tuple[Any, ModelMeta, str]:
    """Check that an ONNX model can be built at `precision` (no GPU needed); returns (proto, meta, model type).

    Raises:
        CunetError: unknown precision; missing or non-cunet model; an INT8 build of a model without Q/DQ or with
            Q/DQ TensorRT rejects; an FP32/FP16 build of a Q/DQ model; an FP32 build of an FP16 model.
    """
    import onnx
    from google.protobuf.message import DecodeError

    if precision not in PRECISIONS:
        raise CunetError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    path = Path(onnx_path)
    if not path.is_file():
        raise CunetError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        raise CunetError(f"{path}: not a readable ONNX model ({type(e).__name__})") from e
    meta = meta_from_onnx_proto(proto, str(path))
    kind = model_precision(proto)
    if precision == "int8" and kind != "int8":
        raise CunetError(f"{path}: an INT8 engine needs a Q/DQ model; make one with "
                         f"`cunet quantize {path.name} --recipe tensorrt --data DIR -o model.int8.onnx`")
    if kind == "int8" and precision != "int8":
        raise CunetError(f"{path}: is an INT8 Q/DQ model (TensorRT builds it as INT8); use --precision int8")
    if kind == "fp16" and precision == "fp32":
        raise CunetError(f"{path}: is an FP16-typed model; build it with --precision fp16 or compile the FP32 model")
    if precision == "int8":
        from cunet.compile.trt_rules import check_trt

        errors = [v for v in check_trt(path) if v.severity == "error"]
        if errors:
            raise CunetError(f"{path}: {len(errors)} TensorRT Q/DQ rule violation(s), first: [{errors[0].rule}] "
                             f"{errors[0].message} (quantize with --recipe tensorrt)")
    return proto, meta, kind


def build_manifest(
    engine_path: str | os.PathLike,
    source_path: str | os.PathLike,
    source_proto: Any,
    meta: ModelMeta,
    precision: str,
    batch: BatchProfile,
    device: DeviceInfo,
    strongly_typed: bool,
    builder_flags: tuple[str, ...] = (),
    workspace_mb: int | None = None,
    input_name: str = "image",
    tf32: bool | None = None,
    dla_core: int | None = None,
) -> EngineManifest:
    """The manifest of an engine file already on disk (hashes of the engine and its source, the shapes, the device).

    Args:
        engine_path: the built engine; source_path / source_proto: the ONNX model it was built from.
        meta: the source's metadata (its precision is replaced by `precision`).
        precision, batch, device, strongly_typed, builder_flags, workspace_mb: how it was built.
        input_name: the network input the profile applies to.
        tf32: whether TF32 was allowed for float tensors (None: not recorded); dla_core: the DLA core, else None.
    """
    return EngineManifest(
        engine=Path(engine_path).name,
        engine_sha256=sha256_file(engine_path),
        tensorrt_version=device.tensorrt_version,
        gpu_name=device.gpu_name,
        compute_capability=device.compute_capability,
        precision=precision,
        strongly_typed=strongly_typed,
        builder_flags=tuple(builder_flags),
        input_name=input_name,
        shapes=batch.shapes(meta.input_size),
        workspace_mb=workspace_mb,
        source_model=Path(source_path).name,
        source_sha256=sha256_file(source_path),
        calibration_sha256=calibration_sha256(source_proto) if precision == "int8" else None,
        meta=dataclasses.replace(meta, precision=precision),
        tf32=tf32,
        dla_core=dla_core,
    )


def compile_engine(
    onnx_path: str | os.PathLike,
    out_path: str | os.PathLike,
    precision: str,
    batch: BatchProfile | str = "1:8:32",
    workspace_mb: int | None = None,
    timing_cache: str | os.PathLike | None = None,
    device: int = 0,
    dla_core: int | None = None,
) -> EngineManifest:
    """Build a TensorRT engine from a cunet ONNX model and write it with its manifest (both atomically).

    Args:
        onnx_path: FP32 export, FP16-typed model, or Q/DQ INT8 model (`--recipe tensorrt`).
        out_path: the `.engine` file; the manifest goes to `<out_path>.manifest.json`.
        precision: "fp32", "fp16" or "int8" (must agree with the model, see `inspect_source`). FP32 engines are
            built with TF32 off (TensorRT allows TF32 for float tensors by default, which is not FP32 accuracy).
        batch: the dynamic-batch profile, `BatchProfile` or "MIN:OPT:MAX"; a model with a static batch dimension
            takes exactly that batch.
        workspace_mb: limit of TensorRT's workspace memory pool (None: TensorRT's default, the device memory).
        timing_cache: a timing cache file, read if present and rewritten after the build (speeds up rebuilds on the
            same GPU and TensorRT version); a cache TensorRT rejects as made elsewhere is refused before the build.
        device: CUDA device index; it is made current before TensorRT is created, and its GPU goes in the manifest.
        dla_core: build for this DLA core (Jetson), with layers the DLA cannot run falling back to the GPU; FP16 or
            INT8 only (the DLA has no FP32).

    Returns:
        The written `EngineManifest`.

    Raises:
        CunetError: a model that cannot be built at `precision`, no TensorRT or no CUDA device (one line, checked
            before TensorRT is imported), no such device, a TensorRT version below 10, no such DLA core, ONNX parser
            errors, a batch profile the model's static batch contradicts, a rejected timing cache, a failed build.
    """
    profile = batch if isinstance(batch, BatchProfile) else BatchProfile.parse(batch)
    if workspace_mb is not None and workspace_mb < 1:
        raise CunetError(f"workspace must be at least 1 MB, got {workspace_mb}")
    if dla_core is not None and (dla_core < 0 or precision == "fp32"):
        raise CunetError(f"--dla {dla_core}: needs a core index >= 0 and --precision fp16 or int8 (the DLA has no "
                         "FP32)")
    proto, meta, kind = inspect_source(onnx_path, precision)
    # Every file the build will write, before the build: the engine, its manifest sidecar and the timing cache.
    check_writable([out_path, manifest_path(out_path), *([timing_cache] if timing_cache is not None else [])])
    reason = unavailable_reason()
    if reason:
        raise CunetError(f"cannot build a TensorRT engine on this machine: {reason}")
    from cunet.runtime import cuda

    cuda.select(device)  # TensorRT builds on the current device: make it the one the manifest will name
    import tensorrt as trt

    from cunet.runtime.manifest import current_device

    major = int(trt.__version__.split(".")[0])
    if major < 10:
        raise CunetError(f"TensorRT {trt.__version__} is too old; cunet builds engines with TensorRT 10 or 11")
    no_dla = dla_unsupported(trt.__version__)
    if dla_core is not None and no_dla:  # checked before any DLA API is touched: 11.0-11.3 have no DLA at all
        raise CunetError(f"--dla {dla_core}: {no_dla}")
    running = current_device(trt.__version__, device)
    with temp_dir("trt") as tmp:
        model_bytes = Path(onnx_path).read_bytes()
        flags: tuple[str, ...] = ()
        if precision == "fp16" and kind == "fp32":
            if major >= 11:  # strongly typed only: the types must be in the model
                model_bytes = to_fp16_onnx(onnx_path, Path(tmp) / "fp16.onnx").read_bytes()
            else:
                flags = ("FP16",)
        build = _Build(profile, flags, workspace_mb, tf32=precision != "fp32", dla_core=dla_core,
                       where=str(onnx_path), input_size=meta.input_size)
        serialized, cache = build.run(model_bytes, timing_cache)
    write_bytes(out_path, serialized)
    manifest = build_manifest(out_path, onnx_path, proto, meta, precision, build.profile, running,
                              strongly_typed=not flags, builder_flags=flags, workspace_mb=workspace_mb,
                              input_name=build.input_name, tf32=build.tf32, dla_core=dla_core)
    write_manifest(out_path, manifest)
    if timing_cache is not None and cache is not None:
        write_bytes(timing_cache, cache)
    return manifest


class _Build:
    """One engine build with the documented TensorRT 10/11 Python API; `run` returns (engine bytes, timing cache
    bytes or None). STRONGLY_TYPED is requested on both versions (TensorRT 11 ignores it: always on). The TensorRT
    objects are typed (`make typecheck` checks these calls against the tensorrt-stubs of the 10.x binding)."""

    def __init__(self, profile: BatchProfile, flags: tuple[str, ...], workspace_mb: int | None, tf32: bool,
                 dla_core: int | None, where: str, input_size: int) -> None:
        self.profile, self.flags, self.workspace_mb = profile, flags, workspace_mb
        self.tf32, self.dla_core, self.where, self.input_size = tf32, dla_core, where, input_size
        self.input_name = "image"

    def run(self, model: bytes, timing_cache: str | os.PathLike | None) -> tuple[bytes, bytes | None]:
        import tensorrt as trt

        where = self.where
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        if self.dla_core is not None:
            cores = int(builder.num_DLA_cores)
            if not 0 <= self.dla_core < cores:
                have = "has no DLA" if cores == 0 else f"has DLA cores 0..{cores - 1}"
                raise CunetError(f"--dla {self.dla_core}: this device {have} (DLA cores exist on Jetson AGX/NX)")
        creation = 0 if self.flags else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(creation)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(model):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise CunetError(f"{where}: TensorRT's ONNX parser rejected the model: {errors[:300]}")
        config = builder.create_builder_config()
        for flag in self.flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        if not self.tf32:
            config.clear_flag(trt.BuilderFlag.TF32)
        if self.workspace_mb is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_mb << 20)
        if self.dla_core is not None:
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = self.dla_core
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        self._add_profile(builder, network, config)
        cache_path = Path(timing_cache) if timing_cache is not None else None
        if cache_path is not None:
            cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
            if not config.set_timing_cache(cache, ignore_mismatch=False):
                raise CunetError(f"{cache_path}: TensorRT rejects this timing cache (made on another GPU or TensorRT "
                                 "version); pass another --timing-cache file")
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise CunetError(f"{where}: TensorRT could not build an engine (its log above says why)")
        cache_bytes = None
        if cache_path is not None:
            done = config.get_timing_cache()
            cache_bytes = None if done is None else bytes(done.serialize())
        return bytes(serialized), cache_bytes

    def _add_profile(self, builder: "trt.Builder", network: "trt.INetworkDefinition",
                     config: "trt.IBuilderConfig") -> None:
        import tensorrt as trt

        tensor = network.get_input(0)
        self.input_name = tensor.name
        n, c, h, w = (int(d) for d in tensor.shape[:])  # Dims: tuple-like, a slice is a tuple
        c, h, w = (c if c > 0 else 3), (h if h > 0 else self.input_size), (w if w > 0 else self.input_size)
        p = self.profile
        if n > 0 and (p.min, p.opt, p.max) != (n, n, n):
            raise CunetError(f"{self.where}: the model's batch dimension is fixed at {n}, so --batch {p} cannot "
                             f"be built; use --batch {n} or export with a dynamic batch")
        opt = builder.create_optimization_profile()
        try:
            opt.set_shape(self.input_name, *(trt.Dims([b, c, h, w]) for b in (p.min, p.opt, p.max)))
        except (ValueError, RuntimeError) as e:  # the binding raises on inconsistent shapes
            raise CunetError(f"{self.where}: TensorRT rejects the batch profile {p} for input "
                             f"{self.input_name!r} [{n}, {c}, {h}, {w}]: {e}") from e
        if config.add_optimization_profile(opt) < 0:
            raise CunetError(f"{self.where}: TensorRT rejects the batch profile {p} for input {self.input_name!r}")

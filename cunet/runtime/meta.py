"""`ModelMeta`: what a compiled model must carry so any runtime can use it without the checkpoint.

An exported ONNX model holds ONE `metadata_props` entry, key "cunet", whose value is a JSON object: the task, the
landmark names and flip pairs, the input size, heatmap stride, normalisation (mean/std, RGB, NCHW), the CU-Net
config, the training heatmap sigma, the source checkpoint's sha256 and the numeric precision. Preprocessing and
decoding are driven only by this record, so a `.onnx` or `.engine` file is self-describing. A TensorRT engine cannot
hold metadata, so the same JSON object lives under the "cunet" key of `<engine>.manifest.json` beside the engine.
An OpenVINO IR (`.xml` + `.bin`) holds the same JSON string as the value of its `rt_info` entry "cunet" (OpenVINO
writes it as `<rt_info><cunet value="..."/></rt_info>` in the `.xml`); `read_ir_meta` reads it with the standard
library's XML parser, so reading an IR's metadata needs no OpenVINO.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import cunet
from cunet.data.preprocess import CROPS, FACE_BOX_MARGIN
from cunet.errors import CunetError
from cunet.limits import read_limited_text, refuse_empty

__all__ = [
    "META_KEY",
    "META_FORMAT_VERSION",
    "ModelMeta",
    "read_onnx_meta",
    "write_onnx_meta",
    "meta_from_onnx_proto",
    "read_engine_meta",
    "engine_manifest_path",
    "read_ir_meta",
]

#: The one `metadata_props` key cunet writes.
META_KEY = "cunet"
META_FORMAT_VERSION = 1
TASKS = ("face", "pose")
PRECISIONS = ("fp32", "fp16", "int8")
#: Per-crop intensity rescaling before mean/std ("minmax": the original CU-Net code's, see `ModelMeta.stretch`).
STRETCHES = ("none", "minmax")
RECIPES = (None, "tensorrt", "cpu", "openvino")
#: CU-Net crops are 256 px; anything above this is a damaged record, not a model.
MAX_INPUT_SIZE = 4096


@dataclass(frozen=True)
class ModelMeta:
    """The self-description of a compiled CU-Net (the JSON stored under the "cunet" metadata key).

    Attributes:
        task: "face" or "pose".
        num_landmarks: K, the number of heatmaps.
        landmark_names: K names, in heatmap order.
        flip_pairs: 0-based (left, right) index pairs swapped by a horizontal flip.
        input_size: S, the square input side in pixels.
        heatmap_stride: input pixels per heatmap pixel (heatmaps are S / stride square).
        mean, std: per-channel RGB normalisation on the 0..1 scale.
        color: channel order of the network input ("RGB").
        layout: tensor layout of the network input ("NCHW").
        config: `CUNetConfig.to_dict()` of the network.
        cunet_version: the cunet version that wrote the record.
        source_sha256: sha256 of the source checkpoint file, None when exported from an in-memory model.
        sigma: training heatmap sigma in heatmap pixels, None when the checkpoint did not record it.
        precision: "fp32", "fp16" or "int8".
        format_version: version of this record's layout.
        quant: low-bit weights/inputs of the model (`cunet.model.quant.QuantConfig.to_dict()`), None when none.
        recipe: the INT8 recipe of a quantized model ("tensorrt", "cpu" (`cunet.compile.quantize`) or "openvino"
            (`cunet.compile.openvino`)), else None.
        float_groups: blocks an INT8 model keeps in float to meet `--max-drop`, None for non-INT8 models.
        stretch: "none", or "minmax": each crop is rescaled to its own 0..1 range before mean/std (what the original
            CU-Net code's scipy resampling did; models imported with `cunet import-original`).
        box_margin: a face crop's side is this times max(width, height) of the detector or landmark box (cunet's
            training: 1.25; the original code: 1.1).
        crop: how a box becomes the input crop (`cunet.data.preprocess.CROPS`): "cunet" (cunet's own models), or
            "original": the original CU-Net code's integer crop box, whole-image shrink and per-crop bytescale
            before resizing (`cunet.data.original_crop`; models imported with `cunet import-original`, which then
            see the pixels they were trained on; its bytescale replaces `stretch`). Records without it: "cunet".
        decode: the `cunet.data.decode` method the graph ends in ("quarter", `cunet export --decode`): the model
            outputs [N, K, 3] (x, y in input-crop pixels, score) instead of heatmaps. None: it outputs heatmaps.
    """

    task: str
    num_landmarks: int
    landmark_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    input_size: int
    heatmap_stride: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    config: dict[str, Any] = field(hash=False)
    cunet_version: str = cunet.__version__
    source_sha256: str | None = None
    sigma: float | None = None
    precision: str = "fp32"
    color: str = "RGB"
    layout: str = "NCHW"
    format_version: int = META_FORMAT_VERSION
    quant: dict[str, Any] | None = field(default=None, hash=False)
    recipe: str | None = None
    float_groups: tuple[str, ...] | None = None
    stretch: str = "none"
    box_margin: float = FACE_BOX_MARGIN
    decode: str | None = None
    crop: str = "cunet"

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise CunetError(f"invalid cunet model metadata: {msg}")

        need(self.task in TASKS, f"task must be one of {TASKS}, got {self.task!r}")
        # Sizes drive array allocation and crop geometry: a bool, a float or 10**30 from a damaged record must stop
        # here, not as a numpy traceback (or a terabyte allocation) in the middle of a run.
        for name in ("num_landmarks", "input_size", "heatmap_stride"):
            value = getattr(self, name)
            need(
                isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1,
                f"{name} must be a positive integer, got {value!r:.40}",
            )
        need(self.input_size <= MAX_INPUT_SIZE, f"input size {self.input_size} is above {MAX_INPUT_SIZE}")
        need(
            len(self.landmark_names) == self.num_landmarks,
            f"{len(self.landmark_names)} names for {self.num_landmarks} landmarks",
        )
        need(
            all(0 <= a < self.num_landmarks and 0 <= b < self.num_landmarks for a, b in self.flip_pairs),
            f"flip pairs outside 0..{self.num_landmarks - 1}",
        )
        need(
            self.heatmap_stride >= 1 and self.input_size % self.heatmap_stride == 0,
            f"input size {self.input_size} is not a multiple of the heatmap stride {self.heatmap_stride}",
        )
        need(len(self.mean) == 3 and len(self.std) == 3 and min(self.std) > 0, "mean/std need 3 values, std positive")
        need(all(math.isfinite(v) for v in (*self.mean, *self.std)), "mean/std must be finite")
        need(
            self.sigma is None or (math.isfinite(self.sigma) and self.sigma > 0),
            f"sigma must be a positive number or null, got {self.sigma!r:.40}",
        )
        need(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        need(self.quant is None or isinstance(self.quant, dict), f"quant must be an object or null, got {self.quant!r}")
        need(self.recipe in RECIPES, f"recipe must be tensorrt, cpu, openvino or null, got {self.recipe!r}")
        need(self.stretch in STRETCHES, f"stretch must be one of {STRETCHES}, got {self.stretch!r:.40}")
        need(
            isinstance(self.box_margin, numbers.Real) and not isinstance(self.box_margin, bool)
            and math.isfinite(self.box_margin) and 0 < self.box_margin <= 10,
            f"box_margin must be a number in (0, 10], got {self.box_margin!r:.40}",
        )
        need(self.decode in (None, "quarter"), f"decode must be quarter or null, got {self.decode!r:.40}")
        need(self.crop in CROPS, f"crop must be one of {CROPS}, got {self.crop!r:.40}")
        need(self.color == "RGB" and self.layout == "NCHW", f"unsupported input {self.color}/{self.layout}")
        need(
            self.format_version <= META_FORMAT_VERSION,
            f"format {self.format_version} is newer than this cunet understands ({META_FORMAT_VERSION}); upgrade cunet",
        )

    @property
    def heatmap_size(self) -> int:
        """Side of the square heatmaps, S / stride."""
        return self.input_size // self.heatmap_stride

    @property
    def flip_permutation(self) -> np.ndarray:
        """Index array [K] such that `points[perm]` (or `heatmaps[:, perm]`) swaps left and right."""
        perm = np.arange(self.num_landmarks)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    @classmethod
    def from_checkpoint(
        cls, ckpt: dict[str, Any], source_sha256: str | None = None, precision: str = "fp32"
    ) -> "ModelMeta":
        """The metadata of a loaded checkpoint dict (see `cunet.model.checkpoint`).

        Landmark names and flip pairs come from the task's `LandmarkSpec`; mean/std from `cunet.data.preprocess`,
        or with the rest of the preprocessing (stretch, box margin, crop) from the checkpoint's "preprocess" record
        (imported original models);
        sigma from the training arguments (`ckpt["args"]["sigma"]`) when they were saved.
        """
        from cunet.data.preprocess import MEAN, STD
        from cunet.data.spec import get_spec
        from cunet.model.config import CUNetConfig

        cfg = CUNetConfig.from_dict(ckpt["config"])
        spec = get_spec(ckpt["task"])
        if len(spec.names) != cfg.num_landmarks:
            raise CunetError(
                f"checkpoint predicts {cfg.num_landmarks} landmarks but the {ckpt['task']} spec has {len(spec.names)}"
            )
        args = ckpt.get("args")
        sigma = args.get("sigma") if isinstance(args, dict) else None
        pre = ckpt.get("preprocess") or {}
        if not isinstance(pre, dict):
            raise CunetError(f"checkpoint 'preprocess' must be a mapping, got {type(pre).__name__}")
        unknown = sorted(set(pre) - {"mean", "std", "stretch", "box_margin", "crop"})
        if unknown:
            raise CunetError(f"checkpoint 'preprocess' has unknown keys {unknown} (written by a newer cunet?)")
        return cls(
            task=ckpt["task"],
            num_landmarks=cfg.num_landmarks,
            landmark_names=tuple(spec.names),
            flip_pairs=tuple((int(a), int(b)) for a, b in spec.flip_pairs),
            input_size=cfg.input_size,
            heatmap_stride=cfg.heatmap_stride,
            mean=tuple(float(v) for v in pre.get("mean", MEAN)),
            std=tuple(float(v) for v in pre.get("std", STD)),
            stretch=str(pre.get("stretch", "none")),
            box_margin=float(pre.get("box_margin", FACE_BOX_MARGIN)),
            crop=str(pre.get("crop", "cunet")),
            config=cfg.to_dict(),
            source_sha256=source_sha256,
            sigma=None if sigma is None else float(sigma),
            precision=precision,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["landmark_names"] = list(self.landmark_names)
        d["flip_pairs"] = [list(p) for p in self.flip_pairs]
        d["mean"], d["std"] = list(self.mean), list(self.std)
        for optional in ("quant", "recipe", "float_groups", "decode"):  # absent unless set: FP32 records stay as they were
            if d[optional] is None:
                del d[optional]
        if self.stretch == "none":  # cunet's own preprocessing: the record stays as older cunet versions read it
            del d["stretch"]
        if self.box_margin == FACE_BOX_MARGIN:
            del d["box_margin"]
        if self.crop == "cunet":
            del d["crop"]
        if self.float_groups is not None:
            d["float_groups"] = list(self.float_groups)
        return d

    def to_json(self) -> str:
        """The compact JSON stored in the model."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelMeta":
        """Rebuild from `to_dict()` output; missing or unknown keys are a `CunetError`."""
        if not isinstance(d, dict):
            raise CunetError("invalid cunet model metadata: not a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name != "config"}
        required.add("config")
        version = d.get("format_version", 1)
        if isinstance(version, bool) or not isinstance(version, int):
            raise CunetError(f"invalid cunet model metadata: format_version must be an integer, got {version!r:.40}")
        if version > META_FORMAT_VERSION:
            raise CunetError(
                f"cunet model metadata format {d['format_version']} is newer than this cunet understands; upgrade cunet"
            )
        missing, unknown = sorted(required - set(d)), sorted(set(d) - names)
        if missing or unknown:
            raise CunetError(f"invalid cunet model metadata: missing {missing}, unknown {unknown}")
        try:
            return cls(
                **{
                    **d,
                    "landmark_names": tuple(str(n) for n in d["landmark_names"]),
                    "flip_pairs": tuple((int(a), int(b)) for a, b in d["flip_pairs"]),
                    "mean": tuple(float(v) for v in d["mean"]),
                    "std": tuple(float(v) for v in d["std"]),
                    "config": dict(d["config"]),
                    **_float_groups(d),
                }
            )
        except (TypeError, ValueError, OverflowError) as e:  # OverflowError: int() of a JSON 1e999 (infinity)
            raise CunetError(f"invalid cunet model metadata: {e}") from e


def _float_groups(d: dict[str, Any]) -> dict[str, Any]:
    groups = d.get("float_groups")
    return {} if groups is None else {"float_groups": tuple(str(g) for g in groups)}


def write_onnx_meta(model_proto: Any, meta: ModelMeta) -> None:
    """Set the "cunet" `metadata_props` entry of an `onnx.ModelProto` in place (replacing any earlier one)."""
    kept = [p for p in model_proto.metadata_props if p.key != META_KEY]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(kept)
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()


def _meta_from_json(text: str, where: str, container: str) -> ModelMeta:
    """The `ModelMeta` of the JSON text stored under "cunet" in an ONNX model's metadata or an IR's rt_info."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise CunetError(f"{where}: the '{META_KEY}' {container} is not valid JSON ({e.msg})") from e
    try:
        return ModelMeta.from_dict(d)
    except CunetError as e:
        raise CunetError(f"{where}: {e}") from e


def meta_from_onnx_proto(model_proto: Any, where: str = "ONNX model") -> ModelMeta:
    """The `ModelMeta` stored in an `onnx.ModelProto`; `where` names the source in error messages."""
    for p in model_proto.metadata_props:
        if p.key == META_KEY:
            return _meta_from_json(p.value, where, "metadata")
    raise CunetError(f"{where}: no '{META_KEY}' metadata; export the model with `cunet export`")


def read_onnx_meta(path: str | os.PathLike) -> ModelMeta:
    """Read the `ModelMeta` of an ONNX file (weights are not loaded).

    Raises:
        CunetError: the file is missing, truncated, not ONNX, or an ONNX model without cunet metadata.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise CunetError(f"{path}: no such ONNX file")
    refuse_empty(path)
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        detail = str(e).splitlines()[0][:120] if str(e) else ""
        raise CunetError(f"{path}: not a readable ONNX model ({type(e).__name__}: {detail})") from e
    return meta_from_onnx_proto(proto, str(path))


def engine_manifest_path(engine_path: str | os.PathLike) -> Path:
    """Where the metadata of a TensorRT engine lives: `<engine file name>.manifest.json` beside it
    (`cunet.runtime.manifest`); engines from before per-engine manifests used `manifest.json` in their folder."""
    p = Path(engine_path)
    return p.with_name(p.name + ".manifest.json")


def read_engine_meta(engine_path: str | os.PathLike) -> ModelMeta:
    """The `ModelMeta` of a TensorRT engine: the "cunet" object of `<engine>.manifest.json`, or of the older
    folder-wide `manifest.json` when the engine has no manifest of its own."""
    manifest = engine_manifest_path(engine_path)
    if not manifest.is_file() and Path(engine_path).with_name("manifest.json").is_file():
        manifest = Path(engine_path).with_name("manifest.json")
    if not manifest.is_file():
        raise CunetError(f"{engine_path}: no {manifest.name} beside the engine (it holds the model metadata)")
    refuse_empty(engine_path)
    try:
        d = json.loads(read_limited_text(manifest))
    except json.JSONDecodeError as e:
        raise CunetError(f"{manifest}: not valid JSON ({e})") from e
    if not isinstance(d, dict) or META_KEY not in d:
        raise CunetError(f"{manifest}: no '{META_KEY}' object")
    try:
        return ModelMeta.from_dict(d[META_KEY])
    except CunetError as e:
        raise CunetError(f"{manifest}: {e}") from e


def read_ir_meta(path: str | os.PathLike) -> ModelMeta:
    """The `ModelMeta` of an OpenVINO IR `.xml`: its `rt_info` entry "cunet" (see `cunet.compile.openvino`).

    Raises:
        CunetError: the file is missing, not XML, not an OpenVINO IR, or an IR without cunet metadata.
    """
    import xml.etree.ElementTree as ET

    path = Path(path)
    if not path.is_file():
        raise CunetError(f"{path}: no such OpenVINO IR file")
    refuse_empty(path)
    value = None
    stack: list[str] = []
    try:
        for event, elem in ET.iterparse(str(path), events=("start", "end")):
            if event == "start":
                stack.append(elem.tag)
                if len(stack) == 1 and (elem.tag != "net" or elem.get("version") is None):
                    raise CunetError(f"{path}: not an OpenVINO IR (no <net version=...> root)")
                continue
            # Only net/rt_info/cunet: OpenVINO also copies an ONNX source's metadata under rt_info/framework.
            if stack == ["net", "rt_info", META_KEY]:
                value = elem.get("value")
            stack.pop()
            if elem.tag == "layers":
                elem.clear()  # the layer list is most of the file and not needed here
    except ET.ParseError as e:
        raise CunetError(f"{path}: not a readable OpenVINO IR ({e})") from e
    if value is None:
        raise CunetError(f"{path}: no '{META_KEY}' rt_info; write it with `cunet quantize --recipe openvino`")
    return _meta_from_json(value, str(path), "rt_info")

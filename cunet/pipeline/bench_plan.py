"""What `cunet bench` builds: one `Artifact` per row, where it runs, why it is skipped, and the stamp that says when
an artifact built earlier may be reused.

Every row says where it runs (`Artifact.device`): the CPU rows — PyTorch included — on the CPU, the TensorRT rows on
the GPU, so no row is quietly faster because it found a GPU the others did not use. A row that cannot be built here
says why and of which kind (`SkipKind`): missing hardware (no GPU or TensorRT), not applicable (no checkpoint to run
for an ONNX input), or a package that is not installed; with `--max-drop` only the first two are acceptable.

An artifact is reused when the stamp beside it (`<artifact>.stamp.json`) equals what it would be built from now:
the source's sha256, the calibration selection's content fingerprint, the settings, and for TensorRT engines the
TensorRT version and the GPU (name, UUID, compute capability) — an engine is only valid for the TensorRT and GPU that
built it, so after an upgrade or on another machine it is rebuilt, with a line saying which field changed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable

from cunet.io import sha256_file

__all__ = ["CALIB_METHOD", "SkipKind", "Artifact", "stamp_path", "stale_reason", "plan", "calibration_selection"]

CALIB_METHOD = "minmax"


class SkipKind(str, Enum):
    """Why a row was not measured; `--max-drop` accepts only HARDWARE and NOT_APPLICABLE."""

    HARDWARE = "hardware"  # no GPU / TensorRT on this machine
    NOT_APPLICABLE = "not applicable"  # the row has nothing to run (the PyTorch row of an ONNX input)
    NOT_INSTALLED = "not installed"  # a package cunet can use is missing here


@dataclass
class Artifact:
    """One bench row before it is measured.

    Attributes:
        name, fmt, precision, backend: the row's identity and the runtime that runs it.
        path: the file it is (or will be built to).
        device: where it runs: "cpu" or "cuda".
        build: makes `path` (None: nothing to build, the checkpoint or a model built by another row).
        key: what the artifact was built from (its stamp).
        needs: the artifact it is built from.
        skip: why it cannot be built on this machine, and `skip_kind` which kind of reason that is.
    """

    name: str
    fmt: str
    precision: str
    backend: str
    path: Path
    device: str = "cpu"
    build: Callable[[], None] | None = None
    key: Callable[[], dict[str, Any]] | None = None
    needs: str | None = None
    skip: str | None = None
    skip_kind: SkipKind | None = None


def stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".stamp.json")


def stale_reason(path: Path, key: dict[str, Any]) -> str | None:
    """None when `path` exists and its stamp equals `key`; else why it must be (re)built, naming what changed."""
    if not path.is_file():
        return "not built yet"
    try:
        old = json.loads(stamp_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no readable stamp beside it"
    if not isinstance(old, dict):
        return "no readable stamp beside it"
    changed = [k for k in sorted(set(old) | set(key)) if old.get(k) != key.get(k)]
    if not changed:
        return None
    shown = [f"{k} {str(old.get(k))[:40]!r} → {str(key.get(k))[:40]!r}" for k in changed[:3]]
    return "built from other inputs: " + "; ".join(shown) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")


def calibration_selection(data: Any, fp32: Path, samples: int):
    """The calibration images every INT8 recipe of this bench uses (`select_calibration_images`)."""
    from cunet.calib.reader import read_preprocess_spec, select_calibration_images

    return select_calibration_images(data, read_preprocess_spec(fp32), samples)


def _engine_device() -> dict[str, Any]:
    """The TensorRT version and GPU an engine built now is tied to (called only where TensorRT and a GPU exist)."""
    import tensorrt as trt  # safe: the engine rows are skipped unless a CUDA device is visible

    from cunet.runtime import cuda

    props = cuda.properties(0)
    return {"tensorrt": str(trt.__version__), "gpu": props.name, "gpu_uuid": props.uuid,
            "compute_capability": props.compute_capability}


def plan(opts: Any, work: Path, ckpt: Path) -> list[Artifact]:
    """Every artifact of a bench run of `ckpt` (a `.pt` or an FP32 `.onnx`), in table order (`BenchOptions` opts)."""
    from cunet.compile.quantize import quantize
    from cunet.compile.tensorrt import compile_engine, fp16_converter, to_fp16_onnx, unavailable_reason

    if ckpt.suffix.lower() == ".onnx":  # an exported model: it is the FP32 row, and there is no checkpoint to run
        fp32 = ckpt
        rows = [Artifact("pytorch-fp32", "pt", "fp32", "torch", ckpt, skip="the input is an ONNX model, not a .pt",
                         skip_kind=SkipKind.NOT_APPLICABLE),
                Artifact("onnx-fp32", "onnx", "fp32", "ort-cpu", fp32)]
    else:
        from cunet.compile.export import export_onnx

        fp32 = work / "model.onnx"
        # Verified on the dataset's own images: ORT as close to float64 as PyTorch FP32 (`cunet.compile.verify`).
        rows = [
            Artifact("pytorch-fp32", "pt", "fp32", "torch", ckpt),
            Artifact("onnx-fp32", "onnx", "fp32", "ort-cpu", fp32,
                     build=lambda: export_onnx(ckpt, fp32, verify_images=opts.data),
                     key=lambda: {"checkpoint_sha256": sha256_file(ckpt)}),
        ]
    fp16 = work / "model.fp16.onnx"
    no_fp16 = None if fp16_converter() else "no float16 converter installed (pip install onnxconverter-common)"
    rows.append(Artifact(
        "onnx-fp16", "onnx", "fp16", "ort-cpu", fp16, build=lambda: to_fp16_onnx(fp32, fp16),
        key=lambda: {"source_sha256": sha256_file(fp32)}, needs="onnx-fp32",
        skip=no_fp16, skip_kind=SkipKind.NOT_INSTALLED if no_fp16 else None))
    for recipe in ("cpu", "tensorrt"):
        out = work / f"model.int8-{recipe}.onnx"

        def build(out: Path = out, recipe: str = recipe) -> None:
            quantize(fp32, out, recipe, opts.data, method=CALIB_METHOD, samples=opts.samples,
                     cache_dir=work / "calibration")

        def key(recipe: str = recipe) -> dict[str, Any]:
            return {"source_sha256": sha256_file(fp32), "recipe": recipe, "method": CALIB_METHOD,
                    "samples": opts.samples,
                    "data_fingerprint": calibration_selection(opts.data, fp32, opts.samples).fingerprint}

        rows.append(Artifact(f"onnx-int8-{recipe}", "onnx", "int8", "ort-cpu", out, build=build, key=key,
                             needs="onnx-fp32"))
    rows += _openvino_plan(opts, work, fp32)
    no_trt = unavailable_reason()
    profile = f"1:{opts.batch}:{max(opts.batch, 8)}"
    for precision, source in (("fp32", "onnx-fp32"), ("fp16", "onnx-fp16"), ("int8", "onnx-int8-tensorrt")):
        src = next(a.path for a in rows if a.name == source)
        out = work / f"model.{precision}.engine"

        def build(out: Path = out, src: Path = src, precision: str = precision) -> None:
            compile_engine(src, out, precision, batch=profile, timing_cache=work / "tensorrt.timing-cache")

        def key(src: Path = src, precision: str = precision) -> dict[str, Any]:
            return {"source_sha256": sha256_file(src), "precision": precision, "batch": profile, **_engine_device()}

        rows.append(Artifact(f"tensorrt-{precision}", "engine", precision, "tensorrt", out, device="cuda",
                             build=build, key=key, needs=source,
                             skip=None if no_trt is None else f"no TensorRT/GPU: {no_trt}",
                             skip_kind=None if no_trt is None else SkipKind.HARDWARE))
    return rows


def _openvino_plan(opts: Any, work: Path, fp32: Path) -> list[Artifact]:
    """OpenVINO rows: the FP32 export, the `openvino` recipe's IR, and the `tensorrt` recipe's Q/DQ file unchanged."""
    import importlib.util

    no_ov = None if importlib.util.find_spec("openvino") else "openvino not installed (pip install 'cunet[openvino]')"
    no_nncf = no_ov or (None if importlib.util.find_spec("nncf") else "nncf not installed (pip install 'cunet[nncf]')")
    ir = work / "model.int8-openvino.xml"

    def build() -> None:
        from cunet.compile.openvino import quantize_openvino

        quantize_openvino(fp32, ir, opts.data, samples=opts.samples)

    def key() -> dict[str, Any]:
        from cunet.compile.openvino import OPENVINO_RECIPE

        return {"source_sha256": sha256_file(fp32), "recipe": "openvino", "samples": opts.samples,
                "settings": dataclasses.asdict(OPENVINO_RECIPE),
                "data_fingerprint": calibration_selection(opts.data, fp32, opts.samples).fingerprint}

    def kind(reason: str | None) -> SkipKind | None:
        return None if reason is None else SkipKind.NOT_INSTALLED

    return [
        Artifact("openvino-fp32", "onnx", "fp32", "openvino", fp32, needs="onnx-fp32", skip=no_ov,
                 skip_kind=kind(no_ov)),
        Artifact("openvino-int8", "xml", "int8", "openvino", ir, build=build, key=key, needs="onnx-fp32",
                 skip=no_nncf, skip_kind=kind(no_nncf)),
        Artifact("openvino-int8-tensorrt", "onnx", "int8", "openvino", work / "model.int8-tensorrt.onnx",
                 needs="onnx-int8-tensorrt", skip=no_ov, skip_kind=kind(no_ov)),
    ]

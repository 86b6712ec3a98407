"""The `openvino` INT8 recipe: NNCF post-training quantization written as an OpenVINO IR carrying cunet's metadata.

Calibration inputs are the other recipes' exactly: the same image selection and fingerprint
(`cunet.calib.reader.select_calibration_images`) through the same inference preprocessing; NNCF computes its own
statistics from them (it does not read ONNX Runtime's range cache). The IR (`.xml` + `.bin`) stores the export's
"cunet" metadata record (precision int8, recipe openvino) in its `rt_info`, which `cunet.runtime.meta.read_ir_meta`
reads back, so an `.xml` is as self-describing as an `.onnx`.

`OvSettings` are the knobs measured for this recipe (bench/cpu_int8.py); `NNCF_DEFAULT` is NNCF's defaults on the
unmodified export, the peer baseline the recipe must beat.

Accuracy control (`max_drop`): cunet's per-block exclusion, as the ONNX recipes do it (`cunet.compile.quantize`):
the drop is the task metric lost against the FP32 model on OpenVINO (NME or PCKh@0.5 points), scored as `cunet
evaluate` scores on held-out annotated images (`cunet.compile.accuracy_budget`), and while over budget the block
whose float copy gains most is kept float (NNCF `IgnoredScope` of its node names). It ranks the ~80 CU-Net
blocks with one quantization each, where NNCF's accuracy control ranks single operations and needs a validation
metric callback; both land on the same kind of result (a few float layers), and the per-block one reports which
blocks in the same words as the other recipes (`float_groups`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cunet.errors import CunetError
from cunet.io import check_writable, write_files
from cunet.tempdirs import temp_dir

__all__ = ["OvSettings", "OPENVINO_RECIPE", "NNCF_DEFAULT", "quantize_openvino", "save_ir", "ov_model_groups"]


@dataclass(frozen=True)
class OvSettings:
    """How the `openvino` recipe calls NNCF.

    Attributes:
        preset: NNCF's QuantizationPreset: "performance" (symmetric activations) or "mixed" (asymmetric).
        bn_to_depthwise: rewrite every BatchNormalization as a 1x1 depthwise conv first (as the `cpu` recipe does).
        fast_bias_correction: NNCF's fast bias correction (False: the slower full bias correction).
        ignore_heads: keep the heatmap heads (last 1x1 convs) in float.
    """

    preset: str = "performance"
    bn_to_depthwise: bool = False
    fast_bias_correction: bool = True
    ignore_heads: bool = False

    def __post_init__(self) -> None:
        if self.preset not in ("performance", "mixed"):
            raise CunetError(f"NNCF preset must be performance or mixed, got {self.preset!r}")


#: The recipe `cunet quantize --recipe openvino` uses. Measured on cunet-face-8 256², batch 1, 2 threads, one
#: interleaved run (random weights): NNCF defaults 2.90x ORT FP32, BN as depthwise conv first 3.13x, the mixed
#: preset 3.20x, both 3.09x — within that run's noise of each other (p10-p90 spreads of +-20 %), so the recipe takes
#: the plain graph with asymmetric activations (the normalised image, its first input, is signed) and no rewrite.
#: Issue 26 (1 thread, CPU clock, several interleaved runs): the mixed preset 0.99-1.00x NNCF's defaults, BN as
#: depthwise conv 0.91-0.94x (cunet-tiny), NNCF's target device CPU a byte-identical model, Concat scales unified
#: after NNCF 0.99-1.00x, cunet's own Q/DQ placement 1.02-1.03x: nothing reaches 1.10x; docs/int8.md has the
#: per-layer counters that put the floor there.
OPENVINO_RECIPE = OvSettings(preset="mixed")
#: NNCF's defaults on the export as it is: the peer baseline.
NNCF_DEFAULT = OvSettings()


def _nncf():
    try:
        import nncf
    except ImportError:
        raise CunetError("the openvino recipe needs NNCF (pip install 'cunet[nncf]')") from None
    return nncf


def save_ir(model: Any, meta: dict[str, Any], out_path: str | os.PathLike) -> None:
    """Write an OpenVINO model as IR with `meta` (the "cunet" JSON record) in its rt_info: OpenVINO writes into a
    temporary folder and both files are committed through `cunet.io.write_files` (checked, then both written, then
    renamed, `.bin` first: a reader that finds the new `.xml` also finds its weights, and a full disk replaces
    neither)."""
    import openvino as ov

    out = Path(out_path)
    if out.suffix.lower() != ".xml":
        raise CunetError(f"{out}: an OpenVINO IR is written as NAME.xml (with NAME.bin beside it)")
    model.set_rt_info(json.dumps(meta, sort_keys=True, separators=(",", ":")), ["cunet"])
    with temp_dir("ir") as tmp:
        xml = Path(tmp) / "model.xml"
        ov.save_model(model, str(xml), compress_to_fp16=False)
        write_files({out.with_suffix(".bin"): xml.with_suffix(".bin").read_bytes(), out: xml.read_bytes()})


def ov_model_groups(model: Any, onnx_groups: dict[str, list[str]]) -> dict[str, list[str]]:
    """OpenVINO operation names per CU-Net block, from the ONNX node names of each block.

    OpenVINO's ONNX frontend names an operation after its ONNX node, adding a suffix for the extra operations one
    node becomes (a Conv's bias Add, a BatchNormalization's Multiply/Add); names of Constants are not needed.
    """
    names = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() not in ("Constant", "Parameter")]
    out: dict[str, list[str]] = {}
    for group, nodes in onnx_groups.items():
        prefixes = tuple(nodes)
        hits = [n for n in names if n.startswith(prefixes)]
        if hits:
            out[group] = hits
    return out


def _quantize(nncf, model: Any, inputs: np.ndarray, settings: OvSettings, ignored: list[str]) -> Any:
    preset = nncf.QuantizationPreset.PERFORMANCE if settings.preset == "performance" else nncf.QuantizationPreset.MIXED
    scope = nncf.IgnoredScope(names=ignored, validate=False) if ignored else None
    dataset = nncf.Dataset([inputs[i : i + 1] for i in range(len(inputs))])
    kwargs: dict[str, Any] = dict(subset_size=len(inputs), preset=preset,
                                  fast_bias_correction=settings.fast_bias_correction)
    if scope is not None:
        kwargs["ignored_scope"] = scope
    # NNCF draws its progress bars on stdout; `--json` owns stdout, progress belongs on stderr.
    with contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(model, dataset, **kwargs)


def _heatmaps(core, model: Any, x: np.ndarray) -> np.ndarray:
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    out = []
    for i in range(len(x)):
        request.infer({0: x[i : i + 1]})
        out.append(np.array(request.get_output_tensor(0).data))
    return np.concatenate(out)


def quantize_openvino(
    model_path: str | os.PathLike,
    out_path: str | os.PathLike,
    data: str | os.PathLike,
    samples: int = 64,
    max_drop: float | None = None,
    val_samples: int = 8,
    settings: OvSettings = OPENVINO_RECIPE,
    strict: bool = False,
):
    """NNCF post-training quantization of an exported cunet ONNX model into an OpenVINO IR with cunet metadata.

    Args:
        model_path: the FP32 ONNX model from `cunet export`.
        out_path: the IR's `.xml` (its `.bin` is written beside it).
        data: calibration images (dataset root or image folder), selected as for the other recipes.
        samples: calibration images.
        max_drop: keep the most sensitive blocks float until the INT8 model loses at most this against FP32, in the
            task metric's points (NME or PCKh@0.5), measured on held-out images (`cunet.compile.accuracy_budget`).
        val_samples: held-out annotated images (not in the calibration selection) the drop is measured on.
        settings: the NNCF knobs (`OPENVINO_RECIPE`, `NNCF_DEFAULT` or a variant being measured).
        strict: stop at the first calibration file that cannot be used instead of leaving it out (`cunet.batch`).

    Returns:
        A `cunet.compile.quantize.QuantizeReport` (method "nncf", no range cache).
    """
    import onnx

    from cunet.calib.reader import read_preprocess_spec, select_calibration_images
    from cunet.compile.quantize import QuantizeReport, bn_to_depthwise, node_groups
    from cunet.runtime.ov_backend import ir_files_bytes, require_openvino

    if Path(out_path).suffix.lower() != ".xml":
        raise CunetError(f"{out_path}: the openvino recipe writes an OpenVINO IR: name it NAME.xml (and NAME.bin)")
    check_writable([out_path, Path(out_path).with_suffix(".bin")])  # the .bin sidecar too, before any work
    ov = require_openvino("the openvino recipe")
    nncf = _nncf()
    src = Path(model_path)
    spec = read_preprocess_spec(src)
    selection = select_calibration_images(data, spec, samples)
    loaded = selection.load(strict=strict)
    inputs = loaded.arrays
    proto = onnx.load(str(src))
    meta = json.loads(next(p.value for p in proto.metadata_props if p.key == "cunet"))
    if settings.bn_to_depthwise:
        proto = bn_to_depthwise(proto)
    core = ov.Core()
    with temp_dir("nncf") as tmp:
        prepared = Path(tmp) / "fp32.onnx"
        prepared.write_bytes(proto.SerializeToString())
        fp32 = core.read_model(str(prepared))
    groups = ov_model_groups(fp32, node_groups(proto))
    base = [n for g, ops in groups.items() if settings.ignore_heads and g.startswith("heads.") for n in ops]
    drop, excluded, val = None, [], None
    if max_drop is None:
        model = _quantize(nncf, fp32, inputs, settings, base)
    else:
        from cunet.compile.accuracy_budget import budget_images, loss_of, metric_of

        val = budget_images(src, data, selection, val_samples)
        reference = metric_of(val, _heatmaps(core, fp32, val.x))

        def drop_of(ignored: list[str]) -> tuple[Any, float]:
            q = _quantize(nncf, fp32.clone(), inputs, settings, base + ignored)
            return q, loss_of(val, reference, _heatmaps(core, q, val.x))

        model, drop, excluded = _control(drop_of, groups, max_drop, src)
    meta.update(precision="int8", recipe="openvino", float_groups=[e["group"] for e in excluded])
    save_ir(model, meta, out_path)
    return QuantizeReport(
        output=str(out_path), recipe="openvino", method="nncf", samples=len(inputs), calibration_cache=None,
        reused=False, fp32_bytes=src.stat().st_size, int8_bytes=ir_files_bytes(out_path), drop=drop,
        excluded=excluded, data_fingerprint=selection.fingerprint, samples_requested=samples,
        skipped=[list(x) for x in loaded.skipped],
        settings=dataclasses.asdict(settings), drop_metric=None if val is None else val.metric,
        drop_images=None if val is None else val.count,
    )


def _control(drop_of, groups: dict[str, list[str]], max_drop: float, src: Path):
    model, drop = drop_of([])
    if drop <= max_drop:
        return model, drop, []
    gain = {g: drop - drop_of(ops)[1] for g, ops in groups.items()}
    excluded: list[dict[str, Any]] = []
    ignored: list[str] = []
    for g in sorted(gain, key=gain.get, reverse=True):
        ignored += groups[g]
        model, drop = drop_of(ignored)
        excluded.append({"group": g, "nodes": len(groups[g]), "gain_alone": gain[g], "drop_after": drop})
        if drop <= max_drop:
            return model, drop, excluded
    raise CunetError(f"{src.name}: even with every block in float the drop is {drop:.3f} > --max-drop {max_drop}")

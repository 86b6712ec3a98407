"""INT8 recipes: explicit Q/DQ ONNX models for TensorRT, and the fastest correct INT8 graph for this CPU.

`tensorrt`: explicit Q/DQ in the form TensorRT 10/11 build unchanged — symmetric int8 activations and weights, zero
points 0, per-channel weight scales, no bias quantization (`check_trt` proves it) — placed as TensorRT's
explicit-quantization guide wants: convolution inputs and Concat inputs, one scale per Concat, every map quantized
once and no requantization after a Concat (`cunet.compile.qdq`; `check_trt --strict` finds no concat-scale warning).

`cpu`: measured on the project's 2-core AVX-512 VNNI machine (cunet-face-8, 256², batch 1, ONNX Runtime):
the naive uint8 Q/DQ model spent its time in QLinearConv 36 %, Transpose 22 %, float BatchNormalization 12 %,
DequantizeLinear 11 %, QuantizeLinear 9 %: every pre-activation BN is a float island, so ORT leaves the int8 NHWC
domain (DQ, transpose to NCHW, BN, Q, transpose back) before every convolution. The `cpu` recipe rewrites each
inference BatchNormalization as the equivalent 1x1 depthwise Conv (weight gamma/sqrt(var+eps), bias
beta - mean * weight), which ONNX Runtime quantizes like any conv, so the graph stays uint8 NHWC from the first Q to
the last DQ. Activations are asymmetric uint8 (VNNI's u8s8 dot products; ReLU folds into the quantization range),
weights per-channel int8. That measured 2.16x faster than FP32 where the naive recipe was 1.52x (one interleaved run).

Accuracy control (`max_drop`): nodes are grouped by their exported module path (stem, one group per U-Net block,
bridges, heads); the drop is the task metric lost against FP32 — NME points for faces, PCKh@0.5 points for poses —
measured as `cunet evaluate` measures it (same crops, same decoder, ground-truth normaliser) on annotated images the
calibration did not use (`cunet.compile.accuracy_budget`). While over budget, groups are tried in order of
sensitivity (largest drop reduction when it alone stays float); a group stays float only when it lowers the drop, so
the reported drop falls at every kept group. Groups whose float copy does not help are never kept. When only every
group in float meets the budget, the written model is FP32 in all but name: `QuantizeReport.all_float` says so and
`cunet quantize` warns and exits 1.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cunet.compile.graph import set_nodes
from cunet.errors import CunetError
from cunet.io import write_bytes
from cunet.runtime.meta import read_onnx_meta
from cunet.tempdirs import temp_dir

__all__ = ["Recipe", "QuantizeReport", "quantize", "quantize_with_ranges", "bn_to_depthwise", "node_groups", "landmark_drop"]


class Recipe(str, Enum):
    """Which INT8 model to build."""

    TENSORRT = "tensorrt"  # Q/DQ that TensorRT 10/11 build unchanged
    CPU = "cpu"  # the fastest correct INT8 graph for ONNX Runtime on x86 CPUs


@dataclass(frozen=True)
class QuantizeReport:
    """What `quantize` did.

    Attributes:
        output: the INT8 model path.
        recipe, method: the recipe and calibration method.
        samples: calibration images the ranges come from; samples_requested: how many were asked for;
        skipped: [file, problem] of the calibration files left out (`cunet.batch`: unreadable images, bad
            annotations of a dataset).
        calibration_cache: the calibration cache entry; reused: whether it was reused.
        fp32_bytes, int8_bytes: file sizes.
        drop: the metric points the written model loses against FP32 (`drop_metric`: NME points up, PCKh@0.5 points
            down) on `drop_images` held-out annotated images, if measured (`--max-drop`).
        excluded: node groups kept in float, most sensitive first: "group", "nodes", "gain_alone" (drop reduction,
            metric points, when it alone stays float) and "drop_after" (the drop once it and those above stay float);
            "forced": True on the groups kept float only because nothing else met the budget (all_float).
        groups: node groups the model has (0 when --max-drop was not used).
        all_float: every group had to stay float to meet --max-drop: nothing is quantized.
        data_fingerprint: the calibration selection's fingerprint where no range cache records it (openvino recipe).
        settings: the NNCF settings of the openvino recipe (`cunet.compile.openvino.OvSettings`), else None.
        drop_metric: the metric `drop` is in ("nme" or "pckh@0.5"); drop_images: how many images it was measured on.
    """

    output: str
    recipe: str
    method: str
    samples: int
    calibration_cache: str | None
    reused: bool
    fp32_bytes: int
    int8_bytes: int
    drop: float | None = None
    excluded: list[dict[str, Any]] = field(default_factory=list)
    samples_requested: int | None = None
    skipped: list[list[str]] = field(default_factory=list)
    groups: int = 0
    all_float: bool = False
    data_fingerprint: str | None = None
    settings: dict[str, Any] | None = None
    drop_metric: str | None = None
    drop_images: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The `cunet quantize --json` object: every field, "skipped" as [{"file", "problem"}] like every batch
        command's JSON (`cunet.batch`)."""
        return {**self.__dict__, "skipped": [{"file": f, "problem": p} for f, p in self.skipped]}


def bn_to_depthwise(model):
    """Rewrite every inference BatchNormalization of an ONNX model as the equivalent 1x1 depthwise Conv (in place).

    Args:
        model: an `onnx.ModelProto` with 4-D BatchNormalization nodes whose scale/bias/mean/var are initializers.

    Returns:
        The same model object.
    """
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    # The TorchScript exporter shares identical parameters (e.g. untrained BN) through Identity nodes.
    inits.update({n.output[0]: inits[n.input[0]] for n in g.node if n.op_type == "Identity" and n.input[0] in inits})
    nodes = []
    for n in g.node:
        if n.op_type != "BatchNormalization" or len(n.output) != 1 or not all(t in inits for t in n.input[1:5]):
            nodes.append(n)
            continue
        eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (numpy_helper.to_array(inits[t]).astype(np.float64) for t in n.input[1:5])
        scale = gamma / np.sqrt(var + eps)
        w_name, b_name = f"{n.name}.dw_weight", f"{n.name}.dw_bias"
        g.initializer.extend(
            [
                numpy_helper.from_array(scale.reshape(-1, 1, 1, 1).astype(np.float32), w_name),
                numpy_helper.from_array((beta - mean * scale).astype(np.float32), b_name),
            ]
        )
        nodes.append(
            helper.make_node(
                "Conv", [n.input[0], w_name, b_name], list(n.output), name=f"{n.name}/dw", group=len(scale), kernel_shape=[1, 1]
            )
        )
    set_nodes(g, nodes)
    return model


# Node names carry the module path: `unets.0.down.1.dense/Conv_12` (cunet export) or `/unets.0/down.1/...` (legacy).
_GROUP = re.compile(r"^/?((?:unets\.\d+[./](?:down\.\d+|bottom|up\.\d+))|unets\.\d+|bridges\.\d+|heads\.\d+|stem)[./]")


def node_groups(model) -> dict[str, list[str]]:
    """Node names grouped by CU-Net block: `stem`, `unets.I/down.J|bottom|up.J`, `bridges.I`, `heads.I` (others: none)."""
    groups: dict[str, list[str]] = {}
    for n in model.graph.node:
        m = _GROUP.match(n.name)
        if m:
            groups.setdefault(m.group(1).replace("/", "."), []).append(n.name)
    return groups


def _cpu_options() -> dict[str, Any]:
    """`quantize_static` settings of the `cpu` recipe (the `tensorrt` recipe places its Q/DQ itself)."""
    from onnxruntime.quantization import QuantFormat, QuantType

    return dict(
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"WeightSymmetric": True},
        op_types_to_quantize=None,
    )


def prepare_fp32(model_path: str | os.PathLike, recipe: Recipe, out_path: str | os.PathLike) -> Path:
    """The FP32 model the recipe quantizes: the export itself (tensorrt) or its BN → depthwise rewrite (cpu)."""
    import onnx

    out = Path(out_path)
    if recipe is Recipe.TENSORRT:
        out.write_bytes(Path(model_path).read_bytes())
    else:
        out.write_bytes(bn_to_depthwise(onnx.load(str(model_path))).SerializeToString())
    return out


def quantize_with_ranges(fp32_path: Path, ranges, recipe: Recipe, exclude: list[str]):
    """Quantize `fp32_path` with precomputed `Ranges`; returns a ModelProto.

    The `tensorrt` recipe places its Q/DQ itself (`cunet.compile.qdq.place_trt_qdq`). The `cpu` recipe is ONNX
    Runtime's `quantize_static`: ONNX Runtime >= 1.32 takes the ranges as a calibration cache file
    (`calibration_cache_path`). Older releases (the ones Jetson wheels ship; `pyproject` admits 1.18) have no such
    argument: there the ranges are handed over by the calibrator `quantize_static` creates, which here collects
    nothing and returns them.
    """
    import inspect

    import onnx

    if recipe is Recipe.TENSORRT:
        from cunet.compile.qdq import place_trt_qdq

        return place_trt_qdq(onnx.load(str(fp32_path)), ranges.tensors, exclude)
    from onnxruntime.quantization import quantize_static

    opts = _cpu_options()
    with temp_dir("quant") as tmp:
        out = os.path.join(tmp, "int8.onnx")
        common = dict(nodes_to_exclude=list(exclude), calibrate_method=ranges.method.to_ort(), **opts)
        with _no_preprocess_advice():
            if "calibration_cache_path" in inspect.signature(quantize_static).parameters:
                from onnxruntime.quantization.calibrate import save_tensors_data

                cache = os.path.join(tmp, "ranges.json")
                save_tensors_data(ranges.to_tensors_data(), cache)
                quantize_static(str(fp32_path), out, None, calibration_cache_path=cache, **common)
            else:
                with _precomputed_calibrator(ranges.to_tensors_data()):
                    quantize_static(str(fp32_path), out, _NoData(), **common)
        return onnx.load(out)


class _NoData:
    """A calibration data reader with no batches (the ranges are already known)."""

    def get_next(self):
        return None


@contextlib.contextmanager
def _precomputed_calibrator(tensors_data):
    # quantize_static (< 1.32) calls `create_calibrator` from its own module, then collect_data and compute_data.
    import importlib

    ort_quantize = importlib.import_module("onnxruntime.quantization.quantize")  # the module, not its function

    class Known:
        def collect_data(self, reader):
            pass

        def compute_data(self):
            return tensors_data

    saved = ort_quantize.create_calibrator
    ort_quantize.create_calibrator = lambda *a, **k: Known()
    try:
        yield
    finally:
        ort_quantize.create_calibrator = saved


class _PreprocessAdvice(logging.Filter):
    """Drops ORT's root-logger advice 'Please consider (to run) pre-processing'.

    Exports are already simplified and shape-inferred by onnxslim; the advice only clutters bench and demo output.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider")


@contextlib.contextmanager
def _no_preprocess_advice():
    advice = _PreprocessAdvice()
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def _argmax_points(heatmaps: np.ndarray) -> np.ndarray:
    # argmax plus a quarter-pixel step toward the larger neighbour: heatmaps [N, K, H, W] → [N, K, 2] (x, y) in px.
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1).argmax(-1)
    ys, xs = np.divmod(flat, w)
    pts = np.stack([xs, ys], -1).astype(np.float64)
    ii, jj = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    right = heatmaps[ii, jj, ys, np.minimum(xs + 1, w - 1)] - heatmaps[ii, jj, ys, np.maximum(xs - 1, 0)]
    down = heatmaps[ii, jj, np.minimum(ys + 1, h - 1), xs] - heatmaps[ii, jj, np.maximum(ys - 1, 0), xs]
    pts[..., 0] += 0.25 * np.sign(right)
    pts[..., 1] += 0.25 * np.sign(down)
    return pts


def landmark_drop(fp32_heatmaps: np.ndarray, int8_heatmaps: np.ndarray) -> float:
    """NME (percent) of INT8 landmarks against FP32 landmarks, decoded from heatmaps [N, K, H, W].

    The normaliser is the FP32 outer-eye-corner distance (points 36, 45) for 68-point faces, else the heatmap side.
    For faces this bounds the NME increase against any ground truth (triangle inequality, same normaliser).
    """
    a, b = _argmax_points(fp32_heatmaps), _argmax_points(int8_heatmaps)
    if a.shape[1] == 68:
        norm = np.linalg.norm(a[:, 36] - a[:, 45], axis=-1)
        norm = np.where(norm > 0, norm, fp32_heatmaps.shape[-1])
    else:
        norm = np.full(len(a), float(fp32_heatmaps.shape[-1]))
    return float((np.linalg.norm(a - b, axis=-1).mean(axis=1) / norm).mean() * 100.0)


def _run(model_bytes: bytes, x: np.ndarray, where: Path) -> np.ndarray:
    import onnxruntime as ort

    from cunet.runtime.ort_backend import metadata_input_rejected

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    with metadata_input_rejected(where):
        return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def _control(fp32_path: Path, ranges, recipe: Recipe, val, max_drop: float, say: Callable[[str], None]):
    """(model, drop, excluded groups, number of groups) meeting `max_drop`; see the module docstring. `val` is the
    held-out `cunet.compile.accuracy_budget.BudgetImages`."""
    import onnx

    from cunet.compile.accuracy_budget import loss_of, metric_of

    reference = metric_of(val, _run(fp32_path.read_bytes(), val.x, fp32_path))

    def drop_of(exclude: list[str]):
        model = quantize_with_ranges(fp32_path, ranges, recipe, exclude)
        return model, loss_of(val, reference, _run(model.SerializeToString(), val.x, fp32_path))

    say("max-drop: measuring the fully quantized model")
    model, drop = drop_of([])
    groups = node_groups(onnx.load(str(fp32_path)))
    if drop <= max_drop:
        return model, drop, [], len(groups)
    gain: dict[str, float] = {}
    for i, (g, nodes) in enumerate(groups.items(), 1):
        say(f"max-drop: sensitivity {i}/{len(groups)}: {g} alone in float")
        gain[g] = drop - drop_of(nodes)[1]
    excluded: list[dict[str, Any]] = []
    exclude: list[str] = []
    helpful = [g for g in sorted(gain, key=gain.get, reverse=True) if gain[g] > 0]
    for i, g in enumerate(helpful, 1):
        say(f"max-drop: keeping {g} in float ({i}/{len(helpful)}), drop now {drop:.3f} > {max_drop}")
        trial, trial_drop = drop_of(exclude + groups[g])
        if trial_drop >= drop:  # does not help together with the groups already float: quantize it
            continue
        exclude += groups[g]
        model, drop = trial, trial_drop
        excluded.append({"group": g, "nodes": len(groups[g]), "gain_alone": gain[g], "drop_after": drop})
        if drop <= max_drop:
            return model, drop, excluded, len(groups)
    say("max-drop: budget not met by any subset tried: every group in float")
    rest = [g for g in groups if g not in {e["group"] for e in excluded}]
    model, drop = drop_of([n for nodes in groups.values() for n in nodes])
    excluded += [{"group": g, "nodes": len(groups[g]), "gain_alone": gain[g], "drop_after": drop, "forced": True}
                 for g in rest]
    if drop > max_drop:
        raise CunetError(f"{fp32_path.name}: even with every block in float the drop is {drop:.3f} > --max-drop "
                         f"{max_drop}")
    return model, drop, excluded, len(groups)


def quantize(
    model_path: str | os.PathLike,
    out_path: str | os.PathLike,
    recipe: Recipe | str,
    data: str | os.PathLike,
    method: str = "minmax",
    samples: int = 64,
    cache_dir: str | os.PathLike | None = None,
    max_drop: float | None = None,
    val_samples: int = 8,
    progress: Callable[[str], None] | None = None,
    strict: bool = False,
) -> QuantizeReport:
    """Calibrate (or reuse cached ranges) and write an INT8 Q/DQ model with the model's metadata.

    Args:
        model_path: the FP32 ONNX model from `cunet export`.
        out_path: where the INT8 model goes (written atomically).
        recipe: "tensorrt" or "cpu".
        data: calibration images (dataset root or image folder).
        method: minmax, entropy or percentile.
        samples: calibration images.
        cache_dir: calibration cache directory.
        max_drop: keep the most sensitive blocks in float until the INT8 model loses at most this against FP32, in
            the task metric's points (NME points for faces, PCKh@0.5 points for poses; see the module docstring).
        val_samples: held-out annotated images (not in the calibration selection) the drop is measured on.
        progress: called with one line per step of the --max-drop search (each step quantizes the model once).
        strict: stop at the first calibration file that cannot be used instead of leaving it out (`cunet.batch`;
            the report's `skipped` lists them).
    """
    import onnx

    from cunet.calib.calibrate import calibrate
    from cunet.calib.reader import read_preprocess_spec, select_calibration_images

    recipe = Recipe(recipe)
    src = Path(model_path)
    read_preprocess_spec(src)
    if read_onnx_meta(src).decode is not None:  # calibration and the accuracy check work on heatmaps
        raise CunetError(f"{src}: the model decodes in its graph (cunet export --decode); quantize the model "
                         "exported without --decode")
    with temp_dir("quant") as tmp:
        fp32 = prepare_fp32(src, recipe, Path(tmp) / src.name)
        try:
            ranges = calibrate(fp32, data, method=method, samples=samples, cache_dir=cache_dir, strict=strict)
            if strict and ranges.skipped:  # a cache entry made without strict
                raise CunetError(f"{ranges.skipped[0][0]}: {ranges.skipped[0][1]}")
        except CunetError as e:  # name the user's model, not its prepared copy in the temporary folder
            raise CunetError(str(e).replace(str(fp32), str(src))) from e
        drop, excluded, n_groups, val = None, [], 0, None
        if max_drop is None:
            model = quantize_with_ranges(fp32, ranges, recipe, [])
        else:
            from cunet.compile.accuracy_budget import budget_images

            val = budget_images(src, data, select_calibration_images(data, read_preprocess_spec(fp32), samples),
                                val_samples)
            say = progress or (lambda line: None)
            model, drop, excluded, n_groups = _control(fp32, ranges, recipe, val, max_drop, say)
    _copy_meta(onnx.load(str(src), load_external_data=False), model, recipe, excluded)
    write_bytes(out_path, model.SerializeToString())
    return QuantizeReport(
        output=str(out_path),
        recipe=recipe.value,
        method=ranges.method.value,
        samples=ranges.samples,
        samples_requested=samples,
        skipped=[list(x) for x in ranges.skipped],
        calibration_cache=ranges.cache_file,
        reused=ranges.from_cache,
        fp32_bytes=src.stat().st_size,
        int8_bytes=Path(out_path).stat().st_size,
        drop=drop,
        excluded=excluded,
        groups=n_groups,
        all_float=bool(n_groups) and len(excluded) == n_groups,
        drop_metric=None if val is None else val.metric,
        drop_images=None if val is None else val.count,
    )


def _copy_meta(src, dst, recipe: Recipe, excluded: list[dict[str, Any]]) -> None:
    props = {p.key: p.value for p in src.metadata_props}
    meta = json.loads(props["cunet"])
    meta.update(precision="int8", recipe=recipe.value, float_groups=[e["group"] for e in excluded])
    kept = [p for p in dst.metadata_props if p.key != "cunet"]
    del dst.metadata_props[:]
    dst.metadata_props.extend(kept)
    entry = dst.metadata_props.add()
    entry.key, entry.value = "cunet", json.dumps(meta)

"""`cunet calibrate`, `cunet quantize` and `cunet check-trt`: activation ranges, INT8 models, TensorRT Q/DQ rules."""

from __future__ import annotations

import click

from cunet.commands._common import console, emit_json, json_option, print_table

__all__ = ["calibrate", "quantize", "check_trt"]

_method = click.option(
    "--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True,
    help="ONNX Runtime calibrator.",
)
_samples = click.option("--samples", type=int, default=64, show_default=True, help="Calibration images, spread evenly.")
_data = click.option("--data", required=True, type=click.Path(file_okay=False), help="Dataset root or image folder.")
_cache = click.option("--cache-dir", type=click.Path(file_okay=False), help="Calibration cache (default ~/.cache/cunet/calib).")


def _say_cache(ranges_or_report) -> None:
    if getattr(ranges_or_report, "recipe", None) == "openvino":  # NNCF keeps its own statistics: no range cache
        fingerprint = ranges_or_report.data_fingerprint
        console().print(f"calibrated on {ranges_or_report.samples} images (selection {fingerprint[:12]})")
        return
    reused = getattr(ranges_or_report, "from_cache", None)
    if reused is None:
        reused = ranges_or_report.reused
    where = getattr(ranges_or_report, "cache_file", None) or getattr(ranges_or_report, "calibration_cache", None)
    console().print(f"{'reusing' if reused else 'wrote'} calibration cache {where}")


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@_data
@_method
@_samples
@_cache
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also write the ranges to this JSON file.")
@json_option
def calibrate(model, data, method, samples, cache_dir, output, as_json):
    """Activation ranges of an exported model from real images (cached).

    \b
    Images go through the exact preprocessing in the model's metadata. The cache is
    reused only when the model bytes, the selected files, the method and --samples match:
      cunet calibrate model.onnx --data data/300w --samples 64
      cunet calibrate model.onnx --data photos/ --method entropy -o ranges.json
    """
    from cunet.calib.calibrate import calibrate as run
    from cunet.io import write_json

    ranges = run(model, data, method=method, samples=samples, cache_dir=cache_dir)
    _say_cache(ranges)
    if output:
        write_json(output, ranges.to_dict())
    summary = {
        "model": model, "method": ranges.method.value, "samples": ranges.samples, "tensors": len(ranges.tensors),
        "cache_file": ranges.cache_file, "reused": ranges.from_cache, "output": output,
    }
    if as_json:
        emit_json(summary)
        return
    print_table("calibration", ["", "value"], [(k, "" if v is None else v) for k, v in summary.items()])


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--recipe", type=click.Choice(["tensorrt", "cpu", "openvino"]), required=True,
              help="Target of the INT8 model (see below).")
@_data
@_method
@_samples
@_cache
@click.option("--max-drop", type=float, help="Keep sensitive blocks float until INT8-vs-FP32 NME ≤ this (points).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The INT8 model: .onnx (tensorrt, cpu) or .xml (openvino; NAME.bin is written beside it).")
@json_option
def quantize(model, recipe, data, method, samples, cache_dir, max_drop, output, as_json):
    """Calibrate and write an INT8 model.

    \b
    Which recipe where (cunet-face-8 256², batch 1, 2 threads, bench/cpu_int8.py; ratios vs ONNX Runtime FP32):
    --recipe openvino  Intel/x86 CPUs: NNCF PTQ → OpenVINO IR (.xml + .bin, metadata in its rt_info), run with
                       --backend openvino; the fastest CPU INT8 measured (see the README's INT8 table)
    --recipe cpu       CPUs with ONNX Runtime only: uint8 activations, BN as depthwise conv (about 2x FP32)
    --recipe tensorrt  GPUs: symmetric int8, zero points 0, per-channel weights; TensorRT 10/11 build it
                       unchanged, and OpenVINO runs the same file on Intel CPUs (ONNX Runtime runs it slowly)
    The openvino recipe ignores --method and --cache-dir: NNCF computes its own statistics from the same
    selected images, preprocessed exactly as at inference.
    \b
      cunet quantize model.onnx --recipe openvino --data data/300w -o model.int8.xml
      cunet quantize model.onnx --recipe tensorrt --data data/300w -o model.int8.onnx
      cunet quantize model.onnx --recipe cpu --data data/300w --max-drop 0.1 -o model.cpu.int8.onnx
    """
    if recipe == "openvino":
        from cunet.compile.openvino import quantize_openvino

        report = quantize_openvino(model, output, data, samples=samples, max_drop=max_drop)
    else:
        from cunet.compile.quantize import quantize as run

        report = run(model, output, recipe, data, method=method, samples=samples, cache_dir=cache_dir,
                     max_drop=max_drop)
    _say_cache(report)
    if as_json:
        emit_json(report.to_dict())
        return
    rows = [
        ("output", report.output),
        ("recipe", report.recipe),
        ("size FP32 → INT8 (MB)", f"{report.fp32_bytes / 1e6:.2f} → {report.int8_bytes / 1e6:.2f}"),
        ("INT8 vs FP32 NME (points)", "not measured" if report.drop is None else round(report.drop, 4)),
    ]
    rows += [(f"float: {e['group']}", f"gain {e['gain_alone']:.3g}, drop after {e['drop_after']:.3g}") for e in report.excluded]
    print_table("quantize", ["", "value"], rows)


@click.command("check-trt")
@click.argument("model", type=click.Path(dir_okay=False))
@json_option
def check_trt(model, as_json):
    """Check that a Q/DQ model obeys TensorRT's rules (exit 1 on any violation).

    \b
    int8 Q/DQ only, zero points 0, per-channel Conv weights on axis 0, no int32 bias,
    no QLinear*/ConvInteger/MatMulInteger. Unequal Concat input scales are warnings.
      cunet check-trt model.int8.onnx
    """
    from cunet.compile.trt_rules import check_trt as run
    from cunet.errors import CunetError

    found = run(model)
    errors = [v for v in found if v.severity == "error"]
    if as_json:
        emit_json({"model": model, "ok": not errors, "violations": [v.__dict__ for v in found]})
    else:
        for v in found:
            console().print(f"{v.severity}: [{v.rule}] {v.node}: {v.message}", markup=False, highlight=False)
        console().print(f"{model}: {len(errors)} error(s), {len(found) - len(errors)} warning(s)")
    if errors:
        raise CunetError(f"{model}: {len(errors)} TensorRT Q/DQ rule violation(s), first: [{errors[0].rule}] {errors[0].message}")

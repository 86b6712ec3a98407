"""`cunet calibrate`, `cunet quantize` and `cunet check-trt`: activation ranges, INT8 models, TensorRT Q/DQ rules."""

from __future__ import annotations

import click

from cunet.commands._common import console, emit_json, force_option, json_option, output_option, print_table

__all__ = ["calibrate", "quantize", "check_trt"]

_method = click.option(
    "--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True,
    help="ONNX Runtime calibrator.",
)
_samples = click.option("--samples", type=int, default=64, show_default=True, help="Calibration images, spread evenly.")
_data = click.option("--data", required=True, type=click.Path(),
                     help="Dataset (any layout `cunet data check` reads, or a COCO face .json) or image folder.")


def _default_cache_dir() -> str:
    from cunet.calib.cache import default_cache_dir

    return str(default_cache_dir())


_cache = output_option("--cache-dir", folder=True, cache=True, tag="cunet calibration cache",
                       default=_default_cache_dir, help="Calibration cache, shared by calibrate and quantize.",
                       show_default="$XDG_CACHE_HOME/cunet/calib, i.e. ~/.cache/cunet/calib")


_strict = click.option("--strict", is_flag=True,
                       help="Stop at the first file of --data that cannot be used (default: leave it out, say so, "
                            "exit 1 at the end).")


def _say_samples(used: int, requested: int, skipped, data) -> None:
    """Say which files were left out (`skipped FILE: why`), and how many images the ranges really come from."""
    from cunet.batch import print_skipped

    print_skipped(skipped)
    if used < requested:
        why = f"{len(skipped)} file(s) skipped" if skipped else f"{data} has only {used} image(s)"
        click.echo(f"warning: calibrated on {used} image(s), {requested} requested ({why})", err=True)


def _finish_batch(skipped, used: int) -> None:
    """The batch rule's closing line: the work is done and written, but a left-out input makes the exit status 1."""
    from cunet.batch import finish

    finish(skipped, used, "calibration image(s) used")


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
@_strict
@output_option("-o", "--output", help="Also write the ranges to this JSON file.")
@force_option
@json_option
def calibrate(model, data, method, samples, cache_dir, strict, output, force, as_json):
    """Activation ranges of an exported model from real images (cached).

    \b
    Images go through the exact preprocessing in the model's metadata. The cache is
    reused only when the model bytes, the selected files, the method and --samples match:
      cunet calibrate model.onnx --data data/300w --samples 64
      cunet calibrate model.onnx --data photos/ --method entropy -o ranges.json
    "samples" is the number of images the ranges come from; fewer than --samples is said on stderr.
    A file that cannot be used (an unreadable image, a bad annotation of a dataset) is left out with one
    `skipped FILE: why` line; the exit status is then 1 (--strict: stop at the first).
    """
    from cunet.calib.calibrate import calibrate as run
    from cunet.errors import CunetError
    from cunet.filetype import require
    from cunet.io import write_json

    require(model, "onnx", "calibrate")
    ranges = run(model, data, method=method, samples=samples, cache_dir=cache_dir, strict=strict)
    if strict and ranges.skipped:  # a cache entry made without --strict
        raise CunetError(f"{ranges.skipped[0][0]}: {ranges.skipped[0][1]}")
    _say_cache(ranges)
    _say_samples(ranges.samples, samples, ranges.skipped, data)
    if output:
        write_json(output, ranges.to_dict())
    summary = {
        "model": model, "method": ranges.method.value, "samples": ranges.samples, "requested": samples,
        "skipped": [{"file": f, "problem": p} for f, p in ranges.skipped], "tensors": len(ranges.tensors),
        "cache_file": ranges.cache_file, "reused": ranges.from_cache, "output": output,
    }
    if as_json:
        emit_json(summary)
    else:
        rows = [(k, "" if v is None else v) for k, v in summary.items() if k != "skipped"]
        print_table("calibration", ["", "value"], rows + [("skipped", len(ranges.skipped))])
    _finish_batch(ranges.skipped, ranges.samples)


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--recipe", type=click.Choice(["tensorrt", "cpu", "openvino"]), required=True,
              help="Target of the INT8 model (see below).")
@_data
@_method
@_samples
@_cache
@click.option("--max-drop", type=float, metavar="POINTS",
              help="Keep sensitive blocks float until INT8 loses at most this against FP32, in the task metric's "
                   "points (NME points for faces, PCKh@0.5 points for poses), scored as evaluate scores on "
                   "annotated images the calibration did not use.")
@_strict
@output_option("-o", "--output", required=True,
               help="The INT8 model: .onnx (tensorrt, cpu) or .xml (openvino; NAME.bin is written beside it).")
@force_option
@json_option
def quantize(model, recipe, data, method, samples, cache_dir, max_drop, strict, output, force, as_json):
    """Calibrate and write an INT8 model.

    \b
    Which recipe where (cunet-face-8 256², batch 1, 2 threads, bench/cpu_int8.py; ratios vs ONNX Runtime FP32):
    --recipe openvino  Intel/x86 CPUs: NNCF PTQ → OpenVINO IR (.xml + .bin, metadata in its rt_info), run with
                       --backend openvino; the fastest CPU INT8 measured (docs/int8.md)
    --recipe cpu       CPUs with ONNX Runtime only: uint8 activations, BN as depthwise conv (about 2x FP32)
    --recipe tensorrt  GPUs: symmetric int8, zero points 0, per-channel weights, one scale per Concat; TensorRT
                       10/11 build it unchanged, and OpenVINO runs the same file on Intel CPUs as fast as the
                       openvino recipe (ONNX Runtime runs it slowly)
    The openvino recipe ignores --method and --cache-dir: NNCF computes its own statistics from the same
    selected images, preprocessed exactly as at inference.
    \b
      cunet quantize model.onnx --recipe openvino --data data/300w -o model.int8.xml
      cunet quantize model.onnx --recipe tensorrt --data data/300w -o model.int8.onnx
      cunet quantize model.onnx --recipe cpu --data data/300w --max-drop 0.1 -o model.cpu.int8.onnx
    \b
    --max-drop is in the task metric's points (NME points for faces, PCKh@0.5 points for poses) and is
    measured as `cunet evaluate` measures (same crops, decoder and ground-truth normaliser) on annotated
    images of the data that calibration did not use (--samples leaves the rest). It quantizes the model once
    per step (one line each on stderr); when only keeping every block group in float meets the budget, the
    model is still written but the exit status is 1 (nothing is INT8).
    A file of --data that cannot be used is one `skipped FILE: why` line; the model is written from the rest
    and the exit status is 1 (--strict: stop at the first).
    """
    from cunet.filetype import require

    require(model, "onnx", "quantize")
    if recipe == "openvino":
        from cunet.compile.openvino import quantize_openvino

        report = quantize_openvino(model, output, data, samples=samples, max_drop=max_drop, strict=strict)
    else:
        from cunet.compile.quantize import quantize as run

        def say(line: str) -> None:
            click.echo(line, err=True)

        report = run(model, output, recipe, data, method=method, samples=samples, cache_dir=cache_dir,
                     max_drop=max_drop, progress=say, strict=strict)
    _say_cache(report)
    _say_samples(report.samples, samples, report.skipped, data)
    if report.all_float:
        click.echo(f"warning: --max-drop {max_drop} kept all {report.groups} block groups in float: nothing is "
                   f"quantized ({report.fp32_bytes / 1e6:.2f} → {report.int8_bytes / 1e6:.2f} MB), the model is FP32 "
                   "in all but name; raise --max-drop, or calibrate on more or better images", err=True)
    if as_json:
        emit_json(report.to_dict())
    else:
        rows = [
            ("output", report.output),
            ("recipe", report.recipe),
            ("calibration images", f"{report.samples} of {samples} requested"),
            ("size FP32 → INT8 (MB)", f"{report.fp32_bytes / 1e6:.2f} → {report.int8_bytes / 1e6:.2f}"),
            ("lost vs FP32", "not measured" if report.drop is None else
             f"{report.drop:.3f} {_points(report.drop_metric)} on {report.drop_images} held-out image(s)"),
        ]
        print_table("quantize", ["", "value"], rows)
        if report.excluded:
            chosen = [e for e in report.excluded if not e.get("forced")]
            forced = [e for e in report.excluded if e.get("forced")]
            rows = [(e["group"], e["nodes"], e["gain_alone"], e["drop_after"]) for e in chosen]
            if forced:  # one row: their drops are not their own, only the all-float model's
                rows.append((f"the other {len(forced)} group(s)", sum(e["nodes"] for e in forced), None,
                             forced[-1]["drop_after"]))
            print_table(f"kept in float: {len(report.excluded)} of {report.groups} block groups, most sensitive first",
                        ["block group", "nodes", f"drop saved alone ({_points(report.drop_metric)})",
                         f"drop after ({_points(report.drop_metric)})"], rows,
                        decimals={2: 3, 3: 3})
    _finish_batch(report.skipped, report.samples)
    if report.all_float:
        raise click.exceptions.Exit(1)


#: What each kind of check-trt warning costs, printed once per kind beside its count.
WARNING_COSTS = {
    "concat-scales": "speed only, never accuracy: TensorRT requantizes the Concat inputs to one scale (an extra "
                     "int8 copy per input) and cannot write them in place; cunet's own --recipe tensorrt output has "
                     "none (--strict makes them errors)",
}


@click.command("check-trt")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Warnings (unequal Concat input scales) are errors too (exit 1).")
@json_option
def check_trt(model, strict, as_json):
    """Check that a Q/DQ model obeys TensorRT's rules (exit 1 on any violation).

    \b
    int8 Q/DQ only, zero points 0, per-channel Conv weights on axis 0, no int32 bias,
    no QLinear*/ConvInteger/MatMulInteger. Unequal Concat input scales are warnings (each
    warning kind is printed once with what it costs); --strict makes them errors.
    A model without any QuantizeLinear/DequantizeLinear node is not an INT8 model: that is an
    error too (exit 1), since TensorRT would build it in FP32/FP16, not INT8.
      cunet check-trt model.int8.onnx
      cunet check-trt model.int8.onnx --strict
    """
    import onnx

    from cunet.compile.trt_rules import check_trt as run
    from cunet.errors import CunetError
    from cunet.filetype import require

    require(model, "onnx", "check-trt")
    found = run(model, strict=strict)
    qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear")
              for n in onnx.load(str(model), load_external_data=False).graph.node)
    errors = [v for v in found if v.severity == "error"]
    kinds: dict[str, int] = {}
    for v in found:
        if v.severity != "error":
            kinds[v.rule] = kinds.get(v.rule, 0) + 1
    if as_json:
        emit_json({"model": model, "ok": not errors and qdq > 0, "qdq_nodes": qdq,
                   "violations": [v.__dict__ for v in found],
                   "warning_costs": {k: WARNING_COSTS.get(k, "") for k in kinds}})
    else:
        for v in found:
            console().print(f"{v.severity}: [{v.rule}] {v.node}: {v.message}", markup=False, highlight=False)
        for rule, count in kinds.items():
            console().print(f"{count} [{rule}] warning(s): {WARNING_COSTS.get(rule, 'performance advice')}",
                            markup=False, highlight=False)
        if qdq:
            console().print(f"{model}: {qdq} Q/DQ nodes, {len(errors)} error(s), {len(found) - len(errors)} warning(s)",
                            markup=False, highlight=False)
    if qdq == 0:
        raise CunetError(f"{model}: no Q/DQ nodes: not an INT8 model (make one with `cunet quantize --recipe "
                         "tensorrt`)")
    if errors:
        raise CunetError(f"{model}: {len(errors)} TensorRT Q/DQ rule violation(s), first: [{errors[0].rule}] {errors[0].message}")


def _points(metric: str | None) -> str:
    return {"nme": "NME points", "pckh@0.5": "PCKh@0.5 points"}.get(metric or "", "points")

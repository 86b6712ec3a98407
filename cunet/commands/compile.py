"""`cunet compile`: a TensorRT engine from an ONNX model, with `<engine>.manifest.json` provenance beside it."""

from __future__ import annotations

import click

from cunet.commands._common import emit_json, force_option, json_option, output_option, print_table

__all__ = ["compile_engine"]


@click.command("compile")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), required=True,
              help="fp32: the export; fp16: FP16 model or flag; int8: a Q/DQ model from `quantize --recipe tensorrt`.")
@output_option("-o", "--output", required=True,
               help="The .engine file to write (and NAME.engine.manifest.json beside it).")
@click.option("--batch", default="1:8:32", show_default=True, metavar="MIN:OPT:MAX",
              help="Dynamic-batch optimisation profile (one number: a fixed batch).")
@click.option("--workspace", "workspace_mb", type=int, metavar="MB", help="Limit TensorRT's workspace memory pool.")
@output_option("--timing-cache",
               help="Timing cache file: read if present, updated after the build (faster rebuilds on this GPU).")
@click.option("--device", default=0, show_default=True, type=int, help="CUDA device index.")
@click.option("--dla", "dla_core", type=int, metavar="CORE",
              help="Jetson: run on this DLA core, layers it cannot run fall back to the GPU (fp16/int8 only).")
@force_option
@json_option
def compile_engine(model, precision, output, batch, workspace_mb, timing_cache, device, dla_core, force, as_json):
    """Build a TensorRT engine from MODEL (.onnx) on this machine's GPU.

    \b
    TensorRT 11 networks are strongly typed: INT8 comes from the Q/DQ model, FP16 from an FP16-typed model
    (converted here from the FP32 model when a float16 converter is installed). TensorRT 10 (Jetson) builds the
    same models; FP16 from an FP32 model uses its FP16 flag. Beside the engine goes MODEL.engine.manifest.json:
    TensorRT version, GPU and compute capability, precision, shapes, source and calibration hashes. An engine
    whose manifest does not match the machine it is loaded on is refused. FP32 engines are built with TF32 off.
    --dla CORE builds for a Jetson DLA core with GPU fallback (refused where the device has none).
    Needs TensorRT and a CUDA device.
    \b
    Examples:
      cunet compile face.onnx --precision fp32 -o face.fp32.engine
      cunet compile face.int8.onnx --precision int8 -o face.int8.engine --batch 1:8:32 --timing-cache trt.cache
      cunet compile face.int8.onnx --precision int8 -o face.dla0.engine --batch 1 --dla 0
    """
    from cunet.compile.tensorrt import compile_engine as build
    from cunet.filetype import require

    require(model, "onnx", "compile")
    manifest = build(model, output, precision, batch=batch, workspace_mb=workspace_mb, timing_cache=timing_cache,
                     device=device, dla_core=dla_core)
    doc = manifest.to_dict()
    if as_json:
        emit_json({"engine": output, **doc})
        return
    shapes = manifest.shapes
    print_table(f"built {output}", ["", "value"], [
        ("precision", manifest.precision + (" (strongly typed)" if manifest.strongly_typed else
                                            f" (flags {', '.join(manifest.builder_flags)})")),
        ("TensorRT", manifest.tensorrt_version),
        ("GPU (compute capability)", f"{manifest.gpu_name} ({manifest.compute_capability})"),
        ("DLA core", "—" if manifest.dla_core is None else f"{manifest.dla_core} (GPU fallback)"),
        ("input min / opt / max", " / ".join(str(shapes[k]) for k in ("min", "opt", "max"))),
        ("source sha256", manifest.source_sha256[:16]),
        ("calibration sha256", (manifest.calibration_sha256 or "—")[:16]),
        ("manifest", output + ".manifest.json"),
    ])

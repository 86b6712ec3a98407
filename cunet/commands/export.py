"""`cunet export`: a training checkpoint becomes one self-describing FP32 ONNX model with a dynamic batch."""

from __future__ import annotations

import click

from cunet.commands._common import emit_json, force_option, json_option, output_option, print_table
from cunet.errors import require_torch

__all__ = ["export"]


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@output_option("-o", "--output", "output", required=True, help="The .onnx file to write.")
@click.option("--opset", default=18, show_default=True, type=int, help="ONNX opset (17 or newer).")
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim (keep the exporter's graph as is).")
@click.option(
    "--no-verify",
    is_flag=True,
    help="Skip the check that ONNX Runtime is as close to a float64 PyTorch reference as PyTorch float32 is "
    "(then nothing shows that the file computes what the checkpoint does).",
)
@click.option(
    "--verify-data",
    type=click.Path(file_okay=False),
    help="Dataset root or image folder: verify on 3 of its images (cropped like calibration), not synthetic crops.",
)
@click.option("--decode", is_flag=True,
              help="End the graph in the quarter-pixel decoder: output \"landmarks\" [N,K,3] (x, y in crop pixels, "
                   "score) instead of heatmaps, so a device needs no Python post-processing. Every cunet runtime "
                   "uses it; INT8 quantization needs the model exported without it.")
@force_option
@json_option
def export(checkpoint, output, opset, no_simplify, no_verify, verify_data, decode, force, as_json):
    """Export CHECKPOINT (.pt) to ONE .onnx file: input "image" [N,3,S,S], output "heatmaps" [N,K,S/4,S/4].

    \b
    The model carries its own metadata (task, landmark names, flip pairs, input size, mean/std, config, sigma),
    so `cunet evaluate`, `cunet quantize` and `cunet profile` need nothing else. Before writing, ONNX Runtime,
    PyTorch float32 and PyTorch float64 run the same inputs (3 synthetic crops + 1 noise image, or --verify-data
    images); ONNX Runtime's relative error against float64 must be within 3x PyTorch float32's own + 1e-5
    (3x + 0.1 for low-bit models with quantized inputs). Both errors are reported.

    \b
    Examples:
      cunet export runs/face/best.pt -o face.onnx
      cunet export best.pt -o face.onnx --opset 17 --json
      cunet export best.pt -o face.decoded.onnx --decode
      cunet export best.pt -o face.onnx --verify-data data/300w
    """
    require_torch("cunet export")
    from cunet.compile.export import export_onnx
    from cunet.filetype import require

    require(checkpoint, "checkpoint", "export")
    report = export_onnx(
        checkpoint, output, opset=opset, simplify=not no_simplify, verify=not no_verify, verify_images=verify_data,
        decode=decode,
    )
    if as_json:
        emit_json(report.to_dict())
        return
    v = report.verification
    print_table(
        f"exported {report.path}",
        ["", "value"],
        [
            ("task / landmarks", f"{report.meta.task} / {report.meta.num_landmarks}"),
            ("input → output", f"[N,3,{report.meta.input_size},{report.meta.input_size}] → " + (
                f"landmarks [N,{report.meta.num_landmarks},3] ({report.meta.decode} decode in the graph)"
                if report.meta.decode else
                f"[N,{report.meta.num_landmarks},{report.meta.heatmap_size},{report.meta.heatmap_size}]")),
            ("opset / exporter", f"{report.opset} / {report.exporter}"),
            ("nodes (exported → written)", f"{report.nodes_exported} → {report.nodes}"),
            ("file size (MB)", round(report.file_bytes / 1e6, 3)),
            *_verification_rows(v),
            ("seconds", round(report.seconds, 1)),
        ],
    )


def _verification_rows(v) -> list[tuple[str, str]]:
    if v is None:
        return [("verification", "skipped (--no-verify)")]
    allowed = f"allowed {v.factor:g} x PyTorch + {v.floor:g} = {v.allowed:.3g}"
    return [
        ("rel. error vs float64: ORT", f"{v.error_ort:.3g} ({allowed})"),
        ("rel. error vs float64: PyTorch fp32", f"{v.error_torch32:.3g}"),
        ("worst output / inputs", f"{v.worst_output} / {v.samples}: {v.inputs}"),
        ("max |ORT − PyTorch fp32|", f"{v.max_abs_error:.3g}"),
    ]

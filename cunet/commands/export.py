"""`cunet export`: a training checkpoint becomes one self-describing FP32 ONNX model with a dynamic batch."""

from __future__ import annotations

import click

from cunet.commands._common import emit_json, json_option, print_table
from cunet.errors import require_torch

__all__ = ["export"]


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option(
    "-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="The .onnx file to write."
)
@click.option("--opset", default=18, show_default=True, type=int, help="ONNX opset (17 or newer).")
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim (keep the exporter's graph as is).")
@click.option("--no-verify", is_flag=True, help="Skip the ONNX Runtime vs PyTorch check on a random batch of 2.")
@click.option("--decode", is_flag=True,
              help="End the graph in the quarter-pixel decoder: output \"landmarks\" [N,K,3] (x, y in crop pixels, "
                   "score) instead of heatmaps, so a device needs no Python post-processing. Every cunet runtime "
                   "uses it; INT8 quantization needs the model exported without it.")
@json_option
def export(checkpoint, output, opset, no_simplify, no_verify, decode, as_json):
    """Export CHECKPOINT (.pt) to ONE .onnx file: input "image" [N,3,S,S], output "heatmaps" [N,K,S/4,S/4].

    \b
    The model carries its own metadata (task, landmark names, flip pairs, input size, mean/std, config, sigma),
    so `cunet evaluate`, `cunet quantize` and `cunet profile` need nothing else. Before writing, ONNX Runtime
    and PyTorch run the same random batch and must agree (max abs error is reported).

    \b
    Examples:
      cunet export runs/face/best.pt -o face.onnx
      cunet export best.pt -o face.onnx --opset 17 --json
      cunet export best.pt -o face.decoded.onnx --decode
    """
    require_torch("cunet export")
    from cunet.compile.export import export_onnx
    from cunet.filetype import require

    require(checkpoint, "checkpoint", "export")
    report = export_onnx(checkpoint, output, opset=opset, simplify=not no_simplify, verify=not no_verify,
                         decode=decode)
    if as_json:
        emit_json(report.to_dict())
        return
    err = report.max_abs_error
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
            ("max |ORT − PyTorch|", "not verified" if err is None else f"{err:.3g} (allowed {report.tolerance:.3g})"),
            ("seconds", round(report.seconds, 1)),
        ],
    )

"""`cunet pack` and `cunet unpack`: the bit-packed `.cunetq` form of a low-bit ONNX model, and back, byte for byte."""

from __future__ import annotations

import click

from cunet.commands._common import emit_json, force_option, json_option, output_option, print_table

__all__ = ["pack", "unpack"]


def _mb(n: int) -> float:
    return round(n / 1e6, 3)


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@output_option("-o", "--output", required=True, help="The file to write.")
@click.option(
    "--format", "fmt", type=click.Choice(["cunetq", "int4"]), default="cunetq", show_default=True,
    help="cunetq: bit-packed file for storage/transfer (`cunet unpack` restores the ONNX model). "
    "int4: a runnable ONNX model with INT4 weights (opset 21, ONNX Runtime; TensorRT wants the int8 model).",
)
@force_option
@json_option
def pack(model, output, fmt, force, as_json):
    """Shrink a low-bit ONNX model (from `cunet export` of a checkpoint trained with --bits-w).

    \b
    cunetq: every int8 weight whose codes fit 1 bit ({-1,+1}), 2 bits ({-1,0,+1}) or 4 bits ([-8,7]) is stored
    bit-packed, the rest (graph, scales, BatchNorm, full-precision stem and head) as is. Before writing, the file is
    unpacked in memory and must give the ONNX model back byte for byte.
    int4: weights whose codes fit 4 bits become ONNX INT4 initializers; ONNX Runtime runs the result directly and it
    must agree with the int8 model on a random input.

    \b
    Examples:
      cunet pack face-w1.onnx -o face-w1.cunetq
      cunet unpack face-w1.cunetq -o face-w1.onnx           # identical to the original file
      cunet pack face-w4.onnx --format int4 -o face-w4.int4.onnx
    """
    from cunet.compile.packing import pack as run
    from cunet.compile.packing import write_int4
    from cunet.filetype import require

    require(model, "onnx", "pack")
    if fmt == "int4":
        r = write_int4(model, output)
        if as_json:
            emit_json({"format": "int4", **r})
            return
        print_table(
            f"INT4 model {output}",
            ["", "value"],
            [
                ("weights stored as INT4", r["converted"]),
                ("ONNX (MB) → INT4 ONNX (MB)", f"{_mb(r['onnx_bytes'])} → {_mb(r['int4_bytes'])}"),
                ("max |INT4 − int8| on a random input", f"{r['max_abs_diff']:.3g}"),
            ],
        )
        return
    report = run(model, output)
    if as_json:
        emit_json({"format": "cunetq", **report.to_dict()})
        return
    bits = ", ".join(f"{n} × {b}-bit" for b, n in sorted(report.tensors.items()))
    print_table(
        f"packed {output}",
        ["", "value"],
        [
            ("bit-packed weights", bits),
            ("ONNX (MB) → packed (MB)", f"{_mb(report.onnx_bytes)} → {_mb(report.packed_bytes)}"),
            ("smaller by", f"{report.ratio:.2f}×"),
            ("ONNX sha256", report.onnx_sha256[:16] + "…"),
        ],
    )


@click.command()
@click.argument("packed", type=click.Path(dir_okay=False))
@output_option("-o", "--output", required=True, help="The .onnx file to write.")
@force_option
@json_option
def unpack(packed, output, force, as_json):
    """Restore the ONNX model of a .cunetq file, identical byte for byte to the one `cunet pack` read.

    \b
    The restored bytes are checked against the sha256 recorded at packing; a damaged file is an error.
      cunet unpack face-w1.cunetq -o face-w1.onnx
    """
    from cunet.compile.packing import unpack as run

    report = run(packed, output)
    if as_json:
        emit_json(report.to_dict())
        return
    print_table(
        f"unpacked {output}",
        ["", "value"],
        [
            ("packed (MB) → ONNX (MB)", f"{_mb(report.packed_bytes)} → {_mb(report.onnx_bytes)}"),
            ("ONNX sha256 (verified)", report.onnx_sha256[:16] + "…"),
        ],
    )

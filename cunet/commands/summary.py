"""`cunet summary`: parameters, size and MACs of a named variant, of any (layers, order, landmarks), or of the network
inside a trained `.pt` checkpoint or an exported `.onnx` model (read from the config each file records)."""

from __future__ import annotations

import click

from cunet.commands._common import emit_json, json_option, print_table
from cunet.errors import require_torch

__all__ = ["summary"]


@click.command()
@click.argument("variant", required=False, metavar="[VARIANT | MODEL.pt | MODEL.onnx]")
@click.option("--layers", "--layer_num", "layers", type=int, help="Number of coupled U-Nets (original: --layer_num).")
@click.option("--order", type=int, help="Coupling order K (0 = stacked U-Nets).")
@click.option("--landmarks", type=int, help="Heatmaps predicted (68 faces, 16 MPII).")
@click.option("--loss-num", "--loss_num", "loss_num", type=int, help="Supervised heads (default: every U-Net).")
@click.option("--input-size", type=int, help="Square input side in pixels (multiple of 64).")
@click.option("--refine", is_flag=True, default=None, help="Iterative refinement: run the U-Nets twice, shared weights.")
@click.option("--bits-w", type=int, help="Low-bit weights: 1 (binary), 2 (ternary), 3-8; shows what is quantized.")
@click.option("--bits-a", type=int, help="Low-bit inputs of the quantized convs (2-8).")
@click.option("--bits-g", type=int, help="Low-bit weight gradients (2-16; training only).")
@json_option
def summary(variant, layers, order, landmarks, loss_num, input_size, refine, bits_w, bits_a, bits_g, as_json):
    """Parameters, FP32 size (MB = 10^6 bytes), GMACs and supervised U-Nets of a CU-Net.

    \b
    Pick a named variant, or describe one with the original repository's options:
      cunet summary cunet-face-8
      cunet summary --layers 8 --order 1 --landmarks 16        # 8,009,984 parameters
      cunet summary --layer_num 4 --order 2 --loss_num 2 --json
      cunet summary cunet-face-8 --bits-w 1 --bits-a 8      # which convs are low-bit, and the low-bit size
      cunet summary runs/face/best.pt                         # the network a training run wrote
      cunet summary face.int8.onnx                            # the network an exported model holds
    Options given with a variant override it.
    """
    import importlib.util
    from pathlib import Path

    if variant and variant.lower().endswith(".onnx") and importlib.util.find_spec("torch") is None:
        _onnx_without_torch(variant, as_json)  # deployment installs have no torch: say what the metadata records
        return
    require_torch("cunet summary of a variant or a .pt checkpoint")
    from cunet.model.config import VARIANTS, CUNetConfig, get_variant
    from cunet.model.summary import summarize

    overrides = {
        k: v
        for k, v in dict(
            layers=layers, order=order, num_landmarks=landmarks, loss_num=loss_num, input_size=input_size, refine=refine
        ).items()
        if v is not None
    }
    extra: list[tuple[str, object]] = []
    # A file by its suffix, or any existing file (an original `.pth.tar` is then told to run import-original, not
    # "unknown variant").
    if variant and (variant.lower().endswith((".pt", ".pth", ".onnx")) or Path(variant).is_file()):
        import dataclasses

        cfg, extra = _from_file(variant)
        cfg = dataclasses.replace(cfg, **overrides) if overrides else cfg
        name = variant
    elif variant:
        cfg = get_variant(variant, **overrides)
        name = variant
    else:
        if layers is None:
            raise click.UsageError(f"give a VARIANT ({', '.join(VARIANTS)}), a .pt or .onnx file, or at least "
                                   "--layers")
        defaults = {"order": 1, "num_landmarks": 68}
        cfg = CUNetConfig(**{**defaults, **overrides})
        name = f"CU-Net L={cfg.layers} K={cfg.order}"
    quant = None
    if bits_w is not None or bits_a is not None or bits_g is not None:
        from cunet.model.quant import QuantConfig

        quant = QuantConfig(bits_w=bits_w, bits_a=bits_a, bits_g=bits_g)
    s = summarize(cfg, quant)
    if as_json:
        emit_json({"name": name, **dict(extra), **s})
        return
    rows = extra + [
        ("parameters", s["params"]),
        ("FP32 size (MB)", round(s["size_mb"], 2)),
        ("GMACs / image", round(s["gmacs"], 3)),
        ("input → heatmaps", f"{cfg.input_size}² → {cfg.num_landmarks}×{s['heatmap_size']}²"),
        ("U-Nets × order", f"{cfg.layers} × {cfg.order}{' (refined twice)' if cfg.refine else ''}"),
        ("supervised U-Nets", ", ".join(map(str, s["supervised"]))),
    ]
    rows += [(f"  params: {k}", v) for k, v in s["breakdown"].items()]
    if "quant" in s:
        q = s["quant"]
        rows += [
            ("quantized convs", f"{q['quantized_convs']} of {q['convs']} ({quant.describe()})"),
            ("full precision", _full_precision(q["full_precision_convs"])),
            ("low-bit size (MB)", f"{q['size_mb']:.3f} ({s['size_mb'] / q['size_mb']:.1f}× smaller)"),
        ]
    print_table(name, ["", "value"], rows)


def _onnx_without_torch(path: str, as_json: bool) -> None:
    """`summary MODEL.onnx` on an install without torch: the network its metadata records, without counting MACs."""
    from pathlib import Path

    from cunet.errors import CunetError
    from cunet.filetype import require
    from cunet.runtime.meta import read_onnx_meta

    file = Path(path)
    if not file.is_file():
        raise CunetError(f"{file}: no such file")
    require(file, "onnx", "summary")
    meta = read_onnx_meta(file)
    cfg = meta.config
    doc = {"name": path, "task": meta.task, "precision": meta.precision, "recipe": meta.recipe,
           "file_mb": round(file.stat().st_size / 1e6, 3), "config": cfg}
    if as_json:
        emit_json(doc)
        return
    rows = [("task", meta.task), ("precision", meta.precision + (f" ({meta.recipe} recipe)" if meta.recipe else "")),
            ("file size (MB)", doc["file_mb"]),
            ("input → heatmaps", f"{meta.input_size}² → {meta.num_landmarks} heatmaps"),
            ("U-Nets × order", f"{cfg.get('layers')} × {cfg.get('order')}"),
            ("parameters, GMACs", "counted with PyTorch: pip install 'cunet[train]'")]
    print_table(path, ["", "value"], rows)


def _from_file(path: str):
    """The `CUNetConfig` a checkpoint or an exported ONNX model records, and rows describing the file."""
    from pathlib import Path

    from cunet.errors import CunetError
    from cunet.model.config import CUNetConfig

    file = Path(path)
    if not file.is_file():
        raise CunetError(f"{file}: no such file")
    if file.suffix.lower() == ".onnx":
        from cunet.filetype import require
        from cunet.runtime.meta import read_onnx_meta

        require(file, "onnx", "summary")
        meta = read_onnx_meta(file)
        rows = [("task", meta.task), ("precision", meta.precision + (f" ({meta.recipe} recipe)" if meta.recipe
                                                                      else "")),
                ("file size (MB)", f"{file.stat().st_size / 1e6:.2f}")]
        if meta.float_groups:
            rows.append(("kept in float", ", ".join(meta.float_groups)))
        return CUNetConfig.from_dict(meta.config), rows
    from cunet.filetype import require
    from cunet.model.checkpoint import load_checkpoint

    require(file, "checkpoint", "summary")
    ckpt = load_checkpoint(file)
    rows = [("task", ckpt["task"])] + [(k, ckpt[k]) for k in ("epoch", "best_metric") if ckpt.get(k) is not None]
    return CUNetConfig.from_dict(ckpt["config"]), rows


def _full_precision(names: list[str]) -> str:
    """"stem.0, heads.*.conv (8), every BatchNorm": one entry per head would widen the table past any terminal."""
    heads = [n for n in names if n.startswith("heads.") and n.endswith(".conv")]
    rest = [n for n in names if n not in heads]
    if len(heads) > 2:
        rest.append(f"heads.*.conv ({len(heads)})")
    else:
        rest += heads
    return ", ".join(rest + ["every BatchNorm"])

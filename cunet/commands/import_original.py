"""`cunet import-original`: a checkpoint of the original CU-Net code (Python 2.7 / PyTorch 0.1-0.4) as a cunet one.

The library function behind it is `cunet.model.original.import_original`: read the file, convert its keys, check
the converted model's weights against cunet's model of the inferred config, and write a normal cunet checkpoint that
records the original preprocessing, so `export`, `quantize`, `evaluate`, `bench` and `predict` use it with no flags.
"""

from __future__ import annotations

from pathlib import Path

import click

from cunet.commands._common import console, emit_json, force_option, json_option, output_option

__all__ = ["import_original_cmd"]


@click.command("import-original")
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@output_option("-o", "--out", "dst", path_type=Path, required=True, help="The cunet checkpoint (.pt) to write.")
@click.option("--task", type=click.Choice(["face", "pose"]),
              help="Default: from the landmark count (68: 300-W faces, 16: MPII joints).")
@click.option("--input-size", type=click.IntRange(min=64), default=256, show_default=True,
              help="Crop side the model runs at (a multiple of 64; the original trained at 256).")
@force_option
@json_option
def import_original_cmd(src, dst, task, input_size, force, as_json):
    """Convert a checkpoint of the original CU-Net code into a cunet checkpoint.

    \b
    SRC is a .pth.tar of github.com/zhiqiangdon/CU-Net: the {'state_dict', 'optimizer', 'train_history'} file
    its Checkpoint class writes, or a bare state dict; DataParallel 'module.' prefixes, Python 2.7 (legacy,
    pickle protocol 2) files and both key layouts (models/cu_net.py, models/cu_net_prev_version.py) are read.
    Only tensors, containers and numbers are unpickled (weights_only): a downloaded file runs no code.
    Layers, order, channels, growth, landmarks and heads come from the tensor shapes.
    \b
    The checkpoint records the original preprocessing (RGB 0..1, no mean/std, face crop = 1.1 x the detector
    box, and crop "original": the original's integer crop box, whole-image shrink for large boxes and per-crop
    min-max bytescale, pixel for pixel), and every later command uses it; `evaluate --decode original` also
    decodes as the original did, to reproduce its logged numbers:
      cunet import-original face-layer-num-8-order-1.pth.tar -o face8.pt
      cunet export face8.pt -o face8.onnx
      cunet evaluate face8.onnx --data 300W --boxes "300W/Bounding Boxes"
    """
    from cunet.errors import require_torch

    require_torch("cunet import-original")
    from cunet.model.original import import_original

    # overwrite=True: under the CLI the write policy decides (a file this option wrote may be replaced, anything
    # else needs --force, the input never); the library's own check is for Python callers without one.
    result = import_original(src, dst, task=task, input_size=input_size, overwrite=True)
    if as_json:
        emit_json(result)
        return
    cfg = result["config"]
    console().print(
        f"{result['source']} ({result['layout']} layout) → {result['out']}: {result['task']} CU-Net, "
        f"{cfg['layers']} U-Nets, order {cfg['order']}, {cfg['channels']} channels, growth {cfg['growth']}, "
        f"{cfg['num_landmarks']} landmarks, {result['parameters']:,} parameters"
    )

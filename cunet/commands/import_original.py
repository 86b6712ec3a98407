"""`cunet import-original`: a checkpoint of the original CU-Net code (Python 2.7 / PyTorch 0.1-0.4) as a cunet one.

`import_original` is the library function behind it: read the file (`cunet.model.original`), convert its keys,
check the converted model's weights against cunet's model of the inferred config, and write a normal cunet
checkpoint that records the original preprocessing, so `export`, `quantize`, `evaluate`, `bench` and `predict` use
it with no flags.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import click

from cunet.commands._common import console, emit_json, json_option

__all__ = ["import_original_cmd", "import_original"]


def import_original(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    task: str | None = None,
    input_size: int = 256,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert the original checkpoint `src` into the cunet checkpoint `dst`.

    Args:
        src: a `.pth.tar` of the original code (its `Checkpoint` dict or a bare state dict, any `module.` prefix,
            zip or legacy format).
        dst: the cunet `.pt` to write (atomically).
        task: "face" or "pose"; None infers it from the landmark count (68 faces, 16 MPII joints).
        input_size: the crop side the model runs at (the original's 256).
        overwrite: replace an existing `dst`.

    Returns:
        {"source", "sha256", "layout", "out", "task", "config", "heads", "parameters", "preprocess"}.

    Raises:
        CunetError: unreadable or foreign file, a key or shape that does not fit a CU-Net (named), `dst` exists.
    """
    from cunet.errors import CunetError
    from cunet.model import CUNet, count_parameters
    from cunet.model.original import ORIGINAL_PREPROCESS, convert_state_dict, read_original_file, unwrap_state_dict
    from cunet.train.checkpoint import save_checkpoint

    src, dst = Path(src), Path(dst)
    if dst.exists() and not overwrite:
        raise CunetError(f"{dst}: already exists; choose another name or pass --force to replace it")
    if dst.exists() and dst.resolve() == src.resolve():
        raise CunetError(f"{dst}: the output would replace the original checkpoint it is read from")
    converted = convert_state_dict(unwrap_state_dict(read_original_file(src), str(src)), task, str(src), input_size)
    model = CUNet(converted.config)
    model.load_state_dict(converted.state, strict=True)  # names and shapes were checked key by key above
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    original = {"file": src.name, "sha256": sha, "layout": converted.layout, "heads": list(converted.heads)}
    save_checkpoint(dst, model.eval(), converted.task, preprocess=dict(ORIGINAL_PREPROCESS), original=original)
    return {
        "source": str(src),
        "sha256": sha,
        "layout": converted.layout,
        "out": str(dst),
        "task": converted.task,
        "config": converted.config.to_dict(),
        "heads": list(converted.heads),
        "parameters": count_parameters(model),
        "preprocess": dict(ORIGINAL_PREPROCESS),
    }


@click.command("import-original")
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", "dst", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The cunet checkpoint (.pt) to write.")
@click.option("--task", type=click.Choice(["face", "pose"]),
              help="Default: from the landmark count (68: 300-W faces, 16: MPII joints).")
@click.option("--input-size", type=click.IntRange(min=64), default=256, show_default=True,
              help="Crop side the model runs at (a multiple of 64; the original trained at 256).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
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
    The checkpoint records the original preprocessing (RGB 0..1, no mean/std, each crop stretched to 0..1,
    face crop = 1.1 x the detector box), and every later command uses it:
      cunet import-original face-layer-num-8-order-1.pth.tar -o face8.pt
      cunet export face8.pt -o face8.onnx
      cunet evaluate face8.onnx --data 300W --boxes "300W/Bounding Boxes"
    """
    result = import_original(src, dst, task=task, input_size=input_size, overwrite=force)
    if as_json:
        emit_json(result)
        return
    cfg = result["config"]
    console().print(
        f"{result['source']} ({result['layout']} layout) → {result['out']}: {result['task']} CU-Net, "
        f"{cfg['layers']} U-Nets, order {cfg['order']}, {cfg['channels']} channels, growth {cfg['growth']}, "
        f"{cfg['num_landmarks']} landmarks, {result['parameters']:,} parameters"
    )

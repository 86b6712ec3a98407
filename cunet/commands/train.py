"""`cunet train`: train a CU-Net on a dataset folder, writing RUN/best.pt and RUN/last.pt (resumable)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cunet.commands._common import emit_json, json_option, output_option
from cunet.errors import require_torch

__all__ = ["train"]


def _milestones(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(int(v) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated epoch numbers such as 30,60,90, got {value!r}") from None
    if any(m < 1 for m in out):
        raise click.BadParameter(f"epoch numbers must be >= 1, got {value!r}")
    return out


@click.command()
@click.option("--task", type=click.Choice(["face", "pose"]), required=True,
              help="face: 68 points, validated by NME (%); pose: 16 MPII joints, validated by PCKh@0.5 (%).")
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="Dataset (300-W, train/ + test/, a flat folder of images + .pts or a COCO face .json; pose: "
                   "train.json + valid.json, or one MPII .json). Its train split trains.")
@click.option("--val-data", type=click.Path(path_type=Path),
              help="Validate on this dataset's test split instead of --data's (required when --data is one flat "
                   "folder, a COCO or an MPII .json, which have one split).")
@output_option("--out", folder=True, path_type=Path, default=Path("run"), show_default=True,
               help="Run folder: best.pt, last.pt, log.csv, history.json.")
@click.option("--variant", help="Model: cunet-tiny (default), cunet-face-8, cunet-pose-16, ... (see `cunet summary`).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from last.pt (after a crash, kill or budget).")
@click.option("--epochs", type=click.IntRange(min=1), help="Passes over the training split [recipe].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Images per step, summed over processes [recipe].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Initial learning rate [recipe].")
@click.option("--optimizer", type=click.Choice(["rmsprop", "adam"]), help="rmsprop (the paper's) or adam [recipe].")
@click.option("--milestones", callback=_milestones,
              help="Epochs after which the lr is multiplied by --gamma, e.g. 30,60,90 [recipe].")
@click.option("--gamma", type=click.FloatRange(0, 1, min_open=True), help="LR step factor [0.2, the original's].")
@click.option("--weight-decay", type=click.FloatRange(min=0), help="L2 penalty [0].")
@click.option("--sigma", type=click.FloatRange(min=0, min_open=True),
              help="Target Gaussian sigma in heatmap pixels [recipe: 1.5 at 32² for cunet-tiny, 2 at 64² others].")
@click.option("--layers", type=click.IntRange(min=1), help="Override the variant: number of coupled U-Nets.")
@click.option("--order", type=click.IntRange(min=0), help="Override the variant: coupling order (0: stacked U-Nets).")
@click.option("--input-size", type=click.IntRange(min=64), help="Override the variant: input side (multiple of 64).")
@click.option("--refine", is_flag=True, default=None,
              help="Override the variant: iterative refinement (ECCV), the U-Nets run twice with shared weights and "
                   "both passes are supervised (one extra adapter; the compute of twice the U-Nets).")
@click.option("--memory-efficient", is_flag=True, default=None,
              help="Recompute each U-Net in backward: cunet-face-8 measured 81 % less peak memory at 1.5x the step "
                   "time at batch 8, 80 % less at 1.2x at batch 24 (2-core CPU; bench/train_memory.py).")
@click.option("--bits-w", type=click.IntRange(min=1), help="Low-bit training: weight bits (1 binary, 2 ternary, 3-8).")
@click.option("--bits-a", type=click.IntRange(min=1), help="Low-bit training: bits of conv inputs (2-8).")
@click.option("--bits-g", type=click.IntRange(min=1), help="Low-bit training: bits of weight gradients (2-16).")
@click.option("--quant-delay", type=click.IntRange(min=0), metavar="EPOCHS",
              help="Low-bit training: train this many epochs in full precision first, then quantized (same total "
                   "--epochs; input ranges calibrate meanwhile). Half the epochs measured 9 % lower NME for 1-bit "
                   "weights [0].")
@click.option("--conv-lr-scale", type=click.FloatRange(min=0, min_open=True), metavar="X",
              help="Train the inner convs' weights (all but the stem's and the heads') at X times --lr; a binary "
                   "weight changes only when its latent value crosses zero [10 for --bits-w 1 or 2 and for cunet-tiny, "
                   "else 1].")
@click.option("--init", "init", type=click.Path(path_type=Path), metavar="CKPT",
              help="Start from this checkpoint's weights (same task and model; e.g. a trained FP32 run that a "
                   "low-bit run fine-tunes) instead of a random init.")
@click.option("--teacher", type=click.Path(path_type=Path), metavar="CKPT",
              help="Distil: also train every head toward this checkpoint's heatmaps of the same batch (any "
                   "variant with the same task and heatmap size).")
@click.option("--distill-weight", type=click.FloatRange(0, 1, min_open=True), metavar="W",
              help="With --teacher: loss = (1-W) x MSE(target) + W x MSE(teacher) [0.5].")
@click.option("--bn-reestimate", is_flag=True, default=None,
              help="After every (quantized) epoch, recompute the BatchNorm statistics over the epoch's batches "
                   "again, weights frozen (one more forward pass per epoch).")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Stop cleanly after the epoch that crosses this wall-clock budget.")
@click.option("--seed", type=int, help="Seeds init, batch order and augmentation [0].")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="DataLoader processes (0 and 1 measured the same on 2 CPU cores; use 4-8 with a GPU).")
@click.option("--threads", type=click.IntRange(min=1), help="torch CPU threads [torch's default].")
@click.option("--device", help="cpu, cuda, cuda:1 [cuda when available].")
@click.option("--strict", is_flag=True,
              help="Stop at the first file of the data that cannot be used (default: leave it out, say so, train on "
                   "the rest, exit 1 at the end).")
@json_option
def train(task, data, val_data, out, variant, resume, epochs, batch_size, lr, optimizer, milestones, gamma,
          weight_decay, sigma, layers, order, input_size, refine, memory_efficient, bits_w, bits_a, bits_g, quant_delay,
          conv_lr_scale, init, teacher, distill_weight, bn_reestimate, max_minutes, seed, workers, threads, device,
          strict, as_json) -> None:
    """Train a CU-Net landmark localizer; writes OUT/best.pt (best validation) and OUT/last.pt (every epoch).

    \b
    Each epoch trains on the data's train split with the original CU-Net's
    augmentation (scale, rotation, flip, colour), a masked heatmap MSE over every
    supervised head (unannotated points do not train towards zero), then
    validates on the test split: faces by inter-ocular NME, pose by PCKh@0.5,
    both in percent, in original-image coordinates. Options in [brackets] come
    from the variant's recipe (cunet-tiny: tuned for minutes on a laptop CPU;
    the paper's models: RMSprop lr 2.5e-4, batch 24, lr x0.2 at 30/60/90%).

    \b
    Examples:
      cunet data synth --task face --out data/faces
      cunet train --task face --data data/faces --out runs/tiny
      cunet train --task face --data ~/300W --variant cunet-face-8 --out runs/face8
      cunet train --task face --data ~/300W --out runs/face8 --resume     # after a kill
      cunet train --task face --data ~/300W/afw --val-data ~/300W/ibug --out runs/afw  # flat folders
      torchrun --nproc_per_node 2 -m cunet train --task pose --data ~/mpii --variant cunet-pose-16
      cunet train --task face --data data/faces --bits-w 1 --bits-a 8 --quant-delay 5 --out runs/binary
      cunet train --task face --data data/faces --bits-w 1 --bits-a 8 --bits-g 8 \
          --init runs/tiny/last.pt --out runs/binary       # the low-bit recipe: fine-tune the FP32 run

    \b
    Low-bit (ECCV paper): --bits-w 1|2|4|8 quantizes every conv's weights but the
    stem's and the heatmap heads', --bits-a their inputs, --bits-g their weight
    gradients. 1- and 2-bit latent weights train at 10x the lr (--conv-lr-scale)
    so that their signs can still change in a short run. Export with `cunet
    export`, shrink with `cunet pack`. Starting from a trained FP32 run
    (--init) is what keeps 1- and 2-bit accuracy (docs/lowbit.md); --teacher
    (heatmap distillation) and --bn-reestimate are there and were measured.

    \b
    Resuming: --resume continues from OUT/last.pt and ends with the same weights as
    an uninterrupted run. Options that define the run (model, sigma, optimizer,
    lr, batch size, schedule, seed, low-bit widths, --init/--teacher files by
    sha256) come from the run; giving different ones is an error. --epochs and
    --max-minutes may grow.

    \b
    Bad files: the data is checked before the first epoch (every image decoded
    once); a file that cannot be used (a truncated image, a .pts of 19 points, an
    image without annotation) is one `skipped FILE: why` line, the start line
    counts what is used, training goes on without it and the exit status is 1
    at the end. --strict stops at the first instead.

    \b
    Output: one line per epoch on stderr (loss, metric, lr, time); with --json
    one object on stdout: {"best", "last", "metric_name", "best_metric", "epoch",
    "seconds", "history": [{"epoch", "train_loss", <metric>, "lr", "seconds", ...}],
    "skipped": [{"file", "problem"}], "train_samples"}.
    """
    if memory_efficient and "torch" not in sys.modules:
        # Memory-efficient training hands its free pages back before each recomputed U-Net and faults them in again;
        # PyTorch's huge pages for CPU tensors of 2 MB and more (read at torch's first allocation) make that cheaper:
        # cunet-face-8, batch 8, 2 cores: 1.46x instead of 1.83x the plain step's time, 1280 instead of 1386 MB.
        # Not for plain training: there they cost 1.42x the time and 13 % more memory (measured side by side).
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    require_torch("cunet train")
    from cunet.batch import finish
    from cunet.train.trainer import TrainOptions
    from cunet.train.trainer import train as run_training

    overrides = {k: v for k, v in dict(layers=layers, order=order, input_size=input_size, refine=refine,
                                       memory_efficient=memory_efficient).items() if v is not None}
    opts = TrainOptions(task=task, data=data, val_data=val_data, out=out, variant=variant, epochs=epochs,
                        batch_size=batch_size, lr=lr, optimizer=optimizer, resume=resume, seed=seed, workers=workers,
                        sigma=sigma,
                        overrides=overrides, bits_w=bits_w, bits_a=bits_a, bits_g=bits_g, quant_delay=quant_delay,
                        conv_lr_scale=conv_lr_scale, init=init, teacher=teacher, distill_weight=distill_weight,
                        bn_reestimate=bn_reestimate,
                        max_minutes=max_minutes,
                        device=device, progress=True, milestones=milestones, gamma=gamma, weight_decay=weight_decay,
                        threads=threads, strict=strict)
    result = run_training(opts)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return
    if as_json:
        emit_json(result.to_dict())
    finish(result.skipped, result.train_samples, "training sample(s) used")

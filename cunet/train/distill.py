"""Heatmap distillation: a student CU-Net also learns the heatmaps of a trained teacher (`cunet train --teacher`;
the loss is `cunet.train.loss.distill_loss`).

The teacher (any cunet checkpoint of the same task whose heatmaps have the student's size, typically the FP32
run a low-bit student fine-tunes from) sees the same augmented batch in eval mode, and every supervised head of
the student is pulled toward the teacher's last-head heatmaps as well as toward the Gaussian targets
(Zhang et al., "Fast Human Pose Estimation", CVPR 2019: the same MSE, a mixing weight):

    loss = (1 - w) * MSE(student, target) + w * MSE(student, teacher)

both masked as `cunet.train.loss.heatmap_loss` masks (an unannotated point teaches nothing). The teacher's maps
are what a trained network of the student's kind can produce on this exact (augmented) crop, which a low-bit
student can follow more closely than the ideal Gaussians; what it bought is measured in bench/lowbit.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from cunet.errors import CunetError

__all__ = ["load_teacher"]


def load_teacher(path: str | os.PathLike, task: str, input_size: int, heatmap_size: int,
                 device: torch.device) -> nn.Module:
    """The teacher network of a cunet checkpoint, frozen, in eval mode, on `device`.

    Raises:
        CunetError: unreadable checkpoint, another task, or heatmaps of another size.
    """
    from cunet.model.checkpoint import model_from_checkpoint

    model, ckpt = model_from_checkpoint(path)
    where = Path(path)
    if ckpt["task"] != task:
        raise CunetError(f"{where}: the teacher predicts task {ckpt['task']!r}, the run trains {task!r}")
    cfg = model.cfg
    if cfg.input_size != input_size or cfg.input_size // cfg.heatmap_stride != heatmap_size:
        raise CunetError(f"{where}: the teacher takes {cfg.input_size}² inputs and makes "
                         f"{cfg.input_size // cfg.heatmap_stride}² heatmaps; the run's model takes {input_size}² "
                         f"and makes {heatmap_size}²")
    return model.to(device).eval().requires_grad_(False)

"""BatchNorm re-estimation: recompute every BatchNorm's running statistics for the weights a model ends with.

During training the running statistics are a moving average over batches whose weights kept changing — a binary
or ternary weight flips sign until the last step, and each flip moves the statistics of every layer after it.
`reestimate_bn` replaces them by the average over one pass with the weights frozen (as
`torch.optim.swa_utils.update_bn` does for averaged weights). `cunet train --bn-reestimate` passes the epoch's own
augmented training crops: measured on cunet-tiny (300 synthetic faces, 10 epochs, seed 0, last.pt, NME of the ONNX
model, bench/results/lowbit_parts.json), that pass took FP32 from 3.62 to 3.41 % and 1-bit weights from 4.64 to
4.60 %, while a pass over un-augmented training crops made both worse (3.77 and 4.83 %, PyTorch NME): the layers
after each BatchNorm were trained on the statistics of augmented batches. Nothing else changes: weights, calibrated
input ranges (`QuantConv2d.act_max`, whose convs stay in eval mode) and each BatchNorm's `num_batches_tracked` and
`momentum` are as they were.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

__all__ = ["reestimate_bn"]


@torch.no_grad()
def reestimate_bn(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device | str = "cpu") -> int:
    """Replace the running mean/var of every BatchNorm of `model` by their average over `batches`.

    Args:
        model: any module; its train/eval mode is restored afterwards.
        batches: network inputs [N, C, H, W] (e.g. one epoch of augmented training crops).
        device: where the batches go.

    Returns:
        The number of batches averaged (0 leaves the statistics untouched, as does an exception mid-pass).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    was_training = {m: m.training for m in model.modules()}
    saved = [(m.momentum, m.num_batches_tracked.clone(), m.running_mean.clone(), m.running_var.clone())
             for m in norms]
    model.eval()  # everything else infers (quantized convs keep their input ranges) ...
    for m in norms:  # ... while the BatchNorms normalise by batch statistics and average them (momentum None)
        m.reset_running_stats()
        m.momentum = None
        m.train()
    n, complete = 0, False
    try:
        for x in batches:
            model(x.to(device, non_blocking=True))
            n += 1
        complete = n > 0
    finally:
        for m, (momentum, tracked, mean, var) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
            if not complete:  # an empty or interrupted pass keeps the statistics the model had
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
        for m, training in was_training.items():
            m.train(training)
    return n

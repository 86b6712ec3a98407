"""Model summary: parameters, FP32 size and multiply-accumulates of a config, without allocating its weights.

MACs are counted by running the model once on the `meta` device (shapes only) with hooks on every convolution,
so even `cunet-pose-16` summarises instantly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cunet.model.config import CUNetConfig
from cunet.model.cunet import CUNet

__all__ = ["summarize"]


def _count_macs(model: nn.Module, cfg: CUNetConfig) -> int:
    macs = 0

    def hook(m: nn.Conv2d, inputs: Any, out: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = m.kernel_size
        macs += out.numel() * (m.in_channels // m.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.empty(1, cfg.in_chans, cfg.input_size, cfg.input_size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return macs


def summarize(cfg: CUNetConfig) -> dict[str, Any]:
    """Parameters, FP32 size (MB = 1e6 bytes), GMACs per image at the config's input size, supervised U-Nets.

    Returns:
        {"params", "size_mb", "gmacs", "supervised" (0-based U-Net indices), "heatmap_size", "config", "breakdown"}
        where "breakdown" counts parameters of the stem, U-Nets, bridges and heads.
    """
    with torch.device("meta"):
        model = CUNet(cfg)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    groups = {"stem": model.stem, "unets": model.unets, "bridges": model.bridges, "heads": model.heads}
    if model.refine_bridge is not None:
        groups["refine_bridge"] = model.refine_bridge
    breakdown = {name: sum(p.numel() for p in m.parameters()) for name, m in groups.items()}
    return {
        "params": params,
        "size_mb": params * 4 / 1e6,
        "gmacs": _count_macs(model, cfg) / 1e9,
        "supervised": list(cfg.supervised),
        "heatmap_size": cfg.heatmap_size,
        "config": cfg.to_dict(),
        "breakdown": breakdown,
    }

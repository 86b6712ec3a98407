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


def _quant_summary(model: CUNet, quant: Any) -> dict[str, Any]:
    # Which convs are low-bit and what the weights then weigh: codes at bits_w per weight plus one float32 scale per
    # output channel; every other parameter (stem, heads, BatchNorm) stays float32. Counted over the training model:
    # an export drops the intermediate heads.
    from cunet.model.quant import apply_quantization, quantized_layers

    apply_quantization(model, quant)
    layers = quantized_layers(model)
    low = [lay for lay in layers if lay["bits_w"] is not None]
    low_params = sum(lay["params"] for lay in low)
    scales = sum(m.out_channels for name, m in model.named_modules() if name in {lay["name"] for lay in low})
    total = sum(p.numel() for p in model.parameters())
    bytes_ = low_params * (quant.bits_w or 32) / 8 + (scales * 4 if low else 0) + (total - low_params) * 4
    return {
        "config": quant.to_dict(),
        "quantized_convs": sum(1 for lay in layers if lay["bits_w"] is not None or lay["bits_a"] is not None),
        "convs": len(layers),
        "quantized_params": low_params,
        "full_precision_convs": [lay["name"] for lay in layers if lay["bits_w"] is None and lay["bits_a"] is None],
        "size_mb": bytes_ / 1e6,
        "layers": layers,
    }


def summarize(cfg: CUNetConfig, quant: Any = None) -> dict[str, Any]:
    """Parameters, FP32 size (MB = 1e6 bytes), GMACs per image at the config's input size, supervised U-Nets.

    Args:
        cfg: the model.
        quant: a `cunet.model.quant.QuantConfig` to also report which convs it quantizes and the low-bit size.

    Returns:
        {"params", "size_mb", "gmacs", "supervised" (0-based U-Net indices), "heatmap_size", "config", "breakdown"}
        where "breakdown" counts parameters of the stem, U-Nets, bridges and heads; with `quant` also "quant":
        {"config", "quantized_convs", "convs", "quantized_params", "full_precision_convs", "size_mb" (low-bit weights
        as bits_w-bit codes + a float32 scale per output channel, the rest float32), "layers" (every conv: "name",
        "params", "bits_w", "bits_a"; None = full precision)}.
    """
    with torch.device("meta"):
        model = CUNet(cfg)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    groups = {"stem": model.stem, "unets": model.unets, "bridges": model.bridges, "heads": model.heads}
    if model.refine_bridge is not None:
        groups["refine_bridge"] = model.refine_bridge
    breakdown = {name: sum(p.numel() for p in m.parameters()) for name, m in groups.items()}
    macs = _count_macs(model, cfg)
    extra = {"quant": _quant_summary(model, quant)} if quant is not None and quant.enabled else {}
    return {
        "params": params,
        "size_mb": params * 4 / 1e6,
        "gmacs": macs / 1e9,
        "supervised": list(cfg.supervised),
        "heatmap_size": cfg.heatmap_size,
        "config": cfg.to_dict(),
        "breakdown": breakdown,
        **extra,
    }

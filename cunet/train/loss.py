"""Training losses: the masked heatmap MSE of every supervised head, and its distillation form."""

from __future__ import annotations

import torch

__all__ = ["heatmap_loss", "distill_loss"]


def heatmap_loss(outputs: list[torch.Tensor], target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked MSE over every supervised head, averaged over heads.

    A landmark with mask 0 (unannotated, or outside the crop) contributes nothing, instead of being trained towards
    an all-zero map as in the original code. Each head's loss is the mean squared error over the pixels of the
    masked-in maps only, so the loss scale does not depend on how many points a batch happens to miss.

    Args:
        outputs: per supervised head, [N, K, H, W] predicted heatmaps.
        target: [N, K, H, W] Gaussian targets.
        mask: [N, K], 1 where the landmark counts.

    Returns:
        A scalar tensor (0 when the mask is all zero).
    """
    m = mask.to(target.dtype)[..., None, None]
    pixels = (m.sum() * target.shape[-2] * target.shape[-1]).clamp_min(1.0)
    per_head = [(((o.float() - target) ** 2) * m).sum() / pixels for o in outputs]
    return torch.stack(per_head).mean()


def distill_loss(outputs: list[torch.Tensor], target: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
                 weight: float) -> torch.Tensor:
    """(1 - weight) * heatmap_loss(outputs, target) + weight * heatmap_loss(outputs, teacher).

    Args:
        outputs: per supervised head, [N, K, H, W] student heatmaps.
        target: [N, K, H, W] Gaussian targets.
        teacher: [N, K, H, W] the teacher's heatmaps of the same inputs (no gradient flows into them).
        mask: [N, K], 1 where the landmark counts.
        weight: the teacher's share, in (0, 1].

    Returns:
        A scalar tensor.
    """
    teacher = teacher.detach().to(target.dtype)
    if weight >= 1.0:
        return heatmap_loss(outputs, teacher, mask)
    return (1.0 - weight) * heatmap_loss(outputs, target, mask) + weight * heatmap_loss(outputs, teacher, mask)

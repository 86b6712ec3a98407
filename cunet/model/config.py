"""`CUNetConfig`, the frozen description of a CU-Net, and `VARIANTS`, the named configs users pick by name.

Torch-free on purpose: summaries, ONNX metadata and checkpoint headers read configs without importing torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from cunet.errors import CunetError

__all__ = ["CUNetConfig", "VARIANTS", "get_variant", "supervised_unets"]

#: stem: conv7x7/2 then maxpool/2; the U-Nets then pool four times, so the input must divide by 4 * 16.
INPUT_DIVISOR = 64
HEATMAP_STRIDE = 4


def supervised_unets(layers: int, loss_num: int) -> tuple[int, ...]:
    """The 0-based indices of the U-Nets whose heads are supervised: evenly spaced, the last always included.

    Matches the original code's anchors `round(layers / loss_num * (i + 1))` (1-based, rounding half up).
    """
    every = layers / loss_num
    anchors = [math.floor(every * (i + 1) + 0.5) - 1 for i in range(loss_num)]
    return tuple(anchors)


@dataclass(frozen=True)
class CUNetConfig:
    """A CU-Net: `layers` coupled U-Nets with order-`order` coupling, predicting `num_landmarks` heatmaps.

    Attributes:
        layers: number of U-Nets (the original's `layer_num`).
        order: coupling order K; 0 = plain stacked U-Nets. Must be smaller than `layers`.
        num_landmarks: heatmaps predicted (68 for 300-W faces, 16 for MPII).
        loss_num: supervised heads, evenly spaced, the last U-Net always one of them (None: every U-Net).
        channels: feature channels C between blocks (paper: 128).
        growth: new channels g of each dense layer (paper: 32).
        bottleneck: the 1x1 bottleneck is `bottleneck * growth` wide (paper: 4).
        in_chans: image channels.
        input_size: square input side in pixels; heatmaps are input_size / 4.
        memory_efficient: training keeps only each U-Net's inputs and its 3x3 convs' outputs and recomputes the
            rest of the U-Net in backward (`cunet.model.recompute`); results and BatchNorm statistics are unchanged.
        refine: iterative refinement (ECCV): run the U-Nets a second time with shared weights.
    """

    layers: int = 8
    order: int = 1
    num_landmarks: int = 68
    loss_num: int | None = None
    channels: int = 128
    growth: int = 32
    bottleneck: int = 4
    in_chans: int = 3
    input_size: int = 256
    memory_efficient: bool = False
    refine: bool = False

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise CunetError(f"invalid CU-Net config: {msg}")

        for name in ("layers", "num_landmarks", "channels", "growth", "bottleneck", "in_chans", "input_size"):
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"{name} must be a positive integer, got {v!r}")
        need(isinstance(self.order, int) and self.order >= 0, f"order must be a non-negative integer, got {self.order!r}")
        need(
            self.order < self.layers,
            f"order {self.order} needs more than {self.order} U-Nets (layers={self.layers}); "
            f"the largest order for {self.layers} U-Net(s) is {self.layers - 1}",
        )
        need(
            self.loss_num is None or (isinstance(self.loss_num, int) and 1 <= self.loss_num <= self.layers),
            f"loss_num must be between 1 and layers={self.layers}, got {self.loss_num!r}",
        )
        need(
            self.input_size % INPUT_DIVISOR == 0,
            f"input_size must be a multiple of {INPUT_DIVISOR} (stem /4, then four 2x poolings), got {self.input_size}",
        )
        need(self.channels % 2 == 0, f"channels must be even, got {self.channels}")

    @property
    def supervised(self) -> tuple[int, ...]:
        """0-based indices of the supervised U-Nets (one head each)."""
        return supervised_unets(self.layers, self.num_losses)

    @property
    def num_losses(self) -> int:
        """Number of supervised heads (`loss_num`, or every U-Net when it is None)."""
        return self.layers if self.loss_num is None else self.loss_num

    @property
    def heatmap_size(self) -> int:
        return self.input_size // HEATMAP_STRIDE

    @property
    def heatmap_stride(self) -> int:
        return HEATMAP_STRIDE

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CUNetConfig":
        """Build a config from `to_dict()` output; unknown keys are a clear error (a checkpoint from another version)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CunetError(f"unknown CU-Net config keys {unknown} (written by a newer cunet?)")
        return cls(**d)


VARIANTS: dict[str, CUNetConfig] = {
    # The paper's face model: 8 U-Nets, order 1, 300-W's 68 points (8.06 M parameters).
    "cunet-face-8": CUNetConfig(layers=8, order=1, num_landmarks=68),
    # The paper's MPII model: 16 U-Nets, order 1, 16 joints.
    "cunet-pose-16": CUNetConfig(layers=16, order=1, num_landmarks=16),
    # Small enough to train on 2 CPU cores in minutes: 2 U-Nets of 64 channels at 128x128 input.
    "cunet-tiny": CUNetConfig(layers=2, order=1, num_landmarks=68, channels=64, growth=16, input_size=128),
    "cunet-tiny-pose": CUNetConfig(layers=2, order=1, num_landmarks=16, channels=64, growth=16, input_size=128),
}


def get_variant(name: str, **overrides: Any) -> CUNetConfig:
    """The named variant, with `overrides` applied through `dataclasses.replace`."""
    try:
        cfg = VARIANTS[name]
    except KeyError:
        raise CunetError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}") from None
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    return cfg

"""CU-Net: coupled, densely connected U-Nets (Tang et al., BMVC 2018; ECCV 2018).

Reads in a fixed order: the pre-activation building blocks, one U-Net, the coupled model, the builder.

The wiring reproduces the original code's parameter counts exactly (see `tests/model/test_cunet.py`):
- every U-Net has nine semantic blocks (down at 1, 1/2, 1/4, 1/8 of the 64x64 feature map, a bottom block,
  up at 1/8 ... 1); each block is one dense layer (BN-ReLU-conv1x1 to 4g, BN-ReLU-conv3x3 to g) followed by
  adapters (BN-ReLU-conv1x1) that make the block's output and, on the way down, its skip;
- order-K coupling: block b of U-Net i also reads the g new channels that block b of U-Nets i-K .. i-1 made;
- between U-Nets, an adapter reads the previous U-Net's output and the inputs of the last K U-Nets.

Nothing is remembered on a module between calls (the original kept FIFO lists on its modules): all coupling state
lives in `forward`'s local variables, so the model exports to ONNX and runs concurrently.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cunet.model.config import CUNetConfig
from cunet.model.recompute import BatchNorm2d, checkpointed

__all__ = ["CUNet", "DenseLayer", "Adapter", "UNet", "build_model", "count_parameters"]

NUM_DOWN = 4  # down blocks at 64, 32, 16, 8 (for a 256 input); the bottom block runs at 4


# --------------------------------------------------------------------------------------------- building blocks


class _PreActConv1x1(nn.Module):
    """BN → ReLU → conv1x1 over the concatenation of its inputs."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.norm = BatchNorm2d(in_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        x = xs[0] if len(xs) == 1 else torch.cat(xs, 1)
        return self.conv(F.relu(self.norm(x)))


class Adapter(_PreActConv1x1):
    """BN-ReLU-conv1x1 that maps a concatenation of features to a fixed width (block outputs, skips, bridges)."""


class DenseLayer(nn.Module):
    """One dense layer: BN-ReLU-conv1x1 (to bottleneck * growth) → BN-ReLU-conv3x3 (to growth)."""

    def __init__(self, in_ch: int, growth: int, bottleneck: int) -> None:
        super().__init__()
        width = bottleneck * growth
        self.reduce = _PreActConv1x1(in_ch, width)
        self.norm = BatchNorm2d(width)
        self.conv = nn.Conv2d(width, growth, kernel_size=3, padding=1, bias=False)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(self.norm(self.reduce(*xs))))


class _Block(nn.Module):
    """A semantic block of one U-Net: a dense layer and the adapters reading [input, coupled, new]."""

    def __init__(self, in_ch: int, out_ch: int, n_coupled: int, cfg: CUNetConfig, skip: bool) -> None:
        super().__init__()
        g = cfg.growth
        self.dense = DenseLayer(in_ch + n_coupled * g, g, cfg.bottleneck)
        adapter_in = in_ch + (n_coupled + 1) * g
        self.ahead = Adapter(adapter_in, out_ch)
        self.skip = Adapter(adapter_in, out_ch) if skip else None

    def forward(
        self, inputs: list[torch.Tensor], coupled: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Returns (ahead, skip or None, new growth features)."""
        new = self.dense(*inputs, *coupled)
        feats = (*inputs, *coupled, new)
        return self.ahead(*feats), (self.skip(*feats) if self.skip is not None else None), new


class UNet(nn.Module):
    """One U-Net of the stack. `n_coupled` is how many earlier U-Nets couple into it (min(index, order))."""

    def __init__(self, cfg: CUNetConfig, n_coupled: int) -> None:
        super().__init__()
        c = cfg.channels
        self.down = nn.ModuleList(_Block(c, c, n_coupled, cfg, skip=True) for _ in range(NUM_DOWN))
        self.bottom = _Block(c, c, n_coupled, cfg, skip=False)
        # Up blocks read [upsampled, skip]: 2C in, C out.
        self.up = nn.ModuleList(_Block(2 * c, c, n_coupled, cfg, skip=False) for _ in range(NUM_DOWN))

    def forward(self, x: torch.Tensor, coupled: list[list[torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the U-Net.

        Args:
            x: [N, C, H, W] input features.
            coupled: per block (down 0..3, bottom, up 3..0 in execution order), the new features of the same block in
                the coupled earlier U-Nets, oldest first.

        Returns:
            ([N, C, H, W] output, the new growth features of each block in execution order).
        """
        new_feats: list[torch.Tensor] = []
        skips: list[torch.Tensor] = []
        b = 0
        for block in self.down:
            x, skip, new = block([x], coupled[b])
            skips.append(skip)
            new_feats.append(new)
            x = F.max_pool2d(x, 2)
            b += 1
        x, _, new = self.bottom([x], coupled[b])
        new_feats.append(new)
        b += 1
        for block, skip in zip(reversed(self.up), reversed(skips)):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x, _, new = block([x, skip], coupled[b])
            new_feats.append(new)
            b += 1
        return x, new_feats


# --------------------------------------------------------------------------------------------------- the model


def _saved_in_segments(op: torch._ops.OpOverload, args: tuple) -> bool:
    """Memory-efficient training keeps the 3x3 convs' outputs: a third of a U-Net's multiply-adds for g channels each,
    the new features the segment returns anyway (the next U-Nets read them), so recomputation skips them."""
    return op is torch.ops.aten.convolution.default and args[1].shape[-2:] == (3, 3)


class CUNet(nn.Module):
    """Coupled U-Nets for landmark localisation.

    Input `[N, in_chans, S, S]` normalised images; eval mode returns the last head's heatmaps `[N, J, S/4, S/4]`,
    train mode a list of every supervised head's heatmaps in order (twice as many with `refine`: both passes).
    """

    def __init__(self, cfg: CUNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, k, n = cfg.channels, cfg.order, cfg.layers
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_chans, c, kernel_size=7, stride=2, padding=3, bias=False),
            BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.unets = nn.ModuleList(UNet(cfg, min(i, k)) for i in range(n))
        # bridges[i - 1] makes the input of U-Net i from [out_{i-1}, input_{max(0, i-K)} .. input_{i-1}].
        self.bridges = nn.ModuleList(Adapter(c * (1 + min(i, k)), c) for i in range(1, n))
        # Refinement starts the second pass exactly as a U-Net number `n` would start: one extra bridge.
        self.refine_bridge = Adapter(c * (1 + min(n, k)), c) if cfg.refine else None
        self.heads = nn.ModuleDict({str(i): Adapter(c, cfg.num_landmarks) for i in cfg.supervised})
        self.init_weights()

    def init_weights(self) -> None:
        """He-normal convolutions (fan-out, as for ReLU networks), unit BN scale, zero BN shift."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Heads start small so initial heatmaps are near zero, like the targets almost everywhere.
        for head in self.heads.values():
            nn.init.normal_(head.conv.weight, std=1e-3)

    def edge_convs(self) -> set[str]:
        """Module names of the first and last layers: the stem's conv and every heatmap head's conv.

        Low-bit models keep them in full precision (`cunet.model.quant`), and `cunet train --conv-lr-scale` leaves
        their lr alone; every other conv is an "inner" conv.
        """
        return {"stem.0", *(f"heads.{i}.conv" for i in self.heads)}

    def _segment(
        self, i: int, bridge: Adapter | None, stem: bool, x: torch.Tensor, earlier: list[torch.Tensor],
        coupled: list[list[torch.Tensor]],
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """U-Net `i` with what only it reads: the stem before the first, its head, the bridge to the next U-Net.

        Args:
            i: U-Net index.
            bridge: the adapter that makes the next U-Net's input (None after the last U-Net of the last pass).
            stem: `x` is the image batch [N, in_chans, S, S], run the stem first.
            x: [N, C, S/4, S/4] this U-Net's input (or images, see `stem`).
            earlier: the inputs of the U-Nets before this one that `bridge` also reads, oldest first.
            coupled: per block, the coupled U-Nets' new features (see `UNet.forward`).

        Returns:
            (this U-Net's input, the next U-Net's input or this U-Net's output when `bridge` is None, this U-Net's
            new block features, its head's heatmaps [N, J, S/4, S/4] or None when it has no head).
        """
        if stem:
            x = self.stem(x)
        out, new = self.unets[i](x, coupled)
        head = self.heads[str(i)](out) if str(i) in self.heads else None
        if bridge is None:
            return x, out, new, head
        # The bridge reads [output, inputs of the last K U-Nets]: this one's and `earlier`, none for K = 0.
        return x, bridge(out, *((*earlier, x) if self.cfg.order else ())), new, head

    def _pass(self, x: torch.Tensor, first: bool, outputs: list[torch.Tensor]) -> torch.Tensor:
        """One pass over the U-Nets from `x` (images on the first pass); appends head outputs to `outputs`.

        Returns the refinement bridge's output after the first pass of a refining model, else the last U-Net's
        output.
        """
        k, n = self.cfg.order, self.cfg.layers
        # Memory-efficient training keeps only each segment's arguments; everything inside one is recomputed.
        recompute = self.cfg.memory_efficient and self.training and torch.is_grad_enabled()
        inputs: list[torch.Tensor] = []  # inputs of the U-Nets of this pass, for the bridges
        history: list[list[torch.Tensor]] = []  # new block features of each U-Net of this pass
        for i in range(n):
            bridge = self.bridges[i] if i + 1 < n else (self.refine_bridge if first else None)
            earlier = inputs[max(0, i + 1 - k) :]
            coupled = [[h[b] for h in history[max(0, i - k) :]] for b in range(2 * NUM_DOWN + 1)] if k else [[]] * (
                2 * NUM_DOWN + 1)
            args = (i, bridge, first and i == 0, x, earlier, coupled)
            x_in, x, new, head = (checkpointed(self._segment, *args, save=_saved_in_segments) if recompute
                                  else self._segment(*args))
            inputs.append(x_in)
            history.append(new)
            if head is not None:
                outputs.append(head)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        outputs: list[torch.Tensor] = []
        x = self._pass(images, True, outputs)
        if self.refine_bridge is not None:
            self._pass(x, False, outputs)
        return outputs if self.training else outputs[-1]


# ------------------------------------------------------------------------------------------------------ builder


def build_model(cfg: CUNetConfig) -> CUNet:
    """A freshly initialised CU-Net for `cfg`."""
    return CUNet(cfg)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers and not counted, as in the papers)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

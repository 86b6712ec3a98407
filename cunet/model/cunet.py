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
from torch.utils.checkpoint import checkpoint

from cunet.model.config import CUNetConfig

__all__ = ["CUNet", "DenseLayer", "Adapter", "UNet", "build_model", "count_parameters"]

NUM_DOWN = 4  # down blocks at 64, 32, 16, 8 (for a 256 input); the bottom block runs at 4


# --------------------------------------------------------------------------------------------- building blocks


def _concat_bn_relu_conv(norm: nn.BatchNorm2d, conv: nn.Conv2d, update_stats: bool, *xs: torch.Tensor) -> torch.Tensor:
    """conv(relu(bn(cat(xs)))), updating BN running statistics only when `update_stats` is true.

    The memory-efficient path runs this twice (forward, then recomputed in backward); the recomputation must see
    the same batch statistics but must not move the running averages a second time.
    """
    x = xs[0] if len(xs) == 1 else torch.cat(xs, 1)
    if norm.training and norm.track_running_stats:
        # The recomputation passes the same running-stat tensors (checkpointing requires the same saved tensors)
        # with momentum 0, which leaves them exactly as they are.
        factor = 0.0
        if update_stats:
            norm.num_batches_tracked.add_(1)
            factor = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
        x = F.batch_norm(
            x, norm.running_mean, norm.running_var, norm.weight, norm.bias, training=True, momentum=factor, eps=norm.eps
        )
    else:
        x = norm(x)
    return conv(F.relu(x))


class _PreActConv1x1(nn.Module):
    """BN → ReLU → conv1x1 over the concatenation of its inputs; optionally recomputed in backward."""

    def __init__(self, in_ch: int, out_ch: int, efficient: bool) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False)
        self.efficient = efficient

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.efficient and self.training and torch.is_grad_enabled() and any(x.requires_grad for x in xs):
            calls = [0]

            def fn(*inputs: torch.Tensor) -> torch.Tensor:
                calls[0] += 1
                return _concat_bn_relu_conv(self.norm, self.conv, calls[0] == 1, *inputs)

            return checkpoint(fn, *xs, use_reentrant=False)
        return _concat_bn_relu_conv(self.norm, self.conv, True, *xs)


class Adapter(_PreActConv1x1):
    """BN-ReLU-conv1x1 that maps a concatenation of features to a fixed width (block outputs, skips, bridges)."""


class DenseLayer(nn.Module):
    """One dense layer: BN-ReLU-conv1x1 (to bottleneck * growth) → BN-ReLU-conv3x3 (to growth).

    Memory-efficient mode recomputes the whole layer in backward and keeps only its inputs (which the block keeps
    anyway) and its `growth` output channels: recomputing just concat-BN-ReLU left the 4·growth bottleneck stored
    twice (after the 1x1 conv and after its BN-ReLU), the largest thing a training step kept (bench/train_memory.py).
    """

    def __init__(self, in_ch: int, growth: int, bottleneck: int, efficient: bool) -> None:
        super().__init__()
        width = bottleneck * growth
        self.reduce = _PreActConv1x1(in_ch, width, efficient=False)  # recomputed with the whole layer instead
        self.norm = nn.BatchNorm2d(width)
        self.conv = nn.Conv2d(width, growth, kernel_size=3, padding=1, bias=False)
        self.efficient = efficient

    def _layer(self, update_stats: bool, *xs: torch.Tensor) -> torch.Tensor:
        y = _concat_bn_relu_conv(self.reduce.norm, self.reduce.conv, update_stats, *xs)
        return _concat_bn_relu_conv(self.norm, self.conv, update_stats, y)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.efficient and self.training and torch.is_grad_enabled() and any(x.requires_grad for x in xs):
            calls = [0]

            def fn(*inputs: torch.Tensor) -> torch.Tensor:
                calls[0] += 1
                return self._layer(calls[0] == 1, *inputs)

            return checkpoint(fn, *xs, use_reentrant=False)
        return self._layer(True, *xs)


class _Block(nn.Module):
    """A semantic block of one U-Net: a dense layer and the adapters reading [input, coupled, new]."""

    def __init__(self, in_ch: int, out_ch: int, n_coupled: int, cfg: CUNetConfig, skip: bool) -> None:
        super().__init__()
        g, eff = cfg.growth, cfg.memory_efficient
        self.dense = DenseLayer(in_ch + n_coupled * g, g, cfg.bottleneck, eff)
        adapter_in = in_ch + (n_coupled + 1) * g
        self.ahead = Adapter(adapter_in, out_ch, eff)
        self.skip = Adapter(adapter_in, out_ch, eff) if skip else None

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
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.unets = nn.ModuleList(UNet(cfg, min(i, k)) for i in range(n))
        # bridges[i - 1] makes the input of U-Net i from [out_{i-1}, input_{max(0, i-K)} .. input_{i-1}].
        self.bridges = nn.ModuleList(Adapter(c * (1 + min(i, k)), c, cfg.memory_efficient) for i in range(1, n))
        # Refinement starts the second pass exactly as a U-Net number `n` would start: one extra bridge.
        self.refine_bridge = Adapter(c * (1 + min(n, k)), c, cfg.memory_efficient) if cfg.refine else None
        self.heads = nn.ModuleDict({str(i): Adapter(c, cfg.num_landmarks, False) for i in cfg.supervised})
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

    def _pass(self, x: torch.Tensor, outputs: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        k = self.cfg.order
        inputs: list[torch.Tensor] = []  # inputs of the U-Nets of this pass, for the bridges
        history: list[list[torch.Tensor]] = []  # new block features of each U-Net of this pass
        for i, unet in enumerate(self.unets):
            if i > 0:
                x = self.bridges[i - 1](x, *inputs[max(0, i - k) :])
            inputs.append(x)
            earlier = history[max(0, i - k) :] if k else []
            coupled = [[h[b] for h in earlier] for b in range(2 * NUM_DOWN + 1)]
            x, new = unet(x, coupled)
            history.append(new)
            if str(i) in self.heads:
                outputs.append(self.heads[str(i)](x))
        return x, inputs

    def forward(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        outputs: list[torch.Tensor] = []
        x0 = self.stem(images)
        x, inputs = self._pass(x0, outputs)
        if self.refine_bridge is not None:
            x = self.refine_bridge(x, *inputs[len(inputs) - self.cfg.order :])
            self._pass(x, outputs)
        return outputs if self.training else outputs[-1]


# ------------------------------------------------------------------------------------------------------ builder


def build_model(cfg: CUNetConfig) -> CUNet:
    """A freshly initialised CU-Net for `cfg`."""
    return CUNet(cfg)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers and not counted, as in the papers)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

"""Low-bit CU-Net (Tang et al., ECCV 2018): quantized weights, conv inputs and weight gradients, trained with a
straight-through estimator (STE).

What is quantized, and how:
- weights of every convolution except the stem and the heatmap heads (the paper keeps the first and last layers,
  and every BatchNorm, in full precision; an intermediate head is the last layer of its U-Net's loss and exists in
  training only — the exported model computes just the last head, so this costs no deployed byte. Measured on
  cunet-tiny, 300 synthetic faces, 10 epochs, w1a8g8, seed 0: NME 8.22 % with binary intermediate heads, 7.74 %
  without; with the 10x latent-weight lr of `cunet train` 6.42 % vs 4.89 % (FP32 5.59 %)):
  1 bit — XNOR style, `sign(w) * alpha` with alpha = mean |w| of the filter (one alpha per output channel);
  2 bits — ternary (TWN), `{-1, 0, +1} * alpha`: weights with |w| <= 0.7 * mean |w| become 0, alpha is the mean |w|
  of the weights that are kept;
  k >= 3 bits — symmetric uniform per filter: integers in [-(2^(k-1) - 1), 2^(k-1) - 1] times max |w| / (2^(k-1) - 1).
  Every scheme is an integer code times one float scale per output channel, which is exactly an int8 per-channel
  Q/DQ weight with zero point 0: the form TensorRT builds and `cunet.compile.lowbit` exports.
- inputs of those convolutions (they follow a ReLU, so they are >= 0): k bits on a signed k-bit grid, i.e. the
  integers 0 .. 2^(k-1) - 1 times a step. `ActRange.FIXED` is the paper's fixed step 2^-(k-1) (2^-7 at 8 bits: inputs
  are clipped to [0, 127/128]); `ActRange.CALIBRATED` (the default) steps by a running average of the batch maximum
  / (2^(k-1) - 1), frozen at inference. Measured on cunet-tiny, 240 synthetic faces, 10 epochs, 8-bit weights and
  inputs: NME 7.13 % calibrated, 12.92 % fixed, 6.64 % full precision — BN-ReLU outputs reach well past 1, and the
  fixed grid clips them until BatchNorm has learnt to shrink them. A signed grid with zero point 0 is what a
  symmetric int8 QuantizeLinear represents, so the exported model computes what training saw.
- weight gradients: k bits, per tensor, step max |g| / (2^(k-1) - 1), stochastic rounding (unbiased, so small
  gradients still move the weights on average; round-to-nearest would zero every |g| < step / 2).

Gradients pass the weight quantizer unchanged (STE). Inputs: identity inside the representable range, zero where
the input was clipped (the usual clipped STE, `torch.fake_quantize_per_tensor_affine`); at inference the same
arithmetic runs as `quantized_decomposed` quantize/dequantize, which exports as QuantizeLinear/DequantizeLinear.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers torch.ops.quantized_decomposed)
from torch import nn

from cunet.errors import CunetError
from cunet.model.recompute import recomputing

__all__ = [
    "ActRange",
    "QuantConfig",
    "QuantConv2d",
    "apply_quantization",
    "quant_config_of",
    "quantized_layers",
    "binarize",
    "ternarize",
    "uniform_quantize",
    "quantize_weight",
    "quantize_gradient",
    "quantize_input",
    "input_step",
    "TERNARY_THRESHOLD",
    "deploy_model",
    "set_quantization_active",
]

#: TWN's threshold: weights with |w| <= 0.7 * mean |w| of their filter become 0.
TERNARY_THRESHOLD = 0.7
#: calibrated input ranges: exponential moving average of the batch maximum with this weight for the new batch.
ACT_MOMENTUM = 0.1
_MAX_BITS_W, _MAX_BITS_A, _MAX_BITS_G = 8, 8, 16


class ActRange(str, Enum):
    """How the step of the quantized conv inputs is chosen."""

    FIXED = "fixed"  # the paper: step 2^-(k-1), inputs clipped to [0, 1 - 2^-(k-1)]
    CALIBRATED = "calibrated"  # step = running max / (2^(k-1) - 1), learned from the training batches (default)


@dataclass(frozen=True)
class QuantConfig:
    """Bit widths of the low-bit CU-Net; None leaves that part in full precision.

    Attributes:
        bits_w: weights of the quantized convs: 1 (binary), 2 (ternary) or 3..8 (uniform).
        bits_a: inputs of the quantized convs, 2..8 (a signed k-bit grid; ReLU outputs use its non-negative half).
        bits_g: weight gradients of the quantized convs, 2..16.
        act_range: how the input step is chosen (see `ActRange`; calibrated measured better than the paper's fixed
            grid).
    """

    bits_w: int | None = None
    bits_a: int | None = None
    bits_g: int | None = None
    act_range: ActRange = ActRange.CALIBRATED

    def __post_init__(self) -> None:
        for name, lo, hi in (("bits_w", 1, _MAX_BITS_W), ("bits_a", 2, _MAX_BITS_A), ("bits_g", 2, _MAX_BITS_G)):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi):
                raise CunetError(f"invalid quantization: {name} must be an integer in {lo}..{hi} or None, got {v!r}")
        try:
            object.__setattr__(self, "act_range", ActRange(self.act_range))
        except ValueError:
            choices = ", ".join(a.value for a in ActRange)
            msg = f"invalid quantization: act_range must be one of {choices}, got {self.act_range!r}"
            raise CunetError(msg) from None

    @property
    def enabled(self) -> bool:
        """True when anything is quantized."""
        return any(b is not None for b in (self.bits_w, self.bits_a, self.bits_g))

    def describe(self) -> str:
        """Short human form, e.g. "w1 a8 g8" (fp = full precision)."""
        bits = (self.bits_w, self.bits_a, self.bits_g)
        return " ".join(f"{p}{'fp' if b is None else b}" for p, b in zip("wag", bits))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stored as `quant` in checkpoints and ONNX metadata)."""
        d = dataclasses.asdict(self)
        d["act_range"] = self.act_range.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "QuantConfig":
        """Rebuild from `to_dict()` output; unknown keys are a clear error (written by a newer cunet)."""
        if not isinstance(d, dict):
            raise CunetError(f"invalid quantization record: expected a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CunetError(f"unknown quantization keys {unknown} (written by a newer cunet?)")
        return cls(**d)


# ------------------------------------------------------------------------------------------ weight quantizers


def _per_filter(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(w.shape[0], -1)


def _expand(scale: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return scale.reshape(-1, *([1] * (w.dim() - 1)))


def _safe_scale(scale: torch.Tensor) -> torch.Tensor:
    # An all-zero filter has every code 0; any positive scale represents it, and Q/DQ scales must be positive.
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def binarize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """XNOR-style 1-bit weights.

    Args:
        w: [C_out, ...] weights.

    Returns:
        (codes [C_out, ...] in {-1, +1} (sign, with sign(0) = +1), scale [C_out] = mean |w| of each filter; 0 for
        an all-zero filter, which has no other 1-bit form).
    """
    codes = torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
    return codes, _per_filter(w).abs().mean(1)


def ternarize(w: torch.Tensor, threshold: float = TERNARY_THRESHOLD) -> tuple[torch.Tensor, torch.Tensor]:
    """TWN 2-bit weights.

    Args:
        w: [C_out, ...] weights.
        threshold: weights with |w| <= threshold * mean |w| of their filter become 0.

    Returns:
        (codes [C_out, ...] in {-1, 0, +1}, scale [C_out] = mean |w| over the kept weights of each filter).
    """
    a = w.abs()
    delta = _expand(_per_filter(a).mean(1) * threshold, w)
    keep = (a > delta).to(w.dtype)
    codes = torch.sign(w) * keep
    kept = _per_filter(keep).sum(1)
    scale = _per_filter(a * keep).sum(1) / kept.clamp(min=1)
    return codes, _safe_scale(scale)


def uniform_quantize(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric uniform k-bit weights, one step per filter.

    Args:
        w: [C_out, ...] weights.
        bits: k >= 2; codes are integers in [-(2^(k-1) - 1), 2^(k-1) - 1] (narrow range, symmetric).

    Returns:
        (codes [C_out, ...], scale [C_out] = max |w| of the filter / (2^(k-1) - 1)).
    """
    qmax = 2 ** (bits - 1) - 1
    scale = _safe_scale(_per_filter(w).abs().amax(1) / qmax)
    codes = torch.clamp(torch.round(w / _expand(scale, w)), -qmax, qmax)
    return codes, scale


def quantize_weight(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's scheme for `bits`: 1 → `binarize`, 2 → `ternarize`, more → `uniform_quantize`.

    Returns:
        (integer-valued codes [C_out, ...] in w's dtype, scale [C_out], positive except for an all-zero filter at
        1 bit); the quantized weight is `codes * scale[:, None, None, None]`.
    """
    if bits == 1:
        return binarize(w)
    if bits == 2:
        return ternarize(w)
    return uniform_quantize(w, bits)


def quantize_gradient(g: torch.Tensor, bits: int, stochastic: bool = True) -> torch.Tensor:
    """k-bit gradient: integers in [-(2^(k-1) - 1), 2^(k-1) - 1] times max |g| / (2^(k-1) - 1) (per tensor).

    Args:
        g: gradient of any shape.
        bits: k >= 2.
        stochastic: round up with probability equal to the fractional part (unbiased: E[result] = g), drawing from
            torch's global generator (seeded runs repeat); False rounds to nearest.
    """
    qmax = 2 ** (bits - 1) - 1
    step = g.abs().amax() / qmax
    if not step > 0:
        return g
    x = g / step
    x = torch.floor(x + torch.rand_like(x)) if stochastic else torch.round(x)
    return torch.clamp(x, -qmax, qmax) * step


class _QuantWeight(torch.autograd.Function):
    """Forward: the quantized weight (or the weight itself when bits_w is None). Backward: STE, then the gradient
    quantized to bits_g (or passed unchanged when bits_g is None)."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, bits_w: int | None, bits_g: int | None) -> torch.Tensor:
        ctx.bits_g = bits_g
        if bits_w is None:
            return w.clone()
        codes, scale = quantize_weight(w, bits_w)
        return codes * _expand(scale, w)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        if ctx.bits_g is not None:
            grad = quantize_gradient(grad, ctx.bits_g)
        return grad, None, None


# ------------------------------------------------------------------------------------------- input quantizer


def input_step(bits: int) -> float:
    """The paper's fixed input step for k-bit inputs: 2^-(k-1) (2^-7 at 8 bits)."""
    return 2.0 ** -(bits - 1)


def quantize_input(x: torch.Tensor, bits: int, step: float | torch.Tensor) -> torch.Tensor:
    """Quantize non-negative conv inputs to `step` * {0 .. 2^(k-1) - 1} (the int8 grid below 0; ReLU leaves none).

    Written as an optional clamp + an int8-range quantization so that training, export and ONNX Runtime compute the
    same thing. When `x` needs a gradient it is `torch.fake_quantize_per_tensor_affine` (gradient: identity inside
    the range, 0 where clipped — the clipped STE); otherwise `quantized_decomposed` quantize/dequantize with a float
    step, which has the same arithmetic (round-half-even of x * (1 / step)) and which torch.export traces with a
    dynamic batch and torch.onnx exports as QuantizeLinear/DequantizeLinear (the fake-quantization kernels have no
    rule for a symbolic batch). The clamp exports as Clip.
    """
    qmax = 2 ** (bits - 1) - 1
    if bits < 8:
        x = torch.clamp(x, max=qmax * step)
    if x.requires_grad:
        s = torch.as_tensor(step, dtype=torch.float32, device=x.device)
        zero = torch.zeros((), dtype=torch.int32, device=x.device)
        return torch.fake_quantize_per_tensor_affine(x, s, zero, -128, 127)
    step = float(step)
    if x.dtype == torch.float64:
        # The float64 reference that export verification runs (`cunet.compile.verify`): the same arithmetic, which
        # the quantized_decomposed kernels accept only in float32.
        return torch.clamp(torch.round(x * (1.0 / step)), -128, 127) * step
    ops = torch.ops.quantized_decomposed
    q = ops.quantize_per_tensor(x, step, 0, -128, 127, torch.int8)
    return ops.dequantize_per_tensor(q, step, 0, -128, 127, torch.int8)


# ----------------------------------------------------------------------------------------------- the layer


class QuantConv2d(nn.Conv2d):
    """A conv whose inputs, weights and weight gradients are quantized as its `QuantConfig` says.

    Holds the full-precision ("latent") weight under the same name as the conv it replaces, so checkpoints keep
    their keys; with `ActRange.CALIBRATED` it adds the buffer `act_max` (running max of its inputs).
    """

    def __init__(self, *args: Any, quant: QuantConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bits_w, self.bits_a, self.bits_g = quant.bits_w, quant.bits_a, quant.bits_g
        self.act_range = quant.act_range
        self.frozen_step: float | None = None  # set by `deploy_model`: the step as a constant for export
        #: False during a full-precision warm-up (`set_quantization_active`): the conv computes in full precision
        #: while a calibrated input range keeps learning its running maximum.
        self.active = True
        if self.bits_a is not None and self.act_range is ActRange.CALIBRATED:
            self.register_buffer("act_max", torch.zeros((), device=self.weight.device))

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, quant: QuantConfig) -> "QuantConv2d":
        """A QuantConv2d sharing `conv`'s parameters (no copy)."""
        with torch.device(conv.weight.device):
            q = cls(
                conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None, padding_mode=conv.padding_mode,
                quant=quant,
            )
        q.weight = conv.weight
        q.bias = conv.bias
        return q

    def input_step(self) -> float | torch.Tensor:
        """The current input step (a 0-d tensor for calibrated ranges while they can still change)."""
        assert self.bits_a is not None
        if self.frozen_step is not None:
            return self.frozen_step
        if self.act_range is ActRange.FIXED:
            return input_step(self.bits_a)
        return torch.clamp(self.act_max, min=1e-8) / (2 ** (self.bits_a - 1) - 1)

    def quantized_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes, per-filter scale) of the current weight; requires bits_w."""
        assert self.bits_w is not None
        return quantize_weight(self.weight.detach(), self.bits_w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bits_a is not None:
            # Memory-efficient training runs this forward again in backward: the range moves only the first time.
            if self.act_range is ActRange.CALIBRATED and self.training and not recomputing():
                with torch.no_grad():
                    m = x.detach().amax()
                    self.act_max.copy_(torch.where(self.act_max > 0, torch.lerp(self.act_max, m, ACT_MOMENTUM), m))
            if self.active:
                x = quantize_input(x, self.bits_a, self.input_step())
        if not self.active:
            return self._conv_forward(x, self.weight, self.bias)
        if self.bits_w is None and self.bits_g is None:
            w = self.weight
        else:
            w = _QuantWeight.apply(self.weight, self.bits_w, self.bits_g)
        return self._conv_forward(x, w, self.bias)

    def extra_repr(self) -> str:
        bits = f"bits_w={self.bits_w}, bits_a={self.bits_a}, bits_g={self.bits_g}, act_range={self.act_range.value}"
        return f"{super().extra_repr()}, {bits}"


# ------------------------------------------------------------------------------------------------- the model


def _full_precision_convs(model: nn.Module) -> set[str]:
    # The stem's conv and every heatmap head's (the last U-Net is always supervised; refinement reuses the heads).
    return model.edge_convs()


def quant_config_of(model: nn.Module) -> QuantConfig | None:
    """The `QuantConfig` applied to `model`, or None for a full-precision model."""
    return getattr(model, "quant_config", None)


def apply_quantization(model: nn.Module, quant: QuantConfig) -> nn.Module:
    """Quantize a `CUNet` in place: every conv except the stem's and the heads' becomes a `QuantConv2d`.

    Parameters are shared, not copied, so call it before building the optimizer (or rebuild it). Parameter names
    and values are unchanged; a calibrated input range adds one `act_max` buffer per quantized conv.

    Returns:
        `model` (now carrying `model.quant_config`).

    Raises:
        CunetError: `model` is already quantized, or is not a CUNet.
    """
    from cunet.model.cunet import CUNet

    if not isinstance(model, CUNet):
        raise CunetError(f"apply_quantization needs a CUNet, got {type(model).__name__}")
    if quant_config_of(model) is not None:
        raise CunetError(f"model is already quantized ({quant_config_of(model).describe()}); apply once")
    keep = _full_precision_convs(model)
    targets = [name for name, m in model.named_modules() if type(m) is nn.Conv2d and name not in keep]
    for name in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, QuantConv2d.from_conv(getattr(parent, attr), quant))
    model.quant_config = quant
    return model


def quantized_layers(model: nn.Module) -> list[dict[str, Any]]:
    """Every conv of a model with its bits: [{"name", "params", "bits_w", "bits_a"}] (None = full precision)."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            q = isinstance(m, QuantConv2d)
            out.append({
                "name": name,
                "params": m.weight.numel(),
                "bits_w": m.bits_w if q else None,
                "bits_a": m.bits_a if q else None,
            })
    return out


def set_quantization_active(model: nn.Module, active: bool) -> int:
    """Switch the quantizers of every `QuantConv2d` in `model` on or off (a full-precision warm-up).

    Off, the convs compute in full precision and gradients are not quantized; calibrated input ranges keep their
    running maximum up to date, so they are ready when quantization starts. Export (`deploy_model`) always
    quantizes.

    Returns:
        The number of quantized convs switched.
    """
    n = 0
    for m in model.modules():
        if isinstance(m, QuantConv2d):
            m.active = bool(active)
            n += 1
    return n


def deploy_model(model: nn.Module) -> tuple[nn.Module, dict[str, tuple[torch.Tensor, torch.Tensor, int]]]:
    """The inference form of a quantized model: a copy whose weights ARE their quantized values.

    The copy computes exactly what `model.eval()` computes, but with plain tensors where the weight quantizer was,
    so it exports as constants (inputs keep their fake quantization, which exports as Q/DQ).

    Returns:
        (the copy in eval mode, {weight name: (integer codes, per-filter scale [C_out], bits_w)} for every conv
        with quantized weights; the copy's weight equals codes * scale exactly).
    """
    quant = quant_config_of(model)
    if quant is None:
        raise CunetError("deploy_model needs a quantized model (apply_quantization first)")
    # No parameter needs a gradient: torch.export then traces the inference kernel of the input fake quantization
    # (the training one, `..._cachemask`, has no export rule).
    dep = copy.deepcopy(model).eval().requires_grad_(False)
    codes: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}
    for name, m in dep.named_modules():
        if not isinstance(m, QuantConv2d):
            continue
        if m.bits_w is not None:
            q, s = m.quantized_weight()
            with torch.no_grad():
                m.weight.copy_(q * _expand(s, q))
            codes[f"{name}.weight"] = (q, s, m.bits_w)
        if m.bits_a is not None:
            m.frozen_step = float(m.input_step())
        m.bits_w = m.bits_g = None
        m.active = True
    dep.quant_config = None
    return dep, codes

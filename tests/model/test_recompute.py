"""Memory-efficient training (`CUNetConfig.memory_efficient`): every U-Net is a checkpoint segment recomputed in
backward, and training results are those of the plain model: same losses, weights and BatchNorm statistics."""

import dataclasses

import pytest
import torch

from cunet.model import CUNet, CUNetConfig
from cunet.model.quant import QuantConfig, apply_quantization
from cunet.train.trainer import heatmap_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

# Order 2 (a bridge reads two earlier inputs) with refinement (a second pass through the same segments).
TINY = CUNetConfig(layers=3, order=2, num_landmarks=5, channels=16, growth=8, input_size=64, refine=True)
STEPS = 4


def _train(model: CUNet, steps: int = STEPS) -> list[float]:
    """`steps` RMSprop steps (the paper's optimiser) on fixed random batches; the loss of each step."""
    gen = torch.Generator().manual_seed(1)
    opt = torch.optim.RMSprop(model.parameters(), lr=2.5e-4)
    losses = []
    for _ in range(steps):
        x = torch.randn(2, 3, 64, 64, generator=gen)
        target = torch.rand(2, 5, 16, 16, generator=gen)
        loss = heatmap_loss(model(x), target, torch.ones(2, 5))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _pair(cfg: CUNetConfig) -> tuple[CUNet, CUNet]:
    torch.manual_seed(0)
    plain = CUNet(cfg).train()
    eff = CUNet(dataclasses.replace(cfg, memory_efficient=True)).train()
    eff.load_state_dict(plain.state_dict())
    return plain, eff


def test_memory_efficient_training_follows_the_plain_loss_curve_and_moves_batchnorm_once():
    plain, eff = _pair(TINY)
    losses_p, losses_e = _train(plain), _train(eff)
    # Tolerance: the recomputation runs the same float32 kernels on the same inputs and the saved 3x3 outputs are the
    # forward's own tensors, so the runs agree bit for bit here. 1e-6 relative still admits a library that picks
    # another kernel (another summation order, ~1e-7 per op) for a recomputed conv; a BatchNorm that moved twice
    # or normalised a recomputation with its running statistics is off by 1e-3 or more after one step.
    torch.testing.assert_close(losses_e, losses_p, rtol=1e-6, atol=0)
    sp, se = plain.state_dict(), eff.state_dict()
    for name in sp:
        torch.testing.assert_close(se[name], sp[name], rtol=1e-5, atol=1e-7, msg=name)
    # Counted once per forward run: the stem's once a step, a U-Net's twice (refinement runs the U-Nets twice).
    assert int(se["stem.1.num_batches_tracked"]) == STEPS
    assert int(se["unets.1.up.0.dense.norm.num_batches_tracked"]) == 2 * STEPS


def test_each_unet_is_recomputed_once_in_backward_and_only_when_training():
    plain, eff = _pair(dataclasses.replace(TINY, refine=False))
    calls = {"plain": 0, "eff": 0}
    for name, model in (("plain", plain), ("eff", eff)):
        for unet in model.unets:
            unet.register_forward_hook(lambda *_, n=name: calls.__setitem__(n, calls[n] + 1))
    _train(plain, 1)
    _train(eff, 1)
    assert calls == {"plain": TINY.layers, "eff": 2 * TINY.layers}
    calls["eff"] = 0
    with torch.no_grad():
        eff(torch.randn(2, 3, 64, 64))
    eff.eval()(torch.randn(1, 3, 64, 64)).sum().backward()
    assert calls["eff"] == 2 * TINY.layers  # no-grad and eval forwards run each U-Net once and checkpoint nothing


def test_calibrated_input_ranges_move_once_per_step_when_recomputed():
    quant = QuantConfig(bits_w=1, bits_a=8, act_range="calibrated")
    plain, eff = (apply_quantization(m, quant) for m in _pair(dataclasses.replace(TINY, refine=False)))
    _train(plain, 2)
    _train(eff, 2)
    maxima = {k: v for k, v in plain.state_dict().items() if k.endswith("act_max")}
    assert maxima
    for name, value in maxima.items():
        torch.testing.assert_close(eff.state_dict()[name], value, rtol=1e-6, atol=0, msg=name)

"""Low-bit CU-Net: weight/input/gradient quantizers on hand-made tensors, the STE, which layers are quantized,
checkpoints that carry the quantization, and a tiny QAT run with 8-bit gradients that lowers the loss."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from cunet.errors import CunetError
from cunet.model import CUNet, CUNetConfig
from cunet.model.quant import (
    ActRange,
    QuantConfig,
    QuantConv2d,
    apply_quantization,
    binarize,
    deploy_model,
    input_step,
    quant_config_of,
    quantize_gradient,
    quantize_input,
    quantize_weight,
    quantized_layers,
    set_quantization_active,
    ternarize,
    uniform_quantize,
)
from cunet.model.checkpoint import model_from_checkpoint, save_checkpoint

TINY = CUNetConfig(layers=2, order=1, num_landmarks=5, channels=16, growth=8, input_size=64)
FACE = dataclasses.replace(TINY, num_landmarks=68)  # checkpoints are checked against their task's landmark count


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


# ------------------------------------------------------------------------------------------------ weights


def test_binarize_is_sign_times_mean_abs_per_filter():
    w = t([[0.5, -1.0, 0.0, 1.5], [-0.2, -0.2, 0.2, 0.6]])
    codes, scale = binarize(w)
    assert codes.tolist() == [[1, -1, 1, 1], [-1, -1, 1, 1]]  # sign(0) = +1: every weight keeps one bit
    torch.testing.assert_close(scale, t([0.75, 0.3]))


def test_ternarize_thresholds_at_0_7_mean_abs_and_scales_by_kept_mean():
    # Filter 0: mean |w| = 0.45, threshold 0.315 keeps -0.9 and 0.5, alpha = (0.9 + 0.5) / 2.
    # Filter 1: mean |w| = 0.25, threshold 0.175 keeps 0.4 and -0.3 (0.2 > 0.175 too), alpha = 0.3.
    w = t([[0.1, -0.9, 0.5, 0.3], [0.4, -0.3, 0.2, 0.1]])
    codes, scale = ternarize(w)
    assert codes.tolist() == [[0, -1, 1, 0], [1, -1, 1, 0]]
    torch.testing.assert_close(scale, t([0.7, 0.3]))


def test_all_zero_filter_stays_zero():
    for bits in (1, 2, 4):
        codes, scale = quantize_weight(torch.zeros(2, 3), bits)
        assert torch.all(codes * scale[:, None] == 0)
        if bits > 1:  # codes 0 and a positive scale (Q/DQ scales must be positive); 1 bit has no 0 code: scale 0
            assert torch.all(codes == 0) and float(scale.min()) > 0


def test_uniform_k_bit_is_symmetric_per_filter():
    # 3 bits: codes -3..3, step = max |w| / 3 = 0.1 in filter 0, 0.2 in filter 1.
    w = t([[0.3, -0.16, 0.1, 0.04], [-0.6, 0.25, 0.0, 0.5]])
    codes, scale = uniform_quantize(w, 3)
    assert codes.tolist() == [[3, -2, 1, 0], [-3, 1, 0, 2]]
    torch.testing.assert_close(scale, t([0.1, 0.2]))
    assert quantize_weight(w, 3)[0].tolist() == codes.tolist()


def test_quantize_weight_works_per_output_channel_of_a_4d_conv_weight():
    w = torch.randn(6, 4, 3, 3)
    for bits in (1, 2, 5):
        codes, scale = quantize_weight(w, bits)
        assert codes.shape == w.shape and scale.shape == (6,)
        assert torch.equal(codes, codes.round()) and codes.abs().max() <= max(1, 2 ** (bits - 1) - 1)
    codes, scale = quantize_weight(w, 1)
    torch.testing.assert_close(scale, w.abs().mean((1, 2, 3)))


# ------------------------------------------------------------------------------------- inputs and gradients


def test_8_bit_inputs_use_the_papers_fixed_2_pow_minus_7_grid_with_a_clipped_ste():
    assert input_step(8) == 2.0**-7
    x = t([0.1, 0.5, 0.99, 1.5]).requires_grad_()
    y = quantize_input(x, 8, input_step(8))
    torch.testing.assert_close(y, t([13, 64, 127, 127]) / 128)  # 0.1*128 = 12.8 → 13; above 127/128 saturates
    y.sum().backward()
    assert x.grad.tolist() == [1, 1, 1, 0]  # straight through inside the range, nothing where it was clipped


def test_4_bit_inputs_clip_at_7_steps_and_inference_matches_training():
    x = t([0.3, 0.9, 0.0])
    step = input_step(4)  # 0.125, codes 0..7
    torch.testing.assert_close(quantize_input(x, 4, step), t([0.25, 0.875, 0.0]))
    xg = x.clone().requires_grad_()
    y = quantize_input(xg, 4, step)  # the training path (fake quantization with STE)
    y.sum().backward()
    assert xg.grad.tolist() == [1, 0, 1]
    big = torch.rand(10_000) * 1.2
    assert torch.equal(quantize_input(big, 4, step), quantize_input(big.requires_grad_(), 4, step).detach())


def test_gradient_quantization_round_to_nearest_on_hand_values():
    # 3 bits: codes -3..3, step = max |g| / 3 = 1/3; g / step = [1.8, -0.75, 0.3, 3].
    g = t([0.6, -0.25, 0.1, 1.0])
    torch.testing.assert_close(quantize_gradient(g, 3, stochastic=False), t([2, -1, 0, 3]) / 3)
    assert torch.equal(quantize_gradient(torch.zeros(3), 4), torch.zeros(3))


def test_stochastic_gradient_quantization_is_on_the_grid_and_unbiased():
    torch.manual_seed(0)
    g = t([0.6, -0.25, 0.1, 1.0])
    draws = torch.stack([quantize_gradient(g, 3) for _ in range(4000)])
    codes = draws * 3
    assert torch.allclose(codes, codes.round(), atol=1e-5)
    assert torch.all((codes - g * 3).abs() < 1 + 1e-5)  # only the two neighbouring grid points
    # E = g; the std of one draw is at most step / 2 = 1/6, so the mean of 4000 is within 0.011 at 4 sigma.
    torch.testing.assert_close(draws.mean(0), g, atol=0.011, rtol=0)


def test_weight_ste_passes_the_gradient_of_the_quantized_weight_through():
    torch.manual_seed(0)
    conv = QuantConv2d(4, 3, 3, padding=1, bias=False, quant=QuantConfig(bits_w=1))
    x, r = torch.randn(2, 4, 5, 5), torch.randn(2, 3, 5, 5)
    (conv(x) * r).sum().backward()
    codes, scale = binarize(conv.weight.detach())
    wq = (codes * scale[:, None, None, None]).requires_grad_()
    (F.conv2d(x, wq, padding=1) * r).sum().backward()
    torch.testing.assert_close(conv.weight.grad, wq.grad)


def test_weight_gradients_are_k_bit_in_a_quantized_conv():
    torch.manual_seed(0)
    conv = QuantConv2d(8, 8, 3, padding=1, bias=False, quant=QuantConfig(bits_w=2, bits_g=4))
    conv(torch.randn(4, 8, 6, 6)).square().sum().backward()
    g = conv.weight.grad
    step = g.abs().max() / 7  # 4 bits: codes -7..7
    codes = g / step
    assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.round().unique().numel() <= 15


def test_calibrated_input_range_is_a_running_max_frozen_at_inference():
    conv = QuantConv2d(2, 2, 1, bias=False, quant=QuantConfig(bits_a=8))
    assert conv.act_range is ActRange.CALIBRATED  # the default
    conv(t([0.5, 2.0]).reshape(1, 2, 1, 1))  # first batch: its max
    assert float(conv.act_max) == 2.0
    conv(t([1.0, 0.0]).reshape(1, 2, 1, 1))  # then 0.9 * old + 0.1 * new
    assert float(conv.act_max) == pytest.approx(0.9 * 2.0 + 0.1 * 1.0)
    conv.eval()
    conv(t([9.0, 9.0]).reshape(1, 2, 1, 1))
    assert float(conv.act_max) == pytest.approx(1.9) and float(conv.input_step()) == pytest.approx(1.9 / 127)


def test_an_inactive_quantized_conv_is_full_precision_but_keeps_calibrating():
    torch.manual_seed(0)
    conv = QuantConv2d(3, 4, 3, padding=1, quant=QuantConfig(bits_w=1, bits_a=4, bits_g=4))
    plain = torch.nn.Conv2d(3, 4, 3, padding=1)
    plain.load_state_dict({k: v for k, v in conv.state_dict().items() if k != "act_max"})
    x = torch.rand(2, 3, 5, 5) * 3
    conv.active = False
    out = conv(x)
    assert float(conv.act_max) == pytest.approx(float(x.max()))  # the running max is learnt during the warm-up
    assert torch.equal(out, plain(x))  # no input or weight quantization
    out.sum().backward()
    plain(x).sum().backward()
    assert torch.equal(conv.weight.grad, plain.weight.grad)  # and no 4-bit gradient quantization
    # Switched on, the same conv quantizes: 1-bit weights, 4-bit inputs.
    assert set_quantization_active(conv, True) == 1 and conv.active
    q = conv(x)
    codes, scale = binarize(conv.weight.detach())
    expected = F.conv2d(quantize_input(x, 4, conv.input_step().detach()), codes * scale.reshape(-1, 1, 1, 1),
                        conv.bias, padding=1)
    assert torch.allclose(q, expected, atol=1e-6) and not torch.allclose(q, plain(x), atol=1e-3)


def test_deploy_model_quantizes_even_a_model_left_inactive():
    torch.manual_seed(0)
    model = apply_quantization(CUNet(TINY), QuantConfig(bits_w=2, bits_a=8))
    model.train()
    model(torch.rand(2, 3, 64, 64))  # calibrate the input ranges
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        quantized = model(x)[-1]
        assert set_quantization_active(model, False) == len([q for q in quantized_layers(model) if q["bits_w"]])
        full = model(x)[-1]
        dep, _ = deploy_model(model)
        deployed = dep(x)[-1]
    assert not torch.allclose(full, quantized, atol=1e-4)
    assert torch.equal(deployed, quantized)


# ------------------------------------------------------------------------------------------------- model


def test_config_validation_and_round_trip():
    q = QuantConfig(bits_w=1, bits_a=8, bits_g=8)
    assert QuantConfig.from_dict(q.to_dict()) == q and q.to_dict()["act_range"] == "calibrated"
    assert QuantConfig.from_dict({"bits_w": 2, "act_range": "fixed"}).act_range is ActRange.FIXED
    assert not QuantConfig().enabled and q.describe() == "w1 a8 g8"
    for bad in ({"bits_w": 0}, {"bits_w": 9}, {"bits_a": 1}, {"bits_g": 17}, {"bits_w": True}, {"act_range": "x"}):
        with pytest.raises(CunetError, match="invalid quantization"):
            QuantConfig(**bad)
    with pytest.raises(CunetError, match="unknown quantization keys"):
        QuantConfig.from_dict({"bits_w": 1, "bits_x": 3})


def test_stem_and_heads_stay_full_precision_every_other_conv_is_quantized():
    model = apply_quantization(CUNet(TINY), QuantConfig(bits_w=1, bits_a=8))
    layers = {lay["name"]: lay for lay in quantized_layers(model)}
    full = sorted(n for n, lay in layers.items() if lay["bits_w"] is None)
    assert full == ["heads.0.conv", "heads.1.conv", "stem.0"]  # the intermediate head too (it trains, never deploys)
    assert all(lay["bits_w"] == 1 and lay["bits_a"] == 8 for n, lay in layers.items() if n not in full)
    assert quant_config_of(model) == QuantConfig(bits_w=1, bits_a=8)
    assert not any(isinstance(m, QuantConv2d) for m in model.stem.modules())


def test_applying_twice_or_to_something_else_is_an_error():
    model = apply_quantization(CUNet(TINY), QuantConfig(bits_w=2))
    with pytest.raises(CunetError, match="already quantized"):
        apply_quantization(model, QuantConfig(bits_w=2))
    with pytest.raises(CunetError, match="needs a CUNet"):
        apply_quantization(torch.nn.Conv2d(1, 1, 1), QuantConfig(bits_w=2))


def test_parameters_are_shared_and_names_unchanged():
    model = CUNet(TINY)
    before = {k: v for k, v in model.named_parameters()}
    apply_quantization(model, QuantConfig(bits_w=1, bits_a=8, bits_g=8))
    after = dict(model.named_parameters())
    assert before.keys() == after.keys() and all(before[k] is after[k] for k in before)


@pytest.mark.parametrize("act_range", ["fixed", "calibrated"])
def test_checkpoint_with_quant_reloads_the_same_quantized_model(tmp_path, act_range):
    torch.manual_seed(0)
    q = QuantConfig(bits_w=2, bits_a=6, bits_g=8, act_range=act_range)
    model = apply_quantization(CUNet(FACE), q).train()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        model(x)  # moves BN statistics and, when calibrated, the input ranges
    save_checkpoint(tmp_path / "q.pt", model, "face", quant=q.to_dict())
    loaded, ckpt = model_from_checkpoint(tmp_path / "q.pt")
    assert quant_config_of(loaded) == q and ckpt["quant"] == q.to_dict()
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_bad_quant_record_in_a_checkpoint_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path / "bad.pt", CUNet(FACE), "face", quant={"bits_w": 11})
    with pytest.raises(CunetError, match=r"bad\.pt: invalid quantization: bits_w"):
        model_from_checkpoint(tmp_path / "bad.pt")


def test_memory_efficient_variant_gives_the_same_quantized_gradients():
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for efficient in (False, True):
        torch.manual_seed(0)
        cfg = CUNetConfig(**{**TINY.to_dict(), "memory_efficient": efficient})
        model = apply_quantization(CUNet(cfg), QuantConfig(bits_w=1, bits_a=8)).train()
        sum(o.square().mean() for o in model(x)).backward()
        grads.append(model.unets[1].up[0].dense.conv.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_deploy_model_computes_exactly_what_the_quantized_model_computes():
    torch.manual_seed(0)
    model = apply_quantization(CUNet(TINY), QuantConfig(bits_w=1, bits_a=8, act_range="calibrated")).train()
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64))
    dep, codes = deploy_model(model)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(dep(x), model(x))
    name = "unets.0.down.0.dense.conv.weight"
    q, s, bits = codes[name]
    assert bits == 1 and set(q.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(dep.get_parameter(name), q * s[:, None, None, None])
    assert "stem.0.weight" not in codes and "heads.1.conv.weight" not in codes


def test_low_bit_training_with_8_bit_gradients_lowers_the_loss():
    """1-bit weights, 8-bit inputs, 8-bit gradients: 30 Adam steps on one fixed batch must fit it much better."""
    torch.manual_seed(0)
    model = apply_quantization(CUNet(TINY), QuantConfig(bits_w=1, bits_a=8, bits_g=8)).train()
    x = torch.randn(2, 3, 64, 64)
    ys, xs = torch.randint(2, 14, (2, 2, 5))
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    target = torch.exp(-((yy - ys[..., None, None]) ** 2 + (xx - xs[..., None, None]) ** 2) / 32.0)  # sigma 4
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    losses = []
    for _ in range(30):
        loss = sum(F.mse_loss(o, target) for o in model(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # Measured: 0.52 x the first loss (full precision: 0.39); broken gradients (none, or no STE) stay near 1.
    assert losses[-1] < 0.65 * losses[0], losses[::5]

"""CU-Net structure: parameter parity with the original code, coupling, outputs, memory-efficient mode, refinement."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from cunet.errors import CunetError
from cunet.model import VARIANTS, CUNet, CUNetConfig, count_parameters, supervised_unets

TINY = CUNetConfig(layers=3, order=1, num_landmarks=5, channels=16, growth=8, input_size=64)


def original_param_count(layers: int, order: int, landmarks: int, c: int = 128, g: int = 32, neck: int = 4) -> int:
    """Closed form of the original code's parameter count (every head present), written from its constructor.

    Block of U-Net i at width `cin`: one dense layer reading cin + n*g channels (n = min(i, K) coupled U-Nets),
    then one ("ahead") or two (+ "skip") adapters reading cin + (n+1)*g channels. BatchNorm has 2 params/channel.
    """

    def block(cin: int, cout: int, n: int, adapters: int) -> int:
        din = cin + n * g
        dense = 2 * din + din * neck * g + 2 * neck * g + neck * g * g * 9
        ain = cin + (n + 1) * g
        return dense + adapters * (2 * ain + ain * cout)

    total = 3 * c * 49 + 2 * c  # stem conv 7x7 + BN
    for i in range(layers):
        n = min(i, order)
        total += 4 * block(c, c, n, 2) + block(c, c, n, 1) + 4 * block(2 * c, c, n, 1)
        if i > 0:  # the adapter between U-Nets reads [out_{i-1}] + inputs of the last min(i, K) U-Nets
            bin_ = c * (1 + min(i, order))
            total += 2 * bin_ + bin_ * c
    total += layers * (2 * c + c * landmarks)  # one BN-ReLU-conv1x1 head per U-Net
    return total


@pytest.mark.parametrize(
    "layers, order, landmarks, expected",
    [(2, 1, 16, 1_923_200), (8, 1, 16, 8_009_984), (8, 1, 68, 8_063_232)],
)
def test_parameter_counts_match_the_original_code(layers, order, landmarks, expected):
    assert original_param_count(layers, order, landmarks) == expected
    with torch.device("meta"):
        model = CUNet(CUNetConfig(layers=layers, order=order, num_landmarks=landmarks))
    assert count_parameters(model) == expected


@pytest.mark.parametrize("layers", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("landmarks", [16, 68])
def test_parameter_parity_for_every_order(layers, landmarks):
    for order in range(layers):
        with torch.device("meta"):
            model = CUNet(CUNetConfig(layers=layers, order=order, num_landmarks=landmarks))
        assert count_parameters(model) == original_param_count(layers, order, landmarks), (layers, order)


def test_coupling_widths_follow_order_k():
    for order in range(4):
        cfg = dataclasses.replace(TINY, layers=4, order=order)
        model = CUNet(cfg)
        for i, unet in enumerate(model.unets):
            n = min(i, order)
            assert unet.down[0].dense.reduce.conv.in_channels == cfg.channels + n * cfg.growth
            assert unet.up[0].dense.reduce.conv.in_channels == 2 * cfg.channels + n * cfg.growth
            assert unet.down[0].ahead.conv.in_channels == cfg.channels + (n + 1) * cfg.growth
        for i, bridge in enumerate(model.bridges, start=1):
            assert bridge.conv.in_channels == cfg.channels * (1 + min(i, order))


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_forward_shapes_for_every_order(order):
    cfg = dataclasses.replace(TINY, layers=4, order=order)
    model = CUNet(cfg).eval()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 5, 16, 16)


def test_train_returns_supervised_heads_eval_returns_last():
    cfg = dataclasses.replace(TINY, layers=4, loss_num=2)
    assert cfg.supervised == (1, 3)
    model = CUNet(cfg)
    x = torch.randn(2, 3, 64, 64)
    outs = model.train()(x)
    assert isinstance(outs, list) and len(outs) == 2
    assert all(o.shape == (2, 5, 16, 16) for o in outs)
    model.eval()
    with torch.no_grad():
        last = model(x)
        # eval output is the last head applied to the last U-Net: it changes when that head changes, and only then
        model.heads["1"].conv.weight.add_(1.0)
        assert torch.equal(model(x), last)
        model.heads["3"].conv.weight.add_(1.0)
        assert not torch.equal(model(x), last)


def test_supervised_heads_evenly_spaced_last_always():
    assert supervised_unets(8, 8) == tuple(range(8))
    assert supervised_unets(8, 1) == (7,)
    assert supervised_unets(8, 2) == (3, 7)
    assert supervised_unets(8, 3) == (2, 4, 7)  # round(8/3*k): 2.67→3, 5.33→5, 8 (1-based)
    assert supervised_unets(16, 4) == (3, 7, 11, 15)
    for layers in range(1, 12):
        for n in range(1, layers + 1):
            s = supervised_unets(layers, n)
            assert s[-1] == layers - 1 and len(set(s)) == n


def test_no_state_kept_between_calls():
    model = CUNet(TINY).eval()
    a, b = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        first = model(a)
        model(b)
        again = model(a)
        batched = model(torch.cat([a, b]))
    assert torch.equal(first, again)
    # Batch size changes which float32 convolution kernel runs, not the maths: agree to ~1e-5 of the output scale.
    torch.testing.assert_close(batched[:1], first, rtol=0, atol=1e-4 * float(first.abs().max()))


def _step(model: CUNet, x: torch.Tensor):
    outs = model(x)
    loss = sum((o**2).mean() for o in outs)
    loss.backward()
    return [o.detach() for o in outs], {n: p.grad.clone() for n, p in model.named_parameters()}


def test_memory_efficient_mode_same_outputs_gradients_and_running_stats():
    torch.manual_seed(0)
    plain = CUNet(dataclasses.replace(TINY, order=2)).train()
    eff = CUNet(dataclasses.replace(TINY, order=2, memory_efficient=True)).train()
    eff.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    out_p, grad_p = _step(plain, x)
    out_e, grad_e = _step(eff, x)
    # The recomputation repeats exactly the same float32 operations, so results agree to rounding; 1e-5 absolute
    # leaves room for a different summation order in a recomputed kernel.
    for a, b in zip(out_p, out_e):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    for name in grad_p:
        torch.testing.assert_close(grad_p[name], grad_e[name], rtol=1e-4, atol=1e-5, msg=name)
    # Running statistics moved exactly once (recomputation must not update them a second time).
    sp, se = plain.state_dict(), eff.state_dict()
    for name in sp:
        if "running" in name or "num_batches_tracked" in name:
            torch.testing.assert_close(sp[name], se[name], rtol=0, atol=1e-6, msg=name)


def test_memory_efficient_mode_is_plain_in_eval():
    eff = CUNet(dataclasses.replace(TINY, memory_efficient=True)).eval()
    plain = CUNet(TINY).eval()
    plain.load_state_dict(eff.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(eff(x), plain(x), rtol=0, atol=0)


def test_refinement_shares_weights_and_doubles_depth():
    for order in (0, 1):
        cfg = dataclasses.replace(TINY, layers=2, order=order, refine=True)
        model = CUNet(cfg)
        base = CUNet(dataclasses.replace(cfg, refine=False))
        extra = count_parameters(model) - count_parameters(base)
        assert extra == count_parameters(model.refine_bridge)  # exactly one extra adapter
        deep = CUNet(dataclasses.replace(cfg, layers=4, refine=False))
        assert count_parameters(model) < 0.6 * count_parameters(deep)
        outs = model.train()(torch.randn(2, 3, 64, 64))
        assert len(outs) == 2 * cfg.num_losses  # both passes supervised
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 5, 16, 16)


def test_refinement_second_pass_changes_the_output():
    model = CUNet(dataclasses.replace(TINY, layers=2, refine=True)).train()
    outs = model(torch.randn(2, 3, 64, 64))
    assert not torch.allclose(outs[1], outs[3])  # last head after pass 1 vs after pass 2


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(layers=2, order=2), "order 2 needs more than 2"),
        (dict(layers=2, order=5), "order 5"),
        (dict(layers=0), "layers"),
        (dict(layers=2, loss_num=3), "loss_num"),
        (dict(layers=2, loss_num=0), "loss_num"),
        (dict(input_size=100), "multiple of 64"),
        (dict(order=-1), "order"),
        (dict(num_landmarks=0), "num_landmarks"),
    ],
)
def test_bad_configs_are_clear_errors(kwargs, fragment):
    with pytest.raises(CunetError, match=fragment):
        CUNetConfig(**{"layers": 4, "order": 1, **kwargs})


def test_config_round_trip_and_unknown_keys():
    for cfg in VARIANTS.values():
        assert CUNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(CunetError, match="unknown CU-Net config keys"):
        CUNetConfig.from_dict({**TINY.to_dict(), "wings": 2})


def test_variants():
    assert VARIANTS["cunet-face-8"].layers == 8 and VARIANTS["cunet-face-8"].num_landmarks == 68
    assert VARIANTS["cunet-pose-16"].layers == 16 and VARIANTS["cunet-pose-16"].num_landmarks == 16
    assert VARIANTS["cunet-tiny"].input_size == 128


def test_summary_json_cli():
    out = subprocess.run(
        [sys.executable, "-m", "cunet", "summary", "--layer_num", "8", "--order", "1", "--landmarks", "16", "--json"],
        capture_output=True, text=True, check=True,
    )
    s = json.loads(out.stdout)
    assert s["params"] == 8_009_984
    assert s["size_mb"] == pytest.approx(8_009_984 * 4 / 1e6)
    assert s["supervised"] == list(range(8))
    assert 5 < s["gmacs"] < 20
    face = json.loads(
        subprocess.run([sys.executable, "-m", "cunet", "summary", "cunet-face-8", "--loss-num", "2", "--json"],
                       capture_output=True, text=True, check=True).stdout
    )
    assert face["supervised"] == [3, 7]


def test_summary_bad_config_is_one_line_error():
    r = subprocess.run([sys.executable, "-m", "cunet", "summary", "--layers", "2", "--order", "3"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "order 3" in r.stderr
    assert "Traceback" not in r.stderr


def test_summary_lists_full_precision_convs_compactly():
    from cunet.commands.summary import _full_precision

    heads8 = [f"heads.{i}.conv" for i in range(8)]
    assert _full_precision(["stem.0", *heads8]) == "stem.0, heads.*.conv (8), every BatchNorm"
    assert _full_precision(["stem.0", "heads.0.conv", "heads.1.conv"]) == (
        "stem.0, heads.0.conv, heads.1.conv, every BatchNorm")

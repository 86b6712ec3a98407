"""The low-bit recipe's parts (issue 24): heatmap distillation (`--teacher`), fine-tuning from a checkpoint
(`--init`), BatchNorm re-estimation (`--bn-reestimate`), and how a run records and re-checks its source files."""

from __future__ import annotations

import shutil

import pytest

from cunet.errors import CunetError

from .conftest import tiny_options

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_distill_loss_by_hand() -> None:
    from cunet.train.loss import distill_loss

    # One image, two points, 1x2 heatmaps; point 1 masked out. Head A only.
    out = torch.tensor([[[[0.5, 0.0]], [[9.0, 9.0]]]])
    target = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]])
    teacher = torch.tensor([[[[0.5, 0.5]], [[1.0, 1.0]]]])
    mask = torch.tensor([[1.0, 0.0]])
    # MSE over the 2 unmasked pixels: target ((0.5-1)^2 + 0) / 2 = 0.125; teacher (0 + 0.5^2) / 2 = 0.125.
    # With a second head equal to the target: target 0, teacher ((1-0.5)^2 + 0.5^2) / 2 = 0.25.
    assert distill_loss([out], target, teacher, mask, 0.25).item() == pytest.approx(0.75 * 0.125 + 0.25 * 0.125)
    both = distill_loss([out, target], target, teacher, mask, 0.25).item()
    assert both == pytest.approx(0.75 * (0.125 + 0.0) / 2 + 0.25 * (0.125 + 0.25) / 2)
    assert distill_loss([out], target, teacher, mask, 1.0).item() == pytest.approx(0.125)
    # No gradient flows into the teacher's maps.
    t = teacher.clone().requires_grad_(True)
    o = out.clone().requires_grad_(True)
    distill_loss([o], target, t, mask, 0.5).backward()
    assert t.grad is None and o.grad is not None


def _bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_bn_reestimation_changes_running_stats_and_nothing_else() -> None:
    from cunet.model import CUNet, CUNetConfig
    from cunet.model.quant import QuantConfig, apply_quantization
    from cunet.train.bn import reestimate_bn

    torch.manual_seed(0)
    model = apply_quantization(CUNet(CUNetConfig(layers=2, order=1, channels=16, growth=8, num_landmarks=4,
                                                 input_size=64)), QuantConfig(bits_w=1, bits_a=8))
    model.train()
    model(torch.rand(4, 3, 64, 64))  # every act_max and running stat moves away from its init
    model.eval()
    before = _bn_state(model)
    batches = [torch.rand(3, 3, 64, 64) * 2.0 for _ in range(2)]
    assert reestimate_bn(model, iter(batches)) == 2
    after = model.state_dict()
    stats = {k for k in after if k.endswith(("running_mean", "running_var"))}
    assert stats and all(not torch.equal(after[k], before[k]) for k in stats)
    for k in set(after) - stats:  # weights, act_max, num_batches_tracked
        assert torch.equal(after[k], before[k]), k
    assert not model.training and all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # The statistics are the average over the batches: the stem's BatchNorm sees conv(batch) directly.
    stem_conv, stem_bn = model.stem[0], model.stem[1]
    with torch.no_grad():
        means = [stem_conv(b).mean(dim=(0, 2, 3)) for b in batches]
    torch.testing.assert_close(stem_bn.running_mean, (means[0] + means[1]) / 2, rtol=1e-5, atol=1e-6)
    # An empty pass changes nothing.
    now = _bn_state(model)
    assert reestimate_bn(model, iter([])) == 0
    assert all(torch.equal(v, now[k]) for k, v in model.state_dict().items())


def test_init_loads_the_weights_and_refuses_another_config(tiny_run, tmp_path) -> None:
    from cunet.model import CUNet
    from cunet.model.checkpoint import load_checkpoint
    from cunet.model.quant import QuantConfig, apply_quantization
    from cunet.train.sources import load_init

    _, result = tiny_run
    ckpt = load_checkpoint(result.last)
    from cunet.model import CUNetConfig

    cfg = CUNetConfig.from_dict(ckpt["config"])
    model = apply_quantization(CUNet(cfg), QuantConfig(bits_w=1, bits_a=8))  # latent weights from FP32 ones
    load_init(model, result.last, "face")
    state = model.state_dict()
    for k, v in ckpt["model"].items():
        assert torch.equal(state[k], v), k
    with pytest.raises(CunetError, match="another model config: layers 2 \\(the run has 3\\)"):
        load_init(CUNet(CUNetConfig.from_dict({**ckpt["config"], "layers": 3})), result.last, "face")
    with pytest.raises(CunetError, match="for task 'face', the run trains 'pose'"):
        load_init(CUNet(cfg), result.last, "pose")


def test_a_run_from_init_starts_from_its_weights(tiny_run, tmp_path) -> None:
    """`train(init=...)` trains from the checkpoint's weights, not a random init: at lr 1e-9 one epoch moves no
    weight by more than 1e-5 (Adam moves a weight by about lr x the conv-lr scale (10) per step, a few steps here),
    while a fresh init differs from the trained run by far more (checked below). BatchNorm statistics are left out:
    they follow the batches whatever the lr."""
    from cunet.model.checkpoint import load_checkpoint
    from cunet.train.trainer import train

    opts, fp32 = tiny_run
    start = load_checkpoint(fp32.last)["model"]
    stats = ("running_mean", "running_var", "num_batches_tracked")
    weights = [k for k in start if not k.endswith(stats)]

    def farthest(run) -> float:
        got = load_checkpoint(run.last)["model"]
        return max(float((got[k] - start[k]).abs().max()) for k in weights)

    assert farthest(train(tiny_options(opts.data, tmp_path / "init", epochs=1, lr=1e-9, init=fp32.last))) < 1e-5
    assert farthest(train(tiny_options(opts.data, tmp_path / "fresh", epochs=1, lr=1e-9))) > 1e-2


def test_recipe_run_records_its_sources_and_resume_refuses_another(tiny_run, tmp_path) -> None:
    """A 1-bit run from --init with a --teacher and --bn-reestimate: it trains, its checkpoints name both files by
    sha256, and a resume with another teacher or init
    file (or with one the run did not have) is refused."""
    from cunet.io import sha256_file
    from cunet.model.checkpoint import load_checkpoint
    from cunet.train.trainer import train

    opts, fp32 = tiny_run
    recipe = dict(bits_w=1, bits_a=8, init=fp32.last, teacher=fp32.last, distill_weight=0.5, bn_reestimate=True)
    out = tmp_path / "w1"
    result = train(tiny_options(opts.data, out, epochs=1, **recipe))
    ckpt = load_checkpoint(result.last)
    sha = sha256_file(fp32.last)
    assert ckpt["sources"] == {"init": {"file": str(fp32.last), "sha256": sha},
                               "teacher": {"file": str(fp32.last), "sha256": sha}}
    assert ckpt["args"]["bn_reestimate"] is True and ckpt["args"]["distill_weight"] == 0.5
    # A resume with the same files (left out or repeated) continues; another file is refused.
    from cunet.model.checkpoint import model_from_checkpoint, save_checkpoint

    model, _ = model_from_checkpoint(fp32.last)  # the same model, one weight nudged: another file
    with torch.no_grad():
        model.stem[0].weight[0, 0, 0, 0] += 1e-3
    other = tmp_path / "other.pt"
    save_checkpoint(other, model, "face")
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for change, message in (({"teacher": other}, "not the teacher file the run started from"),
                            ({"init": other}, "not the init file the run started from")):
        with pytest.raises(CunetError, match=message):
            train(tiny_options(opts.data, copy, epochs=2, resume=True, **change))
    grown = train(tiny_options(opts.data, copy, epochs=2, resume=True))
    assert grown.epoch == 2 and load_checkpoint(grown.last)["sources"]["teacher"]["sha256"] == sha


def test_bn_reestimation_leaves_training_alone(tiny_run, tmp_path) -> None:
    """Two 1-bit runs with 8-bit (stochastically rounded) gradients, one re-estimating BatchNorm after each epoch:
    the same weights after 2 epochs (the re-estimation pass draws nothing from the RNG training uses), other
    running statistics. The plain run cannot be resumed with a teacher or with re-estimation."""
    from cunet.model.checkpoint import load_checkpoint
    from cunet.train.trainer import train

    opts, fp32 = tiny_run
    q = dict(bits_w=1, bits_a=8, bits_g=8, epochs=2)
    a = load_checkpoint(train(tiny_options(opts.data, tmp_path / "plain", **q)).last)["model"]
    b = load_checkpoint(train(tiny_options(opts.data, tmp_path / "bn", bn_reestimate=True, **q)).last)["model"]
    stats = [k for k in a if k.endswith(("running_mean", "running_var"))]
    for k in a:
        if k not in stats:
            assert torch.equal(a[k], b[k]), k
    assert all(not torch.equal(a[k], b[k]) for k in stats)
    with pytest.raises(CunetError, match="cannot resume with --teacher: the run started without one"):
        train(tiny_options(opts.data, tmp_path / "plain", epochs=3, resume=True, teacher=fp32.last))
    with pytest.raises(CunetError, match="different options: bn_reestimate True"):
        train(tiny_options(opts.data, tmp_path / "plain", epochs=3, resume=True, bn_reestimate=True))

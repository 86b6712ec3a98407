"""The trainer beyond the default face run: pose (PCKh@0.5 validation), the low-bit QAT hook, and CLI errors."""

from __future__ import annotations

import pytest

from .conftest import tiny_options


def test_pose_run_validates_with_pckh(poses, tmp_path, pckh_by_hand) -> None:
    import json

    from cunet.evaluate.accuracy import evaluate
    from cunet.model.checkpoint import load_checkpoint
    from cunet.train.trainer import train

    # "cunet-tiny" is a 68-point variant: the task's 16 joints replace its landmark count.
    result = train(tiny_options(poses, tmp_path / "pose", task="pose", epochs=1))
    assert result.metric_name == "pckh@0.5"
    ckpt = load_checkpoint(result.best)
    assert ckpt["task"] == "pose" and ckpt["config"]["num_landmarks"] == 16
    report = evaluate(result.best, poses, backend="torch", threads=1, save_predictions=tmp_path / "pred")
    assert report["pckh@0.5"] == pytest.approx(result.best_metric, abs=1e-9)
    # and that number is PCKh@0.5 of what the model predicts, recomputed in plain Python (tests/conftest.py)
    truth = json.loads((poses / "valid.json").read_text())
    pred = json.loads((tmp_path / "pred" / "valid.json").read_text())
    assert result.best_metric == pytest.approx(pckh_by_hand(truth, pred), abs=1e-9)


def test_low_bit_hook_stores_the_quant_config(faces, tmp_path) -> None:
    from cunet.model.quant import QuantConfig, quant_config_of
    from cunet.model.checkpoint import load_checkpoint, model_from_checkpoint
    from cunet.train.trainer import train

    result = train(tiny_options(faces, tmp_path / "q", epochs=1, bits_w=2, bits_a=8, bits_g=8))
    ckpt = load_checkpoint(result.last)
    assert ckpt["quant"] == QuantConfig(bits_w=2, bits_a=8, bits_g=8).to_dict()
    model, _ = model_from_checkpoint(result.last)
    assert quant_config_of(model) == QuantConfig(bits_w=2, bits_a=8, bits_g=8)


def test_quant_delay_trains_full_precision_first_and_resumes_across_the_switch(faces, tmp_path) -> None:
    """--quant-delay 1 of 3 epochs: epoch 1 is full precision (and no best.pt candidate), epochs 2-3 quantized; a
    run stopped after epoch 2 and resumed to 3 ends bit-identical to the uninterrupted one (one thread, CPU)."""
    import torch

    from cunet.model.checkpoint import load_checkpoint
    from cunet.train.trainer import train

    q = dict(bits_w=1, bits_a=8, bits_g=8, quant_delay=1)
    full = train(tiny_options(faces, tmp_path / "full", epochs=3, **q))
    assert [h["quantized"] for h in full.history] == [False, True, True]
    assert not full.history[0]["best"] and any(h["best"] for h in full.history[1:])
    assert load_checkpoint(full.best)["epoch"] >= 2

    train(tiny_options(faces, tmp_path / "resumed", epochs=2, **q))
    resumed = train(tiny_options(faces, tmp_path / "resumed", epochs=3, resume=True))  # the bits come from the run
    a, b = load_checkpoint(full.last), load_checkpoint(resumed.last)
    assert a["args"]["quant_delay"] == b["args"]["quant_delay"] == 1
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert [h["nme"] for h in a["history"]] == [h["nme"] for h in b["history"]]

    # The warm-up changed the result: the same run quantized from epoch 1 ends elsewhere.
    direct = load_checkpoint(train(tiny_options(faces, tmp_path / "direct", epochs=3, **{**q, "quant_delay": 0})).last)
    assert any(not torch.equal(v, direct["model"][k]) for k, v in a["model"].items())


@pytest.mark.parametrize(
    ("variant", "bits_w", "given", "expected"),
    [("cunet-tiny", None, None, 10.0), ("cunet-face-8", None, None, 1.0), ("cunet-face-8", 1, None, 10.0),
     ("cunet-face-8", 2, None, 10.0), ("cunet-face-8", 4, None, 1.0), ("cunet-tiny", 8, 3.0, 3.0),
     ("cunet-tiny", 1, 1.0, 1.0), ("cunet-face-8", None, 10.0, 10.0)],
)
def test_inner_conv_weights_train_at_the_conv_lr_scale(faces, tmp_path, variant, bits_w, given, expected):
    """The default is 10 for 1-2 bit weights (their signs must move) and for cunet-tiny's recipe, else 1."""
    import torch

    from cunet.model import CUNet, get_variant
    from cunet.model.quant import QuantConfig, QuantConv2d, apply_quantization
    from cunet.train.options import resolve_options
    from cunet.train.trainer import _optimizer, _param_groups

    opts = resolve_options(tiny_options(faces, tmp_path, variant=variant, bits_w=bits_w, conv_lr_scale=given), None)
    assert opts.conv_lr_scale == expected
    model = CUNet(get_variant("cunet-tiny", input_size=64))
    if bits_w is not None:
        apply_quantization(model, QuantConfig(bits_w=bits_w))
    optimizer = _optimizer(opts, _param_groups(opts, model))
    groups = optimizer.param_groups
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    if expected == 1.0:
        assert len(groups) == 1 and groups[0]["lr"] == opts.lr
        return
    edge = {"stem.0", "heads.0.conv", "heads.1.conv"}
    inner = {id(m.weight) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and n not in edge}
    if bits_w is not None:  # the inner convs are exactly the quantized ones
        assert inner == {id(m.weight) for m in model.modules() if isinstance(m, QuantConv2d)}
    # A 1-bit run recorded before the option existed resumes as it trained: every weight at lr.
    old = {k: v for k, v in opts.to_dict().items() if k != "conv_lr_scale"}
    again = tiny_options(faces, tmp_path, variant=variant, bits_w=bits_w, resume=True)
    assert resolve_options(again, old).conv_lr_scale == 1.0
    assert [g["lr"] for g in groups] == [opts.lr, opts.lr * expected]
    assert {id(p) for p in groups[1]["params"]} == inner and not inner & {id(p) for p in groups[0]["params"]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{missing}"], "{missing}: dataset folder does not exist"),
        (["--data", "{faces}", "--input-size", "100"], "input_size must be a multiple of 64"),
        (["--data", "{faces}", "--variant", "cunet-huge"], "unknown variant 'cunet-huge'"),
        (["--data", "{faces}", "--bits-w", "9"], "bits_w must be an integer in 1..8"),
        (["--data", "{faces}", "--quant-delay", "2"], "quant_delay delays quantization: it needs --bits-w"),
        (["--data", "{faces}", "--bits-w", "1", "--epochs", "3", "--quant-delay", "3"],
         "quant_delay (3) must be smaller than epochs (3)"),
        (["--data", "{faces}", "--bits-w", "1", "--quant-delay", "15"], "quant_delay (15) must be smaller than epochs (15)"),
    ],
)
def test_cli_errors_are_one_line(faces, tmp_path, capsys, args, message) -> None:
    from cunet.cli import main

    fill = {"missing": str(tmp_path / "nope"), "faces": str(faces)}
    argv = ["train", "--task", "face", "--out", str(tmp_path / "run"), *(a.format(**fill) for a in args)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.format(**fill) in err and err.count("\n") == 1, err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_epoch_sampler_splits_one_permutation_over_ranks() -> None:
    from cunet.train.trainer import EpochSampler

    ranks = [EpochSampler(19, seed=5, rank=r, world=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(3)
    parts = [list(s) for s in ranks]
    assert [len(p) for p in parts] == [10, 10]  # padded by repeating one index, as DistributedSampler does
    assert sorted(set(parts[0]) | set(parts[1])) == list(range(19))
    single = EpochSampler(19, seed=5)
    single.set_epoch(3)
    order = list(single)
    assert parts[0] == order[0::2] and parts[1] == (order + order[:1])[1::2]  # the same permutation, interleaved
    single.set_epoch(4)
    assert list(single) != order and sorted(single) == list(range(19))

"""A finished run: its files, checkpoint contents, best/last logic, and a validation number `cunet evaluate` repeats."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch


def test_run_writes_logs_that_match_the_result(tiny_run) -> None:
    opts, result = tiny_run
    out = result.last.parent
    assert result.metric_name == "nme" and result.epoch == 3 and len(result.history) == 3
    assert json.loads((out / "history.json").read_text()) == result.history
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for row, h in zip(rows, result.history):
        assert float(row["nme"]) == pytest.approx(h["nme"], rel=1e-5)
        assert float(row["train_loss"]) == pytest.approx(h["train_loss"], rel=1e-5)
    assert all(math.isfinite(h["train_loss"]) and 0 < h["nme"] for h in result.history)
    assert result.seconds == pytest.approx(sum(h["seconds"] for h in result.history))


def test_checkpoint_holds_everything_to_resume(tiny_run) -> None:
    from cunet.train.trainer import RECIPES
    from cunet.model.checkpoint import load_checkpoint, model_from_checkpoint

    opts, result = tiny_run
    ckpt = load_checkpoint(result.last)  # weights_only=True: no pickled code in the file
    assert ckpt["task"] == "face" and ckpt["epoch"] == 3
    assert ckpt["step"] == 3 * (19 // 4)  # 19 training images, batch 4, the short last batch dropped
    assert ckpt["config"]["input_size"] == 64 and ckpt["config"]["num_landmarks"] == 68
    assert set(ckpt["optimizer"]) == {"state", "param_groups"} and ckpt["optimizer"]["state"]
    assert ckpt["scheduler"]["last_epoch"] == 3
    assert set(ckpt["rng"]) >= {"torch", "numpy", "python"}
    assert ckpt["quant"] is None
    assert ckpt["history"] == result.history
    args = ckpt["args"]
    # Resolved values, not the Nones of the recipe: the runtime reads the training sigma from here.
    assert args["sigma"] == RECIPES["cunet-tiny"].sigma_64 * 16 / 64
    assert args["lr"] == 2e-3 and args["optimizer"] == "adam"
    assert args["epochs"] == 3 and args["batch_size"] == 4 and args["milestones"] == [2]
    model, _ = model_from_checkpoint(result.last)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k])


def test_best_is_the_best_validated_epoch_and_last_the_latest(tiny_run) -> None:
    from cunet.model.checkpoint import load_checkpoint

    _, result = tiny_run
    nmes = [h["nme"] for h in result.history]
    best_epoch = int(np.argmin(nmes)) + 1
    best = load_checkpoint(result.best)
    assert best["epoch"] == best_epoch and best["best_metric"] == pytest.approx(min(nmes))
    assert result.best_metric == pytest.approx(min(nmes))
    # An epoch is flagged best exactly when it beats every earlier one.
    assert [h["best"] for h in result.history] == [n < min(nmes[:i], default=math.inf) for i, n in enumerate(nmes)]
    if best_epoch != 3:
        last = load_checkpoint(result.last)
        assert any(not torch.equal(v, last["model"][k]) for k, v in best["model"].items())


def test_validation_metric_is_what_cunet_evaluate_reports(tiny_run) -> None:
    from cunet.evaluate.accuracy import evaluate

    opts, result = tiny_run
    report = evaluate(result.best, opts.data, backend="torch", threads=1)
    # Same crops, decoder (DARK with the recorded sigma) and metric code; only float summation order may differ.
    assert report["nme"] == pytest.approx(result.best_metric, rel=1e-6)

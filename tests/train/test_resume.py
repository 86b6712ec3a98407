"""Resume: a `cunet train` killed with SIGKILL and resumed ends exactly where an uninterrupted run ends; a run
stopped by its time budget and resumed likewise; resuming with other options is a clear error."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from cunet.errors import CunetError

from .conftest import tiny_options

EPOCHS = 4


def _cli(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cunet", "train", "--task", "face", "--data", str(data), "--out", str(out),
            "--threads", "1", *extra]


def _same_run(a: dict, b: dict) -> None:
    """Bit-identical weights, optimiser state and history: same seed, same thread count, deterministic CPU kernels
    (the tolerance is zero; a different thread count or machine could change float summation order)."""
    assert a["epoch"] == b["epoch"] and a["step"] == b["step"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for i, state in a["optimizer"]["state"].items():
        for k, v in state.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(b["optimizer"]["state"][i][k])), (i, k)
    strip = [{k: v for k, v in h.items() if k not in ("seconds", "elapsed")} for h in a["history"]]
    assert strip == [{k: v for k, v in h.items() if k not in ("seconds", "elapsed")} for h in b["history"]]


def test_sigkill_then_resume_equals_an_uninterrupted_run(faces, tmp_path, capsys) -> None:
    """A real `cunet train` process is SIGKILLed once its first checkpoint is on disk (usually mid-epoch 2),
    then resumed; meanwhile the same run goes uninterrupted in this process through the same CLI code."""
    from cunet.cli import main
    from cunet.model.checkpoint import load_checkpoint

    opts = ["--epochs", str(EPOCHS), "--batch-size", "4", "--input-size", "64", "--lr", "2e-3", "--optimizer", "adam"]
    killed = subprocess.Popen(_cli(faces, tmp_path / "killed", *opts), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    last = tmp_path / "killed" / "last.pt"

    def kill_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 120
        while not last.exists() and killed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        killed.send_signal(signal.SIGKILL)

    watcher = threading.Thread(target=kill_after_first_checkpoint)
    watcher.start()
    try:
        assert main(_cli(faces, tmp_path / "whole", *opts, "--json")[3:]) == 0
    finally:
        watcher.join()
    _, killed_err = killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {killed_err[-300:]}"
    at_kill = load_checkpoint(last)["epoch"]
    assert 1 <= at_kill < EPOCHS
    whole = capsys.readouterr()

    # --json: exactly one JSON object on stdout; the per-epoch lines go to stderr.
    summary = json.loads(whole.out)
    assert summary["metric_name"] == "nme" and summary["epoch"] == EPOCHS and len(summary["history"]) == EPOCHS
    assert Path(summary["best"]).is_file() and Path(summary["last"]) == tmp_path / "whole" / "last.pt"
    assert sum(line.startswith("epoch ") for line in whole.err.splitlines()) == EPOCHS

    # Resume with no run options at all: they come from the run itself.
    assert main(_cli(faces, tmp_path / "killed", "--resume", "--json")[3:]) == 0
    resumed = capsys.readouterr()
    assert f"resuming {last} after epoch {at_kill}/{EPOCHS}" in resumed.err
    assert json.loads(resumed.out)["history"] == json.loads((tmp_path / "killed" / "history.json").read_text())

    _same_run(load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(last))
    _same_run(load_checkpoint(tmp_path / "whole" / "best.pt"), load_checkpoint(tmp_path / "killed" / "best.pt"))


def test_budget_stop_then_resume_equals_the_uninterrupted_run(tiny_run, tmp_path) -> None:
    from cunet.model.checkpoint import load_checkpoint
    from cunet.train.trainer import train

    opts, whole = tiny_run
    out = tmp_path / "run"
    first = train(tiny_options(opts.data, out, max_minutes=1e-6))  # crossed by the first epoch
    assert first.epoch == 1 and len(first.history) == 1
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    rest = train(tiny_options(opts.data, out, resume=True))
    assert rest.epoch == 3 and rest.best_metric == whole.best_metric
    _same_run(load_checkpoint(whole.last), load_checkpoint(rest.last))
    # A finished run resumes to nothing: the same result, no new epoch.
    again = train(tiny_options(opts.data, out, resume=True))
    assert again.history == rest.history and again.epoch == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"overrides": {"input_size": 128}}, "different model: input_size 128 (the run has 64)"),
        ({"overrides": {"layers": 3}, "lr": None}, "different model: layers 3 (the run has 2)"),
        ({"lr": 1e-3}, "different options: lr 0.001 (the run has 0.002)"),
        ({"optimizer": "rmsprop", "sigma": 2.0}, "different options: sigma 2.0 (the run has 0.75); optimizer"),
        ({"bits_w": 2}, "different low-bit settings"),
    ],
)
def test_resume_with_other_options_is_a_clear_error(tiny_run, tmp_path, change, message) -> None:
    from cunet.train.trainer import train

    opts, result = tiny_run
    out = tmp_path / "copy"
    shutil.copytree(result.last.parent, out)
    before = (out / "last.pt").read_bytes()
    with pytest.raises(CunetError, match=f"{out / 'last.pt'}: cannot resume with") as info:
        train(tiny_options(opts.data, out, resume=True, **change))
    assert message.split(";")[0] in str(info.value)
    assert (out / "last.pt").read_bytes() == before


def test_run_folder_rules(tiny_run, tmp_path) -> None:
    from cunet.train.trainer import train

    opts, result = tiny_run
    with pytest.raises(CunetError, match="already holds a run .*--resume"):
        train(tiny_options(opts.data, result.last.parent))
    with pytest.raises(CunetError, match="nothing to resume"):
        train(tiny_options(opts.data, tmp_path / "empty", resume=True))
    with pytest.raises(CunetError, match="trains task 'face', not 'pose'"):
        train(tiny_options(opts.data, result.last.parent, resume=True, task="pose"))

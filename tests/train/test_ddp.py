"""DistributedDataParallel: `torchrun --nproc_per_node 2 -m cunet train` on CPU (gloo) trains one epoch and rank 0
writes a checkpoint that loads."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import TINY


def test_torchrun_two_cpu_processes(faces, tmp_path) -> None:
    from cunet.model.checkpoint import load_checkpoint, model_from_checkpoint

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "cunet", "train", "--task", "face", "--data", str(faces), "--out", str(out), "--epochs", "1",
           "--batch-size", "4", "--input-size", str(TINY["input_size"]), "--threads", "1", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)  # one object: only rank 0 reports
    assert summary["epoch"] == 1 and len(summary["history"]) == 1
    assert "2 processes" in proc.stderr and proc.stderr.count("epoch 1/1 ") == 1
    ckpt = load_checkpoint(out / "last.pt")
    # 19 images over 2 ranks: 10 each (one repeated to even them out), 2 per rank per step, so 5 steps.
    assert ckpt["epoch"] == 1 and ckpt["step"] == 5
    model, _ = model_from_checkpoint(out / "best.pt")
    assert model.cfg.input_size == TINY["input_size"]
    assert not any(k.startswith("module.") for k in ckpt["model"])  # saved unwrapped, loadable without DDP

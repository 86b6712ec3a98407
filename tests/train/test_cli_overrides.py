"""`cunet train`'s model overrides reach the checkpoint: --refine (iterative refinement) and --memory-efficient
(whose run also gets PyTorch's huge pages for CPU tensors, set before torch loads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_refine_and_memory_efficient_overrides_train_and_are_saved(faces: Path, tmp_path: Path) -> None:
    from cunet.model.checkpoint import model_from_checkpoint

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "cunet", "train", "--task", "face", "--data", str(faces), "--out", str(out),
           "--variant", "cunet-tiny", "--input-size", "64", "--epochs", "1", "--batch-size", "4", "--threads", "1",
           "--refine", "--memory-efficient", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("THP_MEM_ALLOC_ENABLE", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["epoch"] == 1
    model, _ = model_from_checkpoint(out / "last.pt")
    assert model.cfg.refine and model.cfg.memory_efficient
    assert model.refine_bridge is not None  # the second pass's extra adapter exists and was saved

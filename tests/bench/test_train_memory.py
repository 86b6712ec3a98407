"""bench/train_memory.py on a tiny model: both modes measured in their own processes with the same losses, the memory
definition written out, and the GPU part skipped with a reason here (no CUDA); --device cuda is then an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--layers", "2", "--size", "64", "--batch", "2", "--steps", "1", "--threads", "1"]


def _bench(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "bench/train_memory.py", *TINY, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the GPU part would run")
def test_both_modes_measured_and_the_gpu_part_skipped_without_cuda(tmp_path):
    out = tmp_path / "memory.json"
    proc = _bench("--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["definition"].startswith("peak RSS over the warm-up and timed steps minus RSS before the first")
    assert result["cuda"] == {"skipped": "no CUDA device"}
    for mode in ("plain", "efficient"):
        row = result["modes"][mode]
        assert row["delta_mb"] > row["fixed_mb"] > 0  # the growth holds gradients and Adam state, and more
        assert len(result["runs"][mode][0]["step_peaks_mb"]) == 2  # warm-up + one timed step
    assert result["loss_max_relative_difference"] < 1e-6  # the same training step in both modes
    assert result["memory_saving"] == pytest.approx(
        1 - result["modes"]["efficient"]["delta_mb"] / result["modes"]["plain"]["delta_mb"])
    assert "GPU: skipped (no CUDA device)" in proc.stderr and "memory: peak RSS" in proc.stderr

    refused = _bench("--device", "cuda", "--out", str(tmp_path / "cuda.json"))
    assert refused.returncode != 0
    assert refused.stderr.strip() == "error: --device cuda, but torch sees no CUDA device here"
    assert not (tmp_path / "cuda.json").exists()

"""bench/gpu_check.py: on this GPU-less machine it exits 0 with every GPU row skipped, one line each saying why; on
the fake GPU (tests/fakes) its engine rows build and run FP32/FP16/INT8 engines and pass their tolerances."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GPU_ROWS = {"torch-cuda", "ort-cuda", "ort-trt", "trt-fp32", "trt-fp16", "trt-int8", "profile-device", "doctor-gpu",
            "manifest-device"}


def test_without_a_gpu_every_gpu_row_is_skipped_with_a_reason(tmp_path):
    from cunet.runtime.base import cuda_device_available

    if cuda_device_available():
        pytest.skip("this machine has a CUDA device: the rows would run")
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--out", str(out), "--iters", "2"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["row"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == GPU_ROWS
    for name in GPU_ROWS:
        assert rows[name]["status"] == "skip" and rows[name]["why"].startswith("no CUDA device visible"), rows[name]
        assert "\n" not in rows[name]["why"]
    table = [line for line in proc.stdout.splitlines() if line.split() and line.split()[0] in GPU_ROWS]
    assert len(table) == len(GPU_ROWS) and all(" skip " in line for line in table)


@pytest.mark.slow
@pytest.mark.parametrize("fake_gpu", [11], indirect=True)  # one version: the build paths are tested per version
def test_engine_rows_on_the_fake_gpu(fake_gpu, tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "gpu.json"
    module.main(["--out", str(out), "--iters", "1"])
    rows = {r["row"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["ort-cpu (reference)"]["status"] == "ok"
    for name in ("trt-fp32", "trt-fp16", "trt-int8"):
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["provider"] == "tensorrt-cuda:0"
    # The fake runs the engine's ONNX bytes on the CPU provider: FP32 is the reference model itself, so its error
    # of 0 proves only the plumbing; that the tolerance can fail is shown below.
    assert rows["trt-fp32"]["rel_err"] == 0.0
    assert rows["manifest-device"]["status"] == "ok" and "RTX 4090" in rows["manifest-device"]["why"]
    # An engine whose kernels compute something else (every heatmap shifted by its range) must fail every engine
    # row with the error named, and the check must exit 1 (issue 23, item 10: the comparison can fail).
    fake_gpu.state.fail.add("wrong_output")
    assert module.main(["--out", str(tmp_path / "wrong.json"), "--iters", "1"]) == 1
    rows = {r["row"]: r for r in json.loads((tmp_path / "wrong.json").read_text())["rows"]}
    for name in ("trt-fp32", "trt-fp16", "trt-int8"):
        assert rows[name]["status"] == "fail" and rows[name]["rel_err"] > rows[name]["tolerance"], rows[name]
        assert rows[name]["why"].startswith("relative heatmap error")

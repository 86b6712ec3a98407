"""`cunet bench` on CPU: the files, their keys, the rows this machine can build, and `--max-drop` as CI uses it."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from cunet.compile.tensorrt import unavailable_reason
from cunet.errors import CunetError
from cunet.pipeline.bench import ROW_KEYS, BenchOptions, budget_drop, run_bench

CPU_ROWS = ("pytorch-fp32", "onnx-fp32", "onnx-fp16", "onnx-int8-cpu", "onnx-int8-tensorrt")
OPENVINO_ROWS = ("openvino-fp32", "openvino-int8", "openvino-int8-tensorrt")
ENGINE_ROWS = ("tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8")


def _rows(run) -> dict[str, dict]:
    return {r["artifact"]: r for r in run.result.rows}


def test_report_files_and_keys(bench_run):
    res = bench_run.result
    doc = json.loads((bench_run.report / "bench.json").read_text())
    assert set(doc) >= {"task", "metric", "checkpoint", "reference", "max_drop", "exit_code", "settings",
                        "environment", "rows"}
    assert (doc["task"], doc["metric"], doc["reference"], doc["exit_code"]) == ("face", "nme", "onnx-fp32", 0)
    assert res.exit_code == 0 and res.metric_name == "nme"
    assert [r["artifact"] for r in doc["rows"]] == [*CPU_ROWS, *OPENVINO_ROWS, *ENGINE_ROWS]
    assert all(tuple(r) == ROW_KEYS for r in doc["rows"])
    with open(bench_run.report / "bench.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == ROW_KEYS and [r["artifact"] for r in table] == [r["artifact"] for r in doc["rows"]]
    png = (bench_run.report / "accuracy_latency.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not list(bench_run.report.glob(".*.tmp-*"))  # atomic writes leave no temporary files


def test_cpu_rows_are_built_scored_and_timed(bench_run):
    rows = _rows(bench_run)
    for name in CPU_ROWS:
        r = rows[name]
        assert r["status"] == "ok" and r["reason"] is None, (name, r["reason"])
        assert r["metric"] == "nme" and math.isfinite(r["value"]) and r["nonfinite"] == 0
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["throughput"] > 0 and r["size_mb"] > 0
        # every CPU row ran on the CPU (the PyTorch row too, even where a GPU is visible) and says so
        assert r["device"] == "cpu" and r["provider"] in ("torch-cpu", "CPUExecutionProvider")
        assert r["peak_mb"] == r["run_peak_mb"] and r["device_peak_mb"] is None
    assert rows["onnx-fp32"]["delta"] == 0.0
    # ORT and PyTorch convolutions differ by float rounding (~1e-5 of the heatmaps), which moves a decoded point by
    # far less than 0.01 NME points; a wrong graph would move points by pixels.
    assert abs(rows["pytorch-fp32"]["delta"]) < 0.01
    # int8 weights are a quarter of float32's: both INT8 files are well under the FP32 file
    for name in ("onnx-int8-cpu", "onnx-int8-tensorrt"):
        assert rows[name]["size_mb"] < 0.6 * rows["onnx-fp32"]["size_mb"]
    assert rows["onnx-fp16"]["size_mb"] < 0.6 * rows["onnx-fp32"]["size_mb"]


def test_memory_figures_are_each_artifacts_own(bench_run):
    """Each artifact is profiled in a fresh process, and only the PyTorch row needs PyTorch: its load peak holds
    the torch import (hundreds of MB) that an ONNX row's must not. A profile that probed CUDA through torch, or ran
    in the bench process, would give the ONNX rows the same figure (they had 400 MB on main: issue 23, item 4)."""
    rows = _rows(bench_run)
    doc = json.loads((bench_run.report / "bench.json").read_text())
    assert set(doc["memory_definitions"]) == {"load_peak_mb", "run_peak_mb", "device_peak_mb", "peak_mb"}
    torch_row, onnx_row = rows["pytorch-fp32"], rows["onnx-fp32"]
    assert torch_row["load_peak_mb"] > onnx_row["load_peak_mb"] + 100
    for name in CPU_ROWS:  # the run figure is what the process holds while serving: the loaded model stays
        r = rows[name]
        assert r["run_peak_mb"] > 0.5 * r["load_peak_mb"], (name, r["load_peak_mb"], r["run_peak_mb"])


def test_openvino_rows_are_built_scored_and_timed(bench_run):
    pytest.importorskip("nncf")
    rows = _rows(bench_run)
    for name in OPENVINO_ROWS:
        r = rows[name]
        assert r["status"] == "ok" and r["reason"] is None, (name, r["reason"])
        assert r["backend"] == "openvino" and math.isfinite(r["value"]) and 0 < r["p50_ms"] <= r["p99_ms"]
    # The same FP32 graph on two runtimes: float rounding only (see tests/runtime/test_ov_backend.py).
    assert abs(rows["openvino-fp32"]["delta"]) < 0.01
    ir = bench_run.work / "model.int8-openvino.xml"
    assert rows["openvino-int8"]["path"] == str(ir) and ir.with_suffix(".bin").is_file()
    assert rows["openvino-int8"]["size_mb"] * 1e6 == ir.stat().st_size + ir.with_suffix(".bin").stat().st_size
    assert rows["openvino-int8-tensorrt"]["path"] == rows["onnx-int8-tensorrt"]["path"]


@pytest.mark.skipif(unavailable_reason() is None, reason="TensorRT and a GPU are present")
def test_engine_rows_are_skipped_with_the_reason(bench_run):
    for name in ENGINE_ROWS:
        r = _rows(bench_run)[name]
        assert r["status"] == "skipped" and r["reason"] == f"no TensorRT/GPU: {unavailable_reason()}"
        assert r["value"] is None and r["p50_ms"] is None
        assert name not in bench_run.result.per_image


def test_values_are_what_the_saved_predictions_score(bench_run):
    from cunet.evaluate.scoring import score_face

    rows = _rows(bench_run)
    for name in CPU_ROWS:
        errors = bench_run.result.per_image[name]
        n_test = len(list((bench_run.data / "test").rglob("*.pts")))
        assert errors.shape == (n_test,)
        assert rows[name]["value"] == pytest.approx(100 * float(np.mean(errors)), rel=1e-12)
        # `cunet metrics` on the predictions bench wrote gives the same number
        rescored = score_face(bench_run.data, bench_run.work / "predictions" / name)["nme"]
        assert rescored == pytest.approx(rows[name]["value"], rel=1e-12)


def test_max_drop_exceeded_exits_1_and_marks_only_the_rows_over_budget(bench_run, tmp_path):
    first = _rows(bench_run)
    drops = {n: budget_drop("nme", first[n]["delta"]) for n in CPU_ROWS if n != "onnx-fp32"}
    lo, hi = min(drops.values()), max(drops.values())
    # Between the smallest and the largest real drop: some rows pass, at least one fails. If every drop were the
    # same, a budget just below it fails them all.
    budget = (lo + hi) / 2 if hi - lo > 1e-6 else lo - 1e-6
    report = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "cunet", "bench", str(bench_run.checkpoint), "--data", str(bench_run.data),
         "--report", str(report), "--work", str(bench_run.work), "--quick", "--threads", "1",
         "--max-drop", repr(budget), "--json"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert out["exit_code"] == 1 and json.loads((report / "bench.json").read_text())["exit_code"] == 1
    rows = {r["artifact"]: r for r in out["rows"]}
    assert all(rows[n]["reused"] for n in CPU_ROWS if n != "pytorch-fp32")  # built once, by the first run
    for name in drops:
        lost = budget_drop("nme", rows[name]["delta"])
        if lost > budget:
            assert rows[name]["status"] == "failed validation" and "--max-drop" in rows[name]["reason"]
        else:
            assert rows[name]["status"] == "ok"
    assert any(budget_drop("nme", rows[n]["delta"]) > budget for n in drops)
    assert rows["onnx-fp32"]["status"] == "ok"  # the reference itself is never over budget
    assert "lost more than --max-drop" in proc.stderr


def test_budget_direction():
    assert budget_drop("nme", 0.5) == 0.5  # NME up: worse
    assert budget_drop("pckh@0.5", -2.0) == 2.0  # PCKh down: worse


@pytest.mark.parametrize("kwargs, words", [
    ({"threads": 0}, "at least 1"), ({"batch": 0}, "at least 1"), ({"iters": 0}, "iters"),
    ({"max_drop": float("nan")}, "finite"),
])
def test_bad_options(kwargs, words):
    with pytest.raises(CunetError, match=words):
        BenchOptions(checkpoint="x.pt", data=".", **kwargs)


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(CunetError, match="no such checkpoint file"):
        run_bench(BenchOptions(checkpoint=tmp_path / "none.pt", data=tmp_path, report=tmp_path / "r", progress=False))

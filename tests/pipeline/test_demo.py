"""`cunet demo --quick` end to end as a real subprocess: every stage, the report folder, reuse and resume.

The quick demo (tiny data, one epoch, a few timing runs) is built once and then run again twice on the same folder,
inside ONE test: the checks depend on each other's order, and pytest-xdist would otherwise build the demo once per
worker. Each check is a helper named for what it guards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from cunet.pipeline.demo import _budget, _pick_examples  # noqa: E402

STAGES = ("data", "train", "bench", "examples", "report")
TIMEOUT = 300


def _demo(out: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cunet", "demo", "--quick", "--out", str(out), "--json", *extra],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env)
    return proc, time.perf_counter() - start


def test_quick_demo_end_to_end_then_reuse_and_resume(tmp_path):
    out = tmp_path / "quick"
    proc, seconds = _demo(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    built = out, proc, seconds
    check_every_stage_ran(built)
    check_report_folder(built)
    check_rerun_reuses_every_stage(built)
    check_interrupted_training_resumes(built)


def check_every_stage_ran(built):
    out, proc, _ = built
    result = json.loads(proc.stdout)  # --json: exactly one JSON object on stdout
    assert [s["stage"] for s in result["stages"]] == list(STAGES)
    assert not any(s["reused"] for s in result["stages"])
    for i, stage in enumerate(STAGES, 1):
        assert f"[{i}/5] {stage}:" in proc.stderr
    rows = {r["artifact"]: r for r in result["rows"]}
    for name in ("pytorch-fp32", "onnx-fp32", "onnx-int8-cpu", "onnx-int8-tensorrt"):
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["value"] > 0 and rows[name]["p50_ms"] > 0 and Path(rows[name]["path"]).is_file()
    assert rows["onnx-fp32"]["delta"] == 0
    if not any(r["status"] == "ok" for n, r in rows.items() if n.startswith("tensorrt")):
        assert all(r["status"] == "skipped" and r["reason"] for n, r in rows.items() if n.startswith("tensorrt"))
    assert result["budget"]["max_drop"] is None  # --quick states no accuracy budget
    assert result["exit_code"] == 0
    assert (out / "run" / "best.pt").is_file() and (out / "data" / "test").is_dir()


def _png(path: Path) -> tuple[int, int]:
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable picture"
    assert image.std() > 5, f"{path} is blank"
    return image.shape[:2]


def check_report_folder(built):
    out, proc, _ = built
    report = out / "report"
    doc = json.loads((report / "report.json").read_text())
    bench = json.loads((report / "bench.json").read_text())
    assert doc["rows"] == bench["rows"] and doc["metric"] == "nme" and doc["task"] == "face"
    assert {"settings", "environment", "stages", "training", "pictures", "examples", "budget"} <= doc.keys()
    assert doc["settings"]["optimizer"] and doc["settings"]["lr"]  # the trainer's recipe values, not None
    assert doc["environment"]["onnxruntime"] and doc["training"]["epochs"] == 1
    assert [s["stage"] for s in doc["stages"]] == list(STAGES)
    md = (report / "report.md").read_text()
    for heading in ("Every artifact", "Accuracy budget", "Pictures", "Training", "Settings", "Environment",
                    "Time per stage"):
        assert f"## {heading}" in md
    for r in doc["rows"]:
        assert re.search(rf"^\| {re.escape(r['artifact'])} \| .* \| {re.escape(r['status'])} \|", md, re.M)
    links = set(re.findall(r"\]\(([^)]+)\)", md))
    assert {"ced.png", "accuracy_latency.png", "report.json", "bench.json", "bench.csv"} <= links
    for link in links:
        assert (report / link).is_file(), f"report.md links to a missing {link}"
    assert _png(report / "ced.png")[1] > 300 and _png(report / "accuracy_latency.png")[1] > 300
    examples = doc["examples"]
    assert [e["artifact"] for e in examples][0] == "onnx-fp32" and "int8" in examples[1]["artifact"]
    n_test = len(list((out / "data" / "test").rglob("*.png")))
    for e in examples:
        h, w = _png(report / e["png"])
        tiles = min(8, n_test)
        assert len(e["errors"]) == tiles and w == 256 * min(4, tiles) and h == 30 + 256 * -(-tiles // 4)
    assert (report / "bench.csv").read_text().splitlines()[0].startswith("artifact,format,precision")


def check_rerun_reuses_every_stage(built):
    out, _, first = built
    before = {p: p.stat().st_mtime_ns for p in (out / "report").iterdir()}
    proc, seconds = _demo(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert all(s["reused"] for s in result["stages"])
    assert proc.stderr.count("      reused (") == 5
    assert seconds < first / 3, f"re-run took {seconds:.1f} s, the first run {first:.1f} s"
    assert {p: p.stat().st_mtime_ns for p in (out / "report").iterdir()} == before  # nothing rewritten


def check_interrupted_training_resumes(built):
    """A run whose stamp says training did not finish resumes from last.pt (not from scratch); the trainer finds
    the run complete, so the checkpoint, and therefore every artifact, stays valid and is reused."""
    out, _, _ = built
    stamp_file = out / "run" / ".demo-stamp.json"
    stamp = json.loads(stamp_file.read_text())
    best = (out / "run" / "best.pt").read_bytes()
    stamp_file.write_text(json.dumps({**stamp, "finished": False}))
    proc, _ = _demo(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[2/5] train: resuming the interrupted run of cunet-tiny" in proc.stderr
    assert (out / "run" / "best.pt").read_bytes() == best
    stages = {s["stage"]: s["reused"] for s in json.loads(proc.stdout)["stages"]}
    assert stages == {"data": True, "train": False, "bench": True, "examples": True, "report": False}
    assert json.loads(stamp_file.read_text())["finished"] is True


def test_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    proc = subprocess.run([sys.executable, "-m", "cunet", "demo", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"error: {tmp_path}: folder is not empty and was not made by `cunet demo`; "
                                   "choose another --out")
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def _row(name: str, precision: str, value: float | None, delta: float | None, status: str = "ok") -> dict:
    fmt = "pt" if name.startswith("pytorch") else "onnx"
    return {"artifact": name, "precision": precision, "format": fmt, "status": status, "value": value,
            "delta": delta, "path": f"/m/{name}.{fmt}"}


def test_budget_counts_lost_accuracy_in_the_metric_direction():
    rows = [_row("onnx-fp32", "fp32", 5.0, 0.0), _row("int8-a", "int8", 5.3, 0.3), _row("int8-b", "int8", 5.9, 0.9)]
    b = _budget(rows, "nme", 1.0)
    assert (b["worst"], b["worst_drop"], b["within"]) == ("int8-b", pytest.approx(0.9), True)
    assert _budget(rows, "nme", 0.5)["within"] is False
    pose = [_row("onnx-fp32", "fp32", 80.0, 0.0), _row("int8-a", "int8", 74.0, -6.0, "failed validation"),
            _row("int8-b", "int8", 81.0, 1.0)]
    b = _budget(pose, "pckh@0.5", 5.0)  # PCKh falling 6 points is a loss of 6; a row over budget still counts
    assert (b["worst"], b["worst_drop"], b["within"]) == ("int8-a", pytest.approx(6.0), False)
    assert _budget([_row("onnx-fp32", "fp32", 5.0, 0.0)], "nme", 1.0)["within"] is True


def test_pictures_compare_fp32_with_the_most_accurate_int8_that_ran():
    rows = [_row("pytorch-fp32", "fp32", 5.0, 0.0), _row("onnx-fp32", "fp32", 5.0, 0.0),
            _row("int8-a", "int8", 5.6, 0.6), _row("int8-b", "int8", 5.2, 0.2), _row("int8-c", "int8", None, None)]
    assert [r["artifact"] for r in _pick_examples(rows, "nme")] == ["onnx-fp32", "int8-b"]
    assert [r["artifact"] for r in _pick_examples(rows, "pckh@0.5")] == ["onnx-fp32", "int8-a"]

"""The demo's report writer on hand-made inputs: report.json holds exactly the inputs (cleaned to strict JSON),
report.md shows the bench table, the budget verdict and which direction of the metric is better."""

from __future__ import annotations

import json
import math

import numpy as np

from cunet.evaluate.report import Example, ReportInputs, markdown_table, write_report


def _rows():
    return [
        {"artifact": "onnx-fp32", "format": "onnx", "precision": "fp32", "backend": "ort-cpu", "status": "ok",
         "reason": None, "size_mb": 1.25, "value": 4.5, "delta": 0.0, "p50_ms": 3.0, "p99_ms": 4.0,
         "throughput": 320.0, "peak_mb": 150.0},
        {"artifact": "onnx-int8-cpu", "format": "onnx", "precision": "int8", "backend": "ort-cpu",
         "status": "failed validation", "reason": "loses 0.7 nme points > --max-drop 0.5", "size_mb": 0.4,
         "value": 5.2, "delta": 0.7, "p50_ms": 2.0, "p99_ms": float("nan"), "throughput": np.float32(480.0),
         "peak_mb": None},
    ]


def _inputs(**over) -> ReportInputs:
    base = dict(title="cunet demo: faces", task="face", metric_name="nme", rows=_rows(),
                budget={"metric": "nme", "max_drop": 0.5, "within": False, "worst": "onnx-int8-cpu",
                        "worst_drop": 0.7, "rows": ["onnx-int8-cpu"]},
                settings={"images": 24, "variant": "cunet-tiny"}, environment={"host": "box", "cpu": "x"},
                stages=[{"stage": "data", "seconds": 1.5, "reused": False, "built_seconds": 1.5, "detail": "24"}])
    return ReportInputs(**{**base, **over})


def test_report_json_is_the_inputs_in_strict_json(tmp_path) -> None:
    doc = write_report(tmp_path, _inputs(examples=[Example("onnx-fp32", "/m.onnx", str(tmp_path / "ex.png"),
                                                           [1.0, 2.0], "nme %")]))
    on_disk = json.loads((tmp_path / "report.json").read_text(), parse_constant=lambda c: pytest_fail(c))
    assert on_disk["rows"][1]["p99_ms"] is None and on_disk["rows"][1]["throughput"] == 480.0
    assert on_disk["examples"][0]["png"] == "ex.png"  # linked by name: the folder can move
    assert on_disk["title"] == doc["title"] and on_disk["budget"] == doc["budget"] and on_disk["task"] == "face"
    assert not list(tmp_path.glob(".*.tmp-*"))


def pytest_fail(constant: str):
    raise AssertionError(f"report.json holds {constant}, which strict JSON readers refuse")


def test_report_md_shows_the_table_the_verdict_and_the_direction(tmp_path) -> None:
    write_report(tmp_path, _inputs())
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# cunet demo: faces\n")
    assert "| onnx-int8-cpu |" in md and "+0.700" in md and "(onnx-int8-cpu) loses 0.7: **over the budget**" in md
    assert "lower is better" in md and "0.5 NME points" in md
    assert "**onnx-int8-cpu** failed validation: loses 0.7 nme points > --max-drop 0.5" in md
    write_report(tmp_path / "pose", _inputs(task="pose", metric_name="pckh@0.5",
                                            budget={"metric": "pckh@0.5", "max_drop": None}))
    pose = (tmp_path / "pose" / "report.md").read_text()
    assert "higher is better" in pose and "Not checked" in pose
    write_report(tmp_path / "budget", _inputs(task="pose", metric_name="pckh@0.5", budget={
        "metric": "pckh@0.5", "max_drop": 1.0, "within": True, "worst": "onnx-int8-cpu", "worst_drop": 0.25,
        "rows": ["onnx-int8-cpu"]}))
    assert "at most **1.0 PCKh points**" in (tmp_path / "budget" / "report.md").read_text()


def test_markdown_table_alignment_and_missing_values() -> None:
    table = markdown_table(["name", "x", "Δ"], [["a", 1.5, 0.25], ["b|c", None, math.inf]], signed=[2])
    assert table.splitlines() == ["| name | x | Δ |", "| --- | --: | --: |", "| a | 1.50 | +0.250 |", "| b\\|c | — | — |"]

"""`cunet.evaluate.compare` on hand-written reports: labels, rows, ratios by hand, and what it refuses."""

from __future__ import annotations

import json

import pytest

from cunet.errors import CunetError
from cunet.evaluate.compare import compare, load_report, write_csv


def _bench(path, host, p50: dict, label=None):
    env = {"host": host, "cpu": "x", **({"label": label} if label else {})}
    rows = [{"artifact": a, "p50_ms": v, "p99_ms": None, "throughput": None, "peak_mb": 10.0} for a, v in p50.items()]
    path.write_text(json.dumps({"task": "face", "rows": rows, "environment": env}))
    return path


def _profile(path, host, batches: dict):
    results = [{"batch": b, "latency_ms": {"total": {"p50": v, "p99": 2 * v}}, "throughput_ips": b * 1000 / v,
                "peak_rss_mb": 50.0} for b, v in batches.items()]
    path.write_text(json.dumps({"model": "/x/face.onnx", "backend": "ort-cpu", "results": results,
                                "environment": {"host": host}}))
    return path


def test_columns_rows_and_ratios(tmp_path) -> None:
    a = load_report(_bench(tmp_path / "a.json", "jetson", {"onnx-fp32": 8.0, "onnx-int8-cpu": 2.0}))
    b = load_report(_bench(tmp_path / "b.json", "server", {"onnx-fp32": 4.0, "onnx-fp16": 3.0}))
    cmp = compare([a, b])
    assert [c.label for c in cmp.columns] == ["jetson", "server"]
    assert cmp.rows == ["onnx-fp32", "onnx-int8-cpu", "onnx-fp16"] and cmp.baseline == "onnx-fp32"
    assert cmp.values["onnx-int8-cpu"] == {"jetson": 2.0, "server": None}
    assert cmp.ratios["onnx-int8-cpu"] == {"jetson": 0.25, "server": None}
    assert cmp.ratios["onnx-fp16"] == {"jetson": None, "server": 0.75}
    write_csv(cmp, tmp_path / "c.csv")
    assert (tmp_path / "c.csv").read_text().splitlines() == [
        "artifact,jetson p50_ms,server p50_ms,jetson ratio,server ratio",
        "onnx-fp32,8,4,1,1", "onnx-int8-cpu,2,,0.25,", "onnx-fp16,,3,,0.75"]


def test_same_host_twice_gets_two_columns_and_labels_win(tmp_path) -> None:
    a = _bench(tmp_path / "a.json", "box", {"onnx-fp32": 1.0})
    b = _bench(tmp_path / "b.json", "box", {"onnx-fp32": 2.0})
    c = _bench(tmp_path / "c.json", "box", {"onnx-fp32": 3.0}, label="box-4-threads")
    cmp = compare([load_report(a), load_report(b), load_report(c), load_report(a, label="mine")])
    assert [col.label for col in cmp.columns] == ["box", "box (2)", "box-4-threads", "mine"]


def test_profile_reports_one_row_per_batch_and_other_values(tmp_path) -> None:
    p = load_report(_profile(tmp_path / "p.json", "h", {1: 4.0, 8: 16.0}))
    assert p.kind == "profile"
    cmp = compare([p], value="throughput", baseline="face.onnx · ort-cpu · batch 1")
    assert cmp.values["face.onnx · ort-cpu · batch 8"]["h"] == pytest.approx(500.0)
    assert cmp.ratios["face.onnx · ort-cpu · batch 8"]["h"] == pytest.approx(2.0)


def test_refusals(tmp_path) -> None:
    (tmp_path / "n.json").write_text('{"a": 1}')
    (tmp_path / "t.txt").write_bytes(b"\xff\xfe")
    for name in ("n.json", "t.txt"):
        with pytest.raises(CunetError, match="not a cunet report"):
            load_report(tmp_path / name)
    with pytest.raises(CunetError, match="no such report file"):
        load_report(tmp_path / "missing.json")
    a = load_report(_bench(tmp_path / "a.json", "h", {"onnx-fp32": 1.0}))
    with pytest.raises(CunetError, match="baseline 'nope' is no row"):
        compare([a], baseline="nope")
    with pytest.raises(CunetError, match="unknown value"):
        compare([a], value="nme")

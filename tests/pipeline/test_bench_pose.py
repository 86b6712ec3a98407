"""`run_bench`'s pose branch: PCKh rows, per-person joint correctness for the plots, and Δ's sign (higher is better)."""

from __future__ import annotations

import json
import math

import numpy as np

from cunet.pipeline.bench import BenchOptions, budget_drop, run_bench


def test_pose_bench_scores_pckh_and_keeps_joint_correctness(tmp_path, tiny_checkpoint, pckh_by_hand) -> None:
    from cunet.data.synth import synthesize

    data = tmp_path / "pose"
    synthesize(data, "pose", n=10, seed=2, image_size=64)
    res = run_bench(BenchOptions(checkpoint=tiny_checkpoint("pose"), data=data, report=tmp_path / "report",
                                 threads=1, quick=True, calib_samples=4, progress=False))
    doc = json.loads((tmp_path / "report" / "bench.json").read_text())
    assert (res.task, res.metric_name, doc["metric"]) == ("pose", "pckh@0.5", "pckh@0.5")
    rows = {r["artifact"]: r for r in res.rows}
    for name in ("pytorch-fp32", "onnx-fp32", "onnx-int8-cpu"):
        assert rows[name]["status"] == "ok", (name, rows[name]["reason"])
        assert rows[name]["metric"] == "pckh@0.5"
    records = json.loads((data / "valid.json").read_text())
    for name in ("pytorch-fp32", "onnx-fp32", "onnx-int8-cpu"):
        # recomputed from the predictions bench saved and the ground truth, in plain Python (tests/conftest.py)
        pred = json.loads((tmp_path / "report" / "artifacts" / "predictions" / name / "valid.json").read_text())
        assert math.isclose(rows[name]["value"], pckh_by_hand(records, pred), rel_tol=1e-9)
    n_test = len(records)
    for name in ("onnx-fp32", "onnx-int8-cpu"):
        correct = res.per_image[name]
        assert correct.shape == (n_test, 16)
        assert set(np.unique(correct[~np.isnan(correct)])) <= {0.0, 1.0}
        # the row's PCKh is the headline over 14 joints (no pelvis 6, thorax 7), pooled over visible joints
        headline = np.delete(correct, [6, 7], axis=1)
        assert math.isclose(rows[name]["value"], 100 * np.nanmean(headline), rel_tol=1e-9)
    # PCKh: a higher value is better, so a positive Δ loses nothing
    assert budget_drop("pckh@0.5", 2.0) == -2.0 and budget_drop("nme", 2.0) == 2.0

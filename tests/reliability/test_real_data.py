"""Reliability on real-data inputs (issue 14 item 4, and the metrics rule of the batch-semantics issue): one bad
file among good ones is listed and the rest scored, never a wholesale failure; refusals are one `error:` line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def _cunet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cunet", *args], capture_output=True, text=True, timeout=300)


def _pts(path: Path, points: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in points)
    path.write_text(f"version: 1\nn_points: {len(points)}\n{{\n{lines}\n}}\n")


def _face(seed: int) -> np.ndarray:
    pts = np.random.default_rng(seed).uniform(50, 150, size=(68, 2))
    pts[36], pts[45] = (40.0, 60.0), (140.0, 60.0)  # inter-ocular distance 100
    return pts


def test_metrics_one_19_point_prediction_is_listed_and_the_rest_scored(tmp_path, tally):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for i in range(4):
        _pts(gt / f"f{i}.pts", _face(i))
        _pts(pred / f"f{i}.pts", _face(i) + [3.0, 4.0])  # 5 px on 100: 5 % each
    _pts(pred / "f2.pts", _face(2)[:19])  # a 19-point file (e.g. another landmark scheme)
    proc = _cunet("metrics", "--task", "face", "--gt", str(gt), "--pred", str(pred), "--json")
    tally["bad-input:metrics"] += 1
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["n"] == 3 and out["nme"] == pytest.approx(5.0, abs=1e-3)
    assert out["bad"] == [{"file": str(pred / "f2.pts"), "problem": f"19 points but the ground truth {gt / 'f2.pts'} "
                                                                     "has 68"}]
    lines = proc.stderr.splitlines()
    assert lines[0] == f"skipped {pred / 'f2.pts'}: 19 points but the ground truth {gt / 'f2.pts'} has 68"
    assert lines[-1] == ("error: skipped 1 file(s) that cannot be used; 3 image(s) scored (--strict stops at the "
                         "first)") and "Traceback" not in proc.stderr


def test_metrics_a_19_point_ground_truth_file_in_a_dataset_is_bad_not_fatal(tmp_path, tally):
    import cv2

    data, pred = tmp_path / "data", tmp_path / "pred"
    for i in range(3):
        _pts(data / "test" / f"f{i}.pts", _face(i))
        cv2.imwrite(str(data / "test" / f"f{i}.png"), np.zeros((200, 200, 3), np.uint8))
        _pts(pred / "test" / f"f{i}.pts", _face(i))
    _pts(data / "test" / "f1.pts", _face(1)[:19])
    proc = _cunet("metrics", "--task", "face", "--gt", str(data), "--pred", str(pred), "--json")
    tally["bad-input:metrics"] += 1
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["n"] == 2 and out["nme"] == 0
    assert out["bad"] == [{"file": str(data / "test" / "f1.pts"), "problem": "19 points, the face task needs 68"}]
    assert out["ignored"] == 1  # f1's prediction has no usable ground truth


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_refusals_are_one_line(tmp_path, tally):
    import cv2
    from scipy.io import savemat

    flat = tmp_path / "afw"
    for i in range(2):
        _pts(flat / f"f{i}.pts", _face(i))
        cv2.imwrite(str(flat / f"f{i}.png"), np.zeros((200, 200, 3), np.uint8))
    cases = [
        (("train", "--task", "face", "--data", str(flat), "--out", str(tmp_path / "run"), "--epochs", "1"),
         ("one-split dataset", "--val-data DIR")),
        (("data", "check", str(tmp_path / "notes.txt"), "--task", "face"), ("not a face dataset",)),
    ]
    (tmp_path / "notes.txt").write_text("not a dataset")
    records = [{"image": "a.jpg", "center": [50, 50], "scale": 1.0, "joints": [[10 + j, 20] for j in range(16)],
                "joints_vis": [1] * 16, }] * 2
    (tmp_path / "valid.json").write_text(json.dumps(records))
    one = np.zeros((2, 2, 1))
    one[1] = 10
    savemat(str(tmp_path / "one.mat"), {"jnt_missing": np.zeros((16, 1)), "pos_gt_src": np.zeros((16, 2, 1)),
                                        "headboxes_src": one})
    (tmp_path / "junk.mat").write_bytes(b"\x00" * 10)
    cases += [
        (("metrics", "--task", "pose", "--gt", str(tmp_path / "valid.json"), "--pred", str(tmp_path / "valid.json"),
          "--headboxes", str(tmp_path / "one.mat")), ("1 head boxes but valid.json has 2 records",)),
        (("metrics", "--task", "pose", "--gt", str(tmp_path / "valid.json"), "--pred", str(tmp_path / "valid.json"),
          "--headboxes", str(tmp_path / "junk.mat")), ("junk.mat: not a readable MATLAB .mat file",)),
        (("metrics", "--task", "pose", "--gt", str(tmp_path / "valid.json"), "--pred", str(tmp_path / "valid.json")),
         ("PCKh needs head boxes", "--headboxes FILE")),
    ]
    for args, needles in cases:
        tally[f"bad-input:{args[0]}"] += 1
        _one_line_error(_cunet(*args), *needles)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())

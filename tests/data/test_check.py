"""`cunet data check` and `cunet data synth`: JSON shape, problem lines, exit codes."""

import json
import subprocess
import sys

import cv2
import numpy as np
from click.testing import CliRunner

from cunet.cli import cli
from cunet.data.check import check_dataset
from cunet.data.formats import write_pts


def _dataset(root, bad: bool):
    for split, stem in (("train", "a"), ("train", "b"), ("test/common", "c")):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{stem}.png"), np.zeros((16, 16, 3), np.uint8))
        write_pts(folder / f"{stem}.pts", np.full((68, 2), 8.0))
    if bad:
        (root / "train" / "b.pts").write_text("version: 1\nn_points: 68\n{\n1 x\n}\n")
        (root / "test" / "common" / "c.png").write_bytes(b"garbage")


def test_check_json_shape_and_exit_code(tmp_path):
    _dataset(tmp_path, bad=True)
    result = CliRunner().invoke(cli, ["data", "check", str(tmp_path), "--task", "face", "--json"])
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert out["valid"] == 1 and out["invalid"] == 2
    assert out["splits"] == {"train": {"valid": 1, "invalid": 1}, "test": {"valid": 0, "invalid": 1}}
    assert {(p["file"], p["problem"].split(":")[0]) for p in out["problems"]} == {
        (str(tmp_path / "train" / "b.pts"), "line 4"),
        (str(tmp_path / "test" / "common" / "c.png"), "unreadable or unsupported image"),
    }


def test_check_prints_problem_lines_on_stderr_and_exits_0_when_clean(tmp_path):
    _dataset(tmp_path, bad=True)
    result = CliRunner().invoke(cli, ["data", "check", str(tmp_path), "--task", "face"])
    assert result.exit_code == 1 and result.stdout == ""
    assert f"{tmp_path / 'train' / 'b.pts'}: line 4: not a number" in result.stderr
    clean = tmp_path / "clean"
    _dataset(clean, bad=False)
    result = CliRunner().invoke(cli, ["data", "check", str(clean), "--task", "face", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"valid": 3, "invalid": 0, "problems": [], "layout": "splits", "notes": [],
                                         "splits": {"train": {"valid": 2, "invalid": 0},
                                                    "test": {"valid": 1, "invalid": 0}}}
    assert check_dataset(clean, "face", check_images=False).ok


def test_not_a_dataset_is_one_line_error_exit_1(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cunet", "data", "check", str(tmp_path), "--task", "pose", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    expected = f"error: {tmp_path}: not a pose dataset (expected train.json / valid.json)"
    assert proc.stderr.strip().splitlines() == [expected]


def test_synth_then_check_is_clean(tmp_path):
    runner = CliRunner()
    for task in ("face", "pose"):
        out = tmp_path / task
        result = runner.invoke(cli, ["data", "synth", "--task", task, "--out", str(out), "--n", "6",
                                     "--image-size", "64", "--json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["task"] == task and summary["train"] >= 1
        result = runner.invoke(cli, ["data", "check", str(out), "--task", task, "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["invalid"] == 0
        assert report["valid"] == 6 if task == "face" else report["valid"] >= 1  # a pose image may hold 2 people


def test_help_teaches():
    result = CliRunner().invoke(cli, ["data", "check", "--help"])
    assert result.exit_code == 0 and "Exit code" in result.output and "cunet data check" in result.output

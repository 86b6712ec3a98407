"""MPII head boxes from `gt_valid.mat` (written here with scipy.io.savemat in the layout of the file common PyTorch
MPII code ships: `dataset_joints` 1x16 names, `jnt_missing` 16xN, `pos_gt_src` 16x2xN, `headboxes_src` 2x2xN,
MATLAB 1-based pixels), matched to `valid.json` by index, with counts and order checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

scipy_io = pytest.importorskip("scipy.io")

from cunet.data.check import check_dataset  # noqa: E402
from cunet.data.dataset import load_samples  # noqa: E402
from cunet.data.formats import FormatError, read_mpii_json  # noqa: E402
from cunet.evaluate.scoring import score_pose  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
NAMES = ["rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck", "head", "rwri", "relb", "rsho",
         "lsho", "lelb", "lwri"]


def write_gt_mat(path: Path, records: list[dict], boxes_1based: list[list[float]]) -> Path:
    """A gt_valid.mat for MPII-JSON records (1-based joints, as both files hold them) and [x1, y1, x2, y2] boxes."""
    n = len(records)
    pos = np.zeros((16, 2, n))
    missing = np.zeros((16, n), dtype=np.uint8)
    for i, r in enumerate(records):
        pos[:, :, i] = np.asarray(r["joints"], dtype=np.float64)
        missing[:, i] = [0 if v else 1 for v in r["joints_vis"]]
    boxes = np.asarray(boxes_1based, dtype=np.float64)  # [N, 4]
    headboxes = np.stack([boxes[:, :2].T, boxes[:, 2:].T])  # [2 corners, 2 (x, y), N]
    names = np.empty((1, 16), dtype=object)
    names[0, :] = NAMES
    scipy_io.savemat(str(path), {"dataset_joints": names, "jnt_missing": missing, "pos_gt_src": pos,
                                 "headboxes_src": headboxes})
    return path


def _records(n: int = 3) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        joints = rng.integers(40, 90, size=(16, 2)).astype(float)
        out.append({"image": f"im{i}.jpg", "center": [64.0, 64.0], "scale": 0.5, "joints": joints.tolist(),
                    "joints_vis": [1] * 16})
    return out


def _hrnet_layout(root: Path, records: list[dict]) -> Path:
    """annot/valid.json + images/ (the layout of common PyTorch MPII code)."""
    (root / "annot").mkdir(parents=True)
    (root / "images").mkdir()
    for r in records:
        cv2.imwrite(str(root / "images" / r["image"]), np.zeros((128, 128, 3), np.uint8))
    (root / "annot" / "valid.json").write_text(json.dumps(records))
    return root


def test_headboxes_beside_valid_json_are_attached_by_index(tmp_path):
    records = _records()
    root = _hrnet_layout(tmp_path / "mpii", records)
    report = check_dataset(root, "pose")
    assert report.ok and len(report.notes) == 1 and "PCKh will not be computable: 3 of 3" in report.notes[0]
    assert "--headboxes FILE" in report.notes[0] and "gt_valid.mat" in report.notes[0]
    boxes = [[50.0 + i, 20.0, 80.0 + i, 60.0] for i in range(3)]
    write_gt_mat(root / "annot" / "gt_valid.mat", records, boxes)
    samples = load_samples(root, "pose", "test").samples
    np.testing.assert_allclose([s.headbox for s in samples], np.asarray(boxes) - 1.0)  # 1-based → 0-based
    assert check_dataset(root, "pose").notes == []


def test_pckh_from_mat_headboxes_hand_computed(tmp_path):
    records = _records()
    gt = tmp_path / "valid.json"
    gt.write_text(json.dumps(records))
    mat = write_gt_mat(tmp_path / "elsewhere.mat", records, [[150.0, 50.0, 180.0, 90.0]] * 3)
    shifted = [{**r, "joints": [[x + 9, y + 12] for x, y in r["joints"]]} for r in records]
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(shifted))
    # head box 30 x 40 → head size 0.6 * 50 = 30 px; the (9, 12) = 15 px shift is 0.5 head sizes:
    # correct at 0.5, wrong at 0.1
    r = score_pose(gt, pred, headboxes=mat)
    assert r["pckh@0.5"] == 100 and r["pckh@0.1"] == 0 and r["n"] == 3 and not r["bad"]


def test_mat_that_does_not_describe_valid_json_is_refused(tmp_path):
    records = _records()
    root = _hrnet_layout(tmp_path / "mpii", records)
    mat = root / "annot" / "gt_valid.mat"
    write_gt_mat(mat, records[:2], [[1.0, 1.0, 9.0, 9.0]] * 2)
    with pytest.raises(FormatError, match="2 head boxes but valid.json has 3 records; records are matched by index"):
        load_samples(root, "pose", "test")
    write_gt_mat(mat, records[::-1], [[1.0, 1.0, 9.0, 9.0]] * 3)
    with pytest.raises(FormatError, match="person 0's joints differ from record 0 of valid.json"):
        check_dataset(root, "pose")
    scipy_io.savemat(str(mat), {"jnt_missing": np.zeros((16, 3))})
    with pytest.raises(FormatError, match="no pos_gt_src, headboxes_src"):
        load_samples(root, "pose", "test")
    mat.write_bytes(b"MATLAB 5.0 MAT-file, but not really")
    with pytest.raises(FormatError, match="not a readable MATLAB .mat file"):
        load_samples(root, "pose", "test")


def test_real_mpii_fixture_scores_with_a_gt_valid_mat(tmp_path):
    src = FIXTURES / "mpii"
    if not (src / "test_mpii.json").exists():
        pytest.skip("shared fixtures not present")
    root = tmp_path / "mpii"
    root.mkdir()
    for f in src.glob("*.jpg"):
        shutil.copy(f, root / f.name)
    shutil.copy(src / "test_mpii.json", root / "valid.json")
    records = json.loads((root / "valid.json").read_text())
    write_gt_mat(root / "gt_valid.mat", records, [[10.0, 10.0, 70.0, 90.0]] * len(records))
    report = check_dataset(root, "pose")
    assert report.ok and report.notes == [] and report.valid == len(records)
    r = score_pose(root, root / "valid.json")
    assert r["pckh@0.5"] == 100 and r["n"] == len(read_mpii_json(root / "valid.json"))

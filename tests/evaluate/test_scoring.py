"""Scoring prediction folders/files in the dataset formats, and the `cunet metrics` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cunet.cli import main
from cunet.errors import CunetError
from cunet.evaluate.scoring import MPII_JOINTS, score_face, score_pose, summarize_face, summarize_pose

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
BATCH_KEYS = {"missing", "bad", "ignored", "skipped"}
FACE_KEYS = {"nme", "auc@0.08", "auc@0.10", "fr@0.08", "fr@0.10", "n", "nonfinite", "norm", "subset"} | BATCH_KEYS
POSE_KEYS = {"pckh@0.5", "pckh@0.1", "pckh_style", "per_joint", "per_group", "pckh_auc", "n", "joints",
             "nonfinite"} | BATCH_KEYS


def _write_pts(path: Path, points: np.ndarray) -> None:
    """A 300-W file written by hand (1-based), independent of cunet's writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{x + 1:.6f} {y + 1:.6f}" for x, y in points]
    path.write_text("version: 1\nn_points:  %d\n{\n%s\n}" % (len(points), "\n".join(lines)))


def _face(iod: float, seed: int) -> np.ndarray:
    pts = np.random.default_rng(seed).uniform(50, 150, size=(68, 2))
    pts[36], pts[45] = (40.0, 60.0), (40.0 + iod, 60.0)
    return pts


def _face_folder(root: Path, shift=(0.0, 0.0), iods=(100.0, 50.0)) -> None:
    for i, (rel, iod) in enumerate(zip(["a/x.pts", "b/c/y.pts"], iods)):
        _write_pts(root / rel, _face(iod, i) + np.asarray(shift))


def test_folder_against_itself_is_perfect(tmp_path):
    _face_folder(tmp_path / "gt")
    r = score_face(tmp_path / "gt", tmp_path / "gt")
    assert set(r) == FACE_KEYS
    assert r["nme"] == pytest.approx(0, abs=1e-6) and r["auc@0.08"] == pytest.approx(1, abs=1e-6)
    assert r["fr@0.10"] == 0 and r["n"] == 2 and r["norm"] == "inter-ocular"
    assert r["subset"] == "all" and r["missing"] == [] and r["bad"] == [] and r["ignored"] == 0


def test_shift_by_3_4_px_recovers_nme_exactly(tmp_path):
    _face_folder(tmp_path / "gt")
    _face_folder(tmp_path / "pred", shift=(3.0, 4.0))
    r = score_face(tmp_path / "gt", tmp_path / "pred")
    # 5 px error on every point: 5/100 and 5/50 → mean 7.5 %; AUC@0.08 = mean(1 - 0.05/0.08, 1 - 0.10/0.08 → 0)
    # = 0.1875; FR@0.08 = 1 of 2 images; FR@0.10: 0.10 is not > 0.10 → 0
    # (the .pts files carry 6 decimals, hence the tolerance of 1e-5 on the percentages)
    assert r["nme"] == pytest.approx(7.5, abs=1e-5)
    assert r["auc@0.08"] == pytest.approx(0.1875, abs=1e-6)
    assert r["fr@0.08"] == 50.0
    assert r["fr@0.10"] == 0.0
    # the box normaliser is a different policy on the same files: a different, positive NME
    r = score_face(tmp_path / "gt", tmp_path / "pred", norm="box")
    assert r["norm"] == "box" and r["nme"] > 0


def test_missing_extra_and_mismatched_files_are_listed_and_the_rest_scored(tmp_path):
    _face_folder(tmp_path / "gt")
    _face_folder(tmp_path / "pred", shift=(3.0, 4.0))
    (tmp_path / "pred" / "b" / "c" / "y.pts").unlink()
    r = score_face(tmp_path / "gt", tmp_path / "pred")
    # only x.pts is scored: 5 px on an inter-ocular distance of 100 → 5 %
    assert r["n"] == 1 and r["nme"] == pytest.approx(5.0, abs=1e-5)
    assert r["missing"] == [str(tmp_path / "gt" / "b" / "c" / "y.pts")] and r["bad"] == []
    _face_folder(tmp_path / "pred")
    _write_pts(tmp_path / "pred" / "z.pts", _face(80, 3))
    r = score_face(tmp_path / "gt", tmp_path / "pred")
    assert r["n"] == 2 and r["ignored"] == 1 and not r["missing"] and not r["bad"]  # z.pts has no ground truth
    (tmp_path / "pred" / "z.pts").unlink()
    _write_pts(tmp_path / "pred" / "a" / "x.pts", _face(80, 3)[:5])
    r = score_face(tmp_path / "gt", tmp_path / "pred")
    assert r["n"] == 1 and len(r["bad"]) == 1
    assert r["bad"][0]["file"] == str(tmp_path / "pred" / "a" / "x.pts")
    assert r["bad"][0]["problem"].startswith("5 points but the ground truth") and "has 68" in r["bad"][0]["problem"]
    with pytest.raises(CunetError, match="unknown normaliser"):
        score_face(tmp_path / "gt", tmp_path / "gt", norm="eyes")
    for f in (tmp_path / "pred").rglob("*.pts"):
        f.unlink()
    with pytest.raises(CunetError, match="no prediction could be scored .*2 missing"):
        score_face(tmp_path / "gt", tmp_path / "pred")


def test_zero_normaliser_is_a_bad_ground_truth_file(tmp_path):
    _face_folder(tmp_path / "gt", iods=(100.0, 0.0))
    r = score_face(tmp_path / "gt", tmp_path / "gt")
    assert r["n"] == 1 and [b["file"] for b in r["bad"]] == [str(tmp_path / "gt" / "b" / "c" / "y.pts")]
    assert r["bad"][0]["problem"].startswith("the inter-ocular normaliser is 0")


def _face_dataset(root: Path) -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    for rel, iod in [("test/common/c1", 100.0), ("test/common/c2", 50.0), ("test/challenging/h1", 40.0),
                     ("train/t1", 60.0)]:
        _write_pts(root / f"{rel}.pts", _face(iod, len(rel)))
        cv2.imwrite(str(root / f"{rel}.png"), image)


def test_dataset_root_reports_subsets_and_ignores_train(tmp_path):
    _face_dataset(tmp_path / "data")
    pred = tmp_path / "pred"
    for rel in ["test/common/c1", "test/common/c2", "test/challenging/h1"]:
        pts = np.loadtxt(tmp_path / "data" / f"{rel}.pts", skiprows=3, max_rows=68) - 1
        _write_pts(pred / f"{rel}.pts", pts + [3.0, 4.0])
    r = score_face(tmp_path / "data", pred)
    # errors 5/100, 5/50 (common) and 5/40 (challenging): 7.5 %, 12.5 %, full (5 + 10 + 12.5) / 3 = 9.1667 %
    assert set(r["subsets"]) == {"common", "challenging", "full"}
    assert r["subsets"]["common"]["nme"] == pytest.approx(7.5, abs=1e-5)
    assert r["subsets"]["challenging"]["nme"] == pytest.approx(12.5, abs=1e-5)
    assert r["nme"] == pytest.approx(27.5 / 3, abs=1e-5) and r["n"] == 3
    assert r["subsets"]["full"] == {k: v for k, v in r.items() if k not in ({"subsets", "norm", "subset"} | BATCH_KEYS)}
    assert r["nonfinite"] == 0
    assert r["ignored"] == 0 and r["subset"] == "full"
    one = score_face(tmp_path / "data", pred, subset="challenging")
    assert one["n"] == 1 and "subsets" not in one and one["subset"] == "challenging"
    assert one["ignored"] == 2 and not one["missing"]  # the other subset's predictions are counted, not errors
    # predictions for the training split too (as `evaluate --split train --save-predictions` writes them):
    # the test split is scored, the train file is ignored, nothing is an error
    _write_pts(pred / "train" / "t1.pts", np.zeros((68, 2)))
    again = score_face(tmp_path / "data", pred)
    assert again["ignored"] == 1 and again["n"] == 3 and again["nme"] == r["nme"] and not again["bad"]


def test_summaries_convert_fractions_to_the_documented_units():
    r = summarize_face(np.array([0.02, 0.06, 0.12]), ("a", "a", "b"))
    # NME mean 0.0667 → 6.667 %, AUC@0.08 = 1/3 (fraction), FR@0.08 = 1/3 → 33.3 %
    assert r["nme"] == pytest.approx(20 / 3) and r["auc@0.08"] == pytest.approx(1 / 3)
    assert r["fr@0.08"] == pytest.approx(100 / 3) and r["subsets"]["b"]["n"] == 1


def test_nonfinite_face_predictions_are_failures_counted_in_n():
    # four images, two with a non-finite prediction (+inf error): n counts all four, NME is the mean of the finite
    # two (2 % and 6 % → 4 %), FR@0.10 = 2 of 4 = 50 %, AUC@0.10 = (0.8 + 0.4 + 0 + 0) / 4 = 0.3
    r = summarize_face(np.array([0.02, np.inf, 0.06, np.inf]), ("a", "b", "a", "a"))
    assert r["n"] == 4 and r["nonfinite"] == 2
    assert r["nme"] == pytest.approx(4.0) and r["fr@0.10"] == 50.0 and r["auc@0.10"] == pytest.approx(0.3)
    assert r["subsets"]["b"] == {"nme": pytest.approx(float("nan"), nan_ok=True), "auc@0.08": 0.0, "auc@0.10": 0.0,
                                 "fr@0.08": 100.0, "fr@0.10": 100.0, "n": 1, "nonfinite": 1}


def _pose_records(n: int = 3) -> list[dict]:
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        joints = rng.integers(100, 300, size=(16, 2)).astype(float)  # integers: the 15 px boundary stays exact
        vis = [1] * 16
        if i == 0:
            joints[6], vis[6] = (-1, -1), 0
        records.append({"image": f"im{i % 2}.jpg", "center": [200.0, 200.0], "scale": 1.5,
                        "joints": joints.tolist(), "joints_vis": vis, "headbox": [150.0, 50.0, 180.0, 90.0]})
    return records


def _dump(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return path


def test_pose_against_itself_and_shifted(tmp_path):
    gt = _dump(tmp_path / "data" / "valid.json", _pose_records())
    r = score_pose(gt, gt)
    assert set(r) == POSE_KEYS and r["n"] == 3 and r["joints"] == 3 * 14
    assert r["pckh@0.5"] == 100 and r["pckh@0.1"] == 100 and r["pckh_auc"] == 100
    assert r["per_joint"]["r_ankle"] == 100 and r["per_group"]["head"] == 100
    # head box 30 × 40 → head size 30; a (9, 12) = 15 px shift is exactly 0.5 head sizes: correct at 0.5, not 0.1
    shifted = _pose_records()
    for rec in shifted:
        rec["joints"] = [[x + 9, y + 12] for x, y in rec["joints"]]
    pred = _dump(tmp_path / "pred" / "valid.json", shifted)
    r = score_pose(tmp_path / "data", tmp_path / "pred")  # dataset root and prediction folder
    assert r["pckh@0.5"] == 100 and r["pckh@0.1"] == 0
    # every error is exactly 0.5 head sizes: the area over (0, 0.5] of a curve that only reaches 1 at 0.5 is 0
    assert r["pckh_auc"] == pytest.approx(0.0, abs=1e-12)
    assert score_pose(gt, pred) == r


def _table_case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two people, head size 30 (head box 30 x 40); errors chosen per joint, every value below worked by hand."""
    gt = np.full((2, 16, 2), 200.0)
    pred = gt.copy()
    mask = np.ones((2, 16), dtype=bool)
    hb = np.tile([0.0, 0.0, 30.0, 40.0], (2, 1))
    pred[0, 0] += (20, 0)  # r_ankle wrong in person 0 (20 > 15 px)
    pred[1, 0] += (3, 0)  # r_ankle within 0.1 head sizes in person 1 (3 px = 0.1 x 30)
    mask[1, 5] = False  # l_ankle annotated once only, correct
    pred[:, 9] += (0, 14)  # head top: within 0.5 (14 < 15), not 0.1, both people
    pred[0, 8] += (0, 40)  # upper neck wrong once
    pred[:, 12] = np.nan  # r_shoulder not finite in both people: incorrect, counted, "nonfinite" 2
    pred[0, 11] += (16, 0)  # r_elbow wrong once
    pred[:, 6] += (100, 0)  # pelvis wrong: not in either headline
    return pred, gt, mask, hb


def test_pose_table_columns_and_both_styles_by_hand():
    pred, gt, mask, hb = _table_case()
    r = summarize_pose(pred, gt, mask, hb)
    # per joint @0.5: r_ankle 1/2, l_ankle 1/1, head_top 2/2, upper_neck 1/2, r_shoulder 0/2, r_elbow 1/2, rest 1
    assert r["per_joint"]["r_ankle"] == 50 and r["per_joint"]["upper_neck"] == 50 and r["per_joint"]["pelvis"] == 0
    # columns average left and right per joint: ankle (50 + 100) / 2 = 75 (pooling counts would give 2/3 = 66.7),
    # shoulder (0 + 100) / 2 = 50, elbow (50 + 100) / 2 = 75; head is the head top alone: 100 (not 75 with the neck)
    assert r["per_group"] == {"head": 100.0, "shoulder": 50.0, "elbow": 75.0, "wrist": 100.0, "hip": 100.0,
                              "knee": 100.0, "ankle": 75.0}
    # MPII headline: 14 joints, visible 2 * 14 - 1 (l_ankle once) = 27; wrong: r_ankle, upper_neck, 2 x r_shoulder,
    # r_elbow = 5 → 22 / 27
    assert r["joints"] == 27 and r["pckh@0.5"] == pytest.approx(100 * 22 / 27) and r["pckh_style"] == "mpii"
    # @0.1 (3 px): also wrong: r_ankle of person 1 is exactly 3 px → correct; head_top 2 → wrong: 22 - 2 = 20 / 27
    assert r["pckh@0.1"] == pytest.approx(100 * 20 / 27)
    assert r["nonfinite"] == 2 and r["n"] == 2
    # the original code's mean: the plain mean over ankles, knees, hips, wrists, elbows of per-joint values:
    # r_ankle 0.5, l_ankle 1, knees 1 1, hips 1 1, wrists 1 1, r_elbow 0.5, l_elbow 1 → 9 / 10
    o = summarize_pose(pred, gt, mask, hb, style="original")
    assert o["pckh@0.5"] == pytest.approx(90.0) and o["pckh_style"] == "original"
    # @0.1: r_ankle 1/2 (person 1 at exactly 3 px), r_elbow 1/2 → the same 9 / 10
    assert o["pckh@0.1"] == pytest.approx(90.0)
    assert {k: v for k, v in o.items() if k not in ("pckh@0.5", "pckh@0.1", "pckh_style")} == \
        {k: v for k, v in r.items() if k not in ("pckh@0.5", "pckh@0.1", "pckh_style")}
    # AUC over (0, 0.5], headline joints, e in head sizes: 19 exact (1 each: 9 in person 0, 10 in person 1),
    # r_ankle 20/30 (0) and 3/30 (1 - 0.2 = 0.8), head_top 14/30 twice (1 - 28/30 = 1/15 each), upper_neck 40/30
    # (0), r_shoulder inf twice (0), r_elbow 16/30 (0) → (19 + 0.8 + 2/15) / 27
    assert r["pckh_auc"] == pytest.approx(100 * (19 + 0.8 + 2 / 15) / 27)


def test_gt_valid_mat_jnt_missing_decides_what_is_scored(tmp_path):
    from cunet.data.mpii_mat import HEADBOX_FILE

    mat_writer = pytest.importorskip("scipy.io")
    records = _pose_records(2)
    for rec in records:
        del rec["headbox"]
    gt = _dump(tmp_path / "valid.json", records)
    pred_records = _pose_records(2)
    pred_records[0]["joints"][4] = [p + 100 for p in pred_records[0]["joints"][4]]  # l_knee of person 0 wrong
    pred = _dump(tmp_path / "pred" / "valid.json", pred_records)
    # the .mat says person 0's l_knee is missing (jnt_missing 1) where the JSON says annotated, and gives the
    # head boxes; pos_gt_src as the JSON (1-based)
    n = len(records)
    pos = np.stack([np.asarray(r["joints"], dtype=float) for r in records], axis=-1)  # [16, 2, N]
    missing = np.zeros((16, n), dtype=np.uint8)
    missing[6, 0] = 1  # as the JSON (pelvis of person 0 is [-1, -1])
    missing[4, 0] = 1
    boxes = np.asarray([[151.0, 51.0, 181.0, 91.0]] * n)
    mat_writer.savemat(str(tmp_path / HEADBOX_FILE), {
        "jnt_missing": missing, "pos_gt_src": pos,
        "headboxes_src": np.stack([boxes[:, :2].T, boxes[:, 2:].T])})
    r = score_pose(gt, pred)
    # with the .mat: person 0's l_knee is not scored → every scored joint is correct
    assert r["pckh@0.5"] == 100 and r["per_joint"]["l_knee"] == 100
    assert r["joints"] == 2 * 14 - 1  # l_knee of person 0 left out (pelvis is not in the headline anyway)


def test_pose_mismatches_are_listed_and_missing_headbox_is_an_error(tmp_path):
    gt = _dump(tmp_path / "gt.json", _pose_records())
    r = score_pose(gt, _dump(tmp_path / "short.json", _pose_records(2)))
    assert r["n"] == 2 and r["missing"] == [f"{gt} record 2"] and r["bad"] == []
    swapped = _pose_records()
    swapped[1]["image"] = "other.jpg"
    r = score_pose(gt, _dump(tmp_path / "swapped.json", swapped))
    assert r["n"] == 2 and len(r["bad"]) == 1 and "record 1 is for image 'other.jpg'" in r["bad"][0]["problem"]
    broken = _pose_records()
    broken[0]["joints"] = broken[0]["joints"][:15]
    r = score_pose(gt, _dump(tmp_path / "broken.json", broken))
    assert r["n"] == 2 and r["bad"][0]["problem"] == "record 0: expected 16 joints, got 15"
    r = score_pose(gt, _dump(tmp_path / "long.json", _pose_records(5)))
    assert r["n"] == 3 and r["ignored"] == 2 and not r["missing"]
    nohead = _pose_records()
    del nohead[2]["headbox"]
    with pytest.raises(CunetError, match="record 2.*PCKh needs head boxes.*--headboxes"):
        score_pose(_dump(tmp_path / "nohead.json", nohead), gt)


def test_cli_json_face_and_pose(tmp_path, capsys):
    _face_folder(tmp_path / "gt")
    _face_folder(tmp_path / "pred", shift=(3.0, 4.0))
    plot = tmp_path / "ced.png"
    assert main(["metrics", "--task", "face", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"),
                 "--json", "--plot", str(plot)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == FACE_KEYS and out["nme"] == pytest.approx(7.5, abs=1e-5)
    assert plot.read_bytes()[:4] == b"\x89PNG"
    gt = _dump(tmp_path / "valid.json", _pose_records())
    assert main(["metrics", "--task", "pose", "--gt", str(gt), "--pred", str(gt), "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert set(out) == POSE_KEYS and out["pckh@0.5"] == 100
    assert set(out["per_joint"]) == set(MPII_JOINTS)
    assert main(["metrics", "--task", "pose", "--gt", str(gt), "--pred", str(gt)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "PCKh@0.5" in captured.err


def test_cli_lists_missing_files_and_exits_1(tmp_path):
    _face_folder(tmp_path / "gt")
    _face_folder(tmp_path / "pred")
    (tmp_path / "pred" / "b" / "c" / "y.pts").unlink()
    proc = subprocess.run([sys.executable, "-m", "cunet", "metrics", "--task", "face", "--gt", str(tmp_path / "gt"),
                           "--pred", str(tmp_path / "pred"), "--json"], capture_output=True, text=True)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["n"] == 1 and out["missing"] == [str(tmp_path / "gt" / "b" / "c" / "y.pts")]
    assert out["skipped"] == [{"file": str(tmp_path / "gt" / "b" / "c" / "y.pts"), "problem": "no prediction"}]
    lines = proc.stderr.splitlines()
    assert lines[0] == f"skipped {tmp_path / 'gt' / 'b' / 'c' / 'y.pts'}: no prediction"
    assert lines[-1] == "error: skipped 1 file(s) that cannot be used; 1 image(s) scored (--strict stops at the first)"
    (tmp_path / "pred" / "a" / "x.pts").unlink()
    proc = subprocess.run([sys.executable, "-m", "cunet", "metrics", "--task", "face", "--gt", str(tmp_path / "gt"),
                           "--pred", str(tmp_path / "pred"), "--json"], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "no prediction could be scored" in proc.stderr


def test_real_mpii_fixture_without_headboxes_says_pckh_needs_them():
    gt = FIXTURES / "mpii" / "test_mpii.json"
    if not gt.exists():
        pytest.skip("shared fixtures not present")
    with pytest.raises(CunetError, match="PCKh needs head boxes: put MPII's gt_valid.mat beside it"):
        score_pose(gt, gt)

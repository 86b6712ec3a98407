"""The synthetic datasets: deterministic, in the real layouts, readable by the real readers, and learnable (landmarks
on drawn features)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from cunet.data.formats import read_mpii_json, read_pts
from cunet.data.synth import render_examples, synthesize
from cunet.data.synth_draw import background
from cunet.data.synth_face import make_face
from cunet.data.synth_pose import make_pose
from cunet.errors import CunetError

SIZE = 96  # small images keep the whole file under a few seconds


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("task", ["face", "pose"])
def test_same_seed_same_bytes_other_seed_differs(tmp_path, task):
    a, b, c = (synthesize(tmp_path / name, task, n=6, seed=seed, image_size=SIZE)
               for name, seed in (("a", 3), ("b", 3), ("c", 4)))
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert fa == fb
    assert fa.keys() == fc.keys()
    assert all(fa[k] != fc[k] for k in fa)
    assert {k: v for k, v in a.items() if k != "out"} == {k: v for k, v in b.items() if k != "out"}


def test_face_layout_counts_and_points(tmp_path):
    out = tmp_path / "faces"
    summary = synthesize(out, "face", n=20, image_size=SIZE)
    assert summary["train"] == 16 and summary["test"] == {"common": 3, "challenging": 1}
    for folder, count in (("train", 16), ("test/common", 3), ("test/challenging", 1)):
        pngs = sorted((out / folder).glob("*.png"))
        assert len(pngs) == count and len(list((out / folder).glob("*.pts"))) == count
        for png in pngs:
            image = cv2.imread(str(png))
            assert image.shape == (SIZE, SIZE, 3)
            pts = read_pts(png.with_suffix(".pts"))
            assert pts.shape == (68, 2)
            assert (pts >= 0).all() and (pts <= SIZE - 1).all()
    names = [p.stem for p in out.rglob("*.png")]
    assert len(set(names)) == 20  # unique stems across splits


def test_pose_layout_counts_and_records(tmp_path):
    out = tmp_path / "pose"
    summary = synthesize(out, "pose", n=20, seed=1, image_size=SIZE)
    assert summary["train"] == 16 and summary["test"] == {"valid": 4}
    assert len(list(out.glob("*.png"))) == 20
    for split in ("train", "valid"):
        records = read_mpii_json(out / f"{split}.json")
        assert len(records) == summary["people"][split] >= (16 if split == "train" else 4)
        for r in records:
            assert (out / r.image).is_file()
            assert r.joints.shape == (16, 2) and r.headbox is not None
            vis = r.joints[r.visible]
            assert (vis >= 0).all() and (vis <= SIZE - 1).all()
            assert np.isnan(r.joints[~r.visible]).all()
            x1, y1, x2, y2 = r.headbox
            assert x2 > x1 and y2 > y1
            # upper neck (8) and head top (9) lie on the head ellipse, so inside its box (1/1000 px rounding)
            for j in (8, 9):
                if r.visible[j]:
                    assert x1 - 0.01 <= r.joints[j, 0] <= x2 + 0.01 and y1 - 0.01 <= r.joints[j, 1] <= y2 + 0.01
            assert r.scale > 0


def test_unannotated_pose_joints_are_minus_one_in_the_file(tmp_path):
    import json

    synthesize(tmp_path, "pose", n=30, seed=2, difficulty=1.0, image_size=SIZE)
    raw = json.loads((tmp_path / "train.json").read_text())
    flags = [(xy, v) for rec in raw for xy, v in zip(rec["joints"], rec["joints_vis"])]
    assert any(v == 0 for _, v in flags), "difficulty 1 should leave some joints unannotated"
    assert all(xy == [-1, -1] for xy, v in flags if v == 0)


def _gradient(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))


def test_face_landmarks_lie_on_drawn_edges():
    at_landmarks, at_random = [], []
    for i in range(12):
        rng = np.random.default_rng([9, i])
        image, points = make_face(rng, 0.0, 128)
        g = _gradient(image)
        eyes_mouth = np.round(points[36:68]).astype(int)
        at_landmarks.append(g[eyes_mouth[:, 1], eyes_mouth[:, 0]].mean())
        xy = rng.integers(0, 128, size=(200, 2))
        at_random.append(g[xy[:, 1], xy[:, 0]].mean())
    # Eye and lip outlines are strokes: the gradient at their landmarks is several times that of random pixels
    # (background gradients and clutter included); 2x leaves room for the random backgrounds.
    assert np.mean(at_landmarks) > 2.0 * np.mean(at_random)


def test_pose_joints_lie_on_the_drawn_figure():
    changed_at_joints, changed_at_random = [], []
    for i in range(12):
        seed = [11, i]
        image, people = make_pose(np.random.default_rng(seed), 0.0, 128)
        # make_pose draws the background first from the same generator, so this is the image without the figure
        # (up to the finishing noise and lighting, a few grey levels).
        empty = background(np.random.default_rng(seed), 128, 0.0)
        diff = np.abs(image.astype(np.int16) - empty.astype(np.int16)).max(axis=2)
        joints = people[0].joints[people[0].visible]
        xy = np.round(joints).astype(int)
        changed_at_joints.append((diff[xy[:, 1], xy[:, 0]] > 25).mean())
        rnd = np.random.default_rng(i).integers(0, 128, size=(200, 2))
        changed_at_random.append((diff[rnd[:, 1], rnd[:, 0]] > 25).mean())
    assert np.mean(changed_at_joints) > 0.85
    assert np.mean(changed_at_random) < 0.5


def _spread(values: list[float]) -> float:
    return float(np.std(values))


def test_difficulty_widens_pose_and_adds_clutter():
    def face_stats(d: float) -> tuple[float, float]:
        rolls, grads = [], []
        for i in range(25):
            image, p = make_face(np.random.default_rng([5, i]), d, 96)
            v = p[45] - p[36]
            rolls.append(math.degrees(math.atan2(v[1], v[0])))
            grads.append(_gradient(image).mean())
        return _spread(rolls), float(np.mean(grads))

    def torso_spread(d: float) -> float:
        angles = []
        for i in range(25):
            _, people = make_pose(np.random.default_rng([6, i]), d, 96)
            v = people[0].joints[7] - people[0].joints[6]
            if np.isfinite(v).all():
                angles.append(math.degrees(math.atan2(v[0], -v[1])))
        return _spread(angles)

    (easy_roll, easy_grad), (hard_roll, hard_grad) = face_stats(0.0), face_stats(1.0)
    assert hard_roll > 1.5 * easy_roll
    assert hard_grad > easy_grad  # more clutter and noise
    assert torso_spread(1.0) > 1.5 * torso_spread(0.0)


def test_challenging_subset_is_harder(tmp_path):
    synthesize(tmp_path, "face", n=40, difficulty=0.0, image_size=SIZE)

    def eye_line_roll(folder: str) -> float:
        rolls = []
        for pts_file in (tmp_path / folder).glob("*.pts"):
            p = read_pts(pts_file)
            v = p[45] - p[36]
            rolls.append(abs(math.degrees(math.atan2(v[1], v[0]))))
        return float(np.mean(rolls))

    # roll is uniform in ±5° at difficulty 0 and ±17° at 0.4: means 2.5° vs 8.5°, plus a little yaw/pitch skew
    assert eye_line_roll("test/challenging") > eye_line_roll("train")


def test_arguments_and_non_empty_folder(tmp_path):
    with pytest.raises(CunetError, match="unknown task"):
        synthesize(tmp_path / "x", "hand", n=2)
    with pytest.raises(CunetError, match="difficulty"):
        synthesize(tmp_path / "x", "face", n=2, difficulty=1.5)
    synthesize(tmp_path / "d", "face", n=6, image_size=64)
    with pytest.raises(CunetError, match="not empty"):
        synthesize(tmp_path / "d", "face", n=6, image_size=64)
    (tmp_path / "d" / "notes.txt").write_text("mine")
    synthesize(tmp_path / "d", "face", n=3, image_size=64, overwrite=True)
    assert len(list((tmp_path / "d").rglob("*.png"))) == 3  # no stale images from the larger run
    assert (tmp_path / "d" / "notes.txt").read_text() == "mine"  # other files are left alone


def test_readable_by_the_dataset_loader_and_checker(tmp_path):
    dataset = pytest.importorskip("cunet.data.dataset", reason="cunet.data.dataset (another helper's) not there yet")
    check = pytest.importorskip("cunet.data.check", reason="cunet.data.check (another helper's) not there yet")
    synthesize(tmp_path / "f", "face", n=10, image_size=SIZE)
    synthesize(tmp_path / "p", "pose", n=10, image_size=SIZE)
    for split, subset, count in (("train", None, 8), ("test", "common", 1), ("test", "challenging", 1)):
        loaded = dataset.load_samples(tmp_path / "f", "face", split, subset, check_images=True)
        assert len(loaded.samples) == count and not loaded.problems
    for split in ("train", "valid"):
        loaded = dataset.load_samples(tmp_path / "p", "pose", split, check_images=True)
        assert len(loaded.samples) >= (8 if split == "train" else 2) and not loaded.problems
    for task, root in (("face", tmp_path / "f"), ("pose", tmp_path / "p")):
        report = check.check_dataset(root, task)
        assert report.ok and report.invalid == 0 and report.valid >= 10, report.to_dict()


@pytest.mark.parametrize("task", ["face", "pose"])
def test_render_examples(tmp_path, task):
    out = tmp_path / f"{task}.png"
    render_examples(out, task, n=4, image_size=64)
    grid = cv2.imread(str(out))
    assert grid.shape == (128, 192, 3)  # 3 per row, the last row padded

"""Folder loading: 300-W and generic layouts, MPII JSON layout, bad files become problems, real fixtures load."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from cunet.data.dataset import dataset_parts, load_samples, read_image
from cunet.data.formats import read_coco_keypoints, write_pts
from cunet.data.preprocess import box_from_center_scale, box_from_points
from cunet.errors import CunetError

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


def _face(folder: Path, stem: str, suffix: str = ".png", shift: float = 0.0) -> np.ndarray:
    """A tiny 32x32 image with a 68-point annotation inside it; returns the 0-based points."""
    folder.mkdir(parents=True, exist_ok=True)
    # Noise, so half of a JPEG's bytes cut it inside the scan data (a truncation OpenCV only warns about).
    cv2.imwrite(str(folder / f"{stem}{suffix}"), np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8))
    pts = np.column_stack([np.linspace(4, 27, 68), np.linspace(6, 25, 68)]) + shift
    write_pts(folder / f"{stem}.pts", pts)
    return pts


@pytest.fixture
def tree_300w(tmp_path):
    root = tmp_path / "300W"
    _face(root / "lfpw" / "trainset", "image_0001")
    _face(root / "helen" / "trainset", "100_1", ".jpg")
    _face(root / "afw", "134_1", ".jpg")
    _face(root / "lfpw" / "testset", "image_0002")
    _face(root / "helen" / "testset", "200_1", ".jpg")
    _face(root / "ibug", "image_003_1", ".jpg")
    _face(root / "300W" / "01_Indoor", "indoor_001")
    _face(root / "300W" / "02_Outdoor", "outdoor_001")
    return root


def test_300w_layout_maps_folders_to_splits_and_subsets(tree_300w):
    train = load_samples(tree_300w, "face", "train")
    keys = [s.key for s in train.samples]
    assert keys == ["afw/134_1.jpg", "helen/trainset/100_1.jpg", "lfpw/trainset/image_0001.png"]
    assert not train.problems and all(s.subset is None for s in train.samples)
    full = load_samples(tree_300w, "face", "test")
    assert {(s.key, s.subset) for s in full.samples} == {
        ("helen/testset/200_1.jpg", "common"), ("lfpw/testset/image_0002.png", "common"),
        ("ibug/image_003_1.jpg", "challenging"),
    }
    same = load_samples(tree_300w, "face", "test", subset="full").samples
    assert [s.key for s in same] == [s.key for s in full.samples]
    assert len(load_samples(tree_300w, "face", "test", subset="common").samples) == 2
    challenging = load_samples(tree_300w, "face", "valid", subset="challenging").samples
    assert [s.key for s in challenging] == ["ibug/image_003_1.jpg"]
    private = load_samples(tree_300w, "face", "test", subset="300w-private").samples
    assert [s.key for s in private] == ["300W/01_Indoor/indoor_001.png", "300W/02_Outdoor/outdoor_001.png"]
    with pytest.raises(CunetError, match="no 300-W test subset 'hard'"):
        load_samples(tree_300w, "face", "test", subset="hard")
    assert dataset_parts(tree_300w, "face") == [
        ("train", None), ("test", "common"), ("test", "challenging"), ("test", "300w-private/indoor"),
        ("test", "300w-private/outdoor"),
    ]
    assert {s.subset for s in private} == {"300w-private/indoor", "300w-private/outdoor"}
    indoor = load_samples(tree_300w, "face", "test", subset="300w-private/indoor").samples
    assert [s.key for s in indoor] == ["300W/01_Indoor/indoor_001.png"]


def test_sample_fields(tree_300w):
    s = load_samples(tree_300w, "face", "train").samples[0]
    assert s.image.is_absolute() and s.image.is_file()
    assert s.points.shape == (68, 2) and s.points.dtype == np.float64 and s.visible.all()
    np.testing.assert_allclose(s.points[0], [4.0, 6.0])  # the file holds 5 7 (1-based)
    assert s.box == box_from_points(s.points) and s.headbox is None


def test_generic_layout_with_subset_folders(tmp_path):
    _face(tmp_path / "train" / "nested", "b")
    _face(tmp_path / "train", "a")
    _face(tmp_path / "test" / "easy", "c")
    _face(tmp_path / "test" / "hard", "d")
    _face(tmp_path / "test", "e")
    assert [s.key for s in load_samples(tmp_path, "face").samples] == ["train/a.png", "train/nested/b.png"]
    test = load_samples(tmp_path, "face", "test").samples
    expected = [("test/e.png", None), ("test/easy/c.png", "easy"), ("test/hard/d.png", "hard")]
    assert [(s.key, s.subset) for s in test] == expected
    assert [s.key for s in load_samples(tmp_path, "face", "test", "hard").samples] == ["test/hard/d.png"]
    with pytest.raises(CunetError, match=r"no test subset folder test/nope \(found: easy, hard\)"):
        load_samples(tmp_path, "face", "test", "nope")


def test_bad_files_become_problems_and_good_samples_still_load(tmp_path):
    _face(tmp_path / "train", "good")
    _face(tmp_path / "train", "corrupt")
    (tmp_path / "train" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    _face(tmp_path / "train", "truncated", ".jpg")
    jpg = (tmp_path / "train" / "truncated.jpg").read_bytes()
    (tmp_path / "train" / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    _face(tmp_path / "train", "badpts")
    (tmp_path / "train" / "badpts.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    _face(tmp_path / "train", "far", shift=100.0)
    _face(tmp_path / "train", "few")
    write_pts(tmp_path / "train" / "few.pts", np.ones((5, 2)))
    _face(tmp_path / "train", "orphan")
    (tmp_path / "train" / "orphan.png").unlink()
    cv2.imwrite(str(tmp_path / "train" / "lonely.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "train" / "notes.txt").write_text("ignored")

    quick = load_samples(tmp_path, "face", "train")
    # Without check_images only the annotations and the images' existence are checked.
    expected = ["train/corrupt.png", "train/far.png", "train/good.png", "train/truncated.jpg"]
    assert sorted(s.key for s in quick.samples) == expected
    checked = load_samples(tmp_path, "face", "train", check_images=True)
    assert [s.key for s in checked.samples] == ["train/good.png"]
    problems = {Path(p.file).name: p.problem for p in checked.problems}
    assert problems == {
        "badpts.pts": "n_points is 68 but the file lists 1 points",
        "corrupt.png": "unreadable or unsupported image",
        "truncated.jpg": "truncated JPEG (no end-of-image marker)",
        "far.pts": problems["far.pts"],
        "few.pts": "5 points, the face task needs 68",
        "orphan.pts": problems["orphan.pts"],
        "lonely.png": "no .pts annotation beside the image",
    }
    assert "far outside the 32x32 image" in problems["far.pts"]
    assert problems["orphan.pts"].startswith("no image (.png .jpg .jpeg") and ".ppm" in problems["orphan.pts"]


def test_empty_or_missing_dataset_is_an_error(tmp_path):
    with pytest.raises(CunetError, match="dataset folder does not exist"):
        load_samples(tmp_path / "nope", "face")
    with pytest.raises(CunetError, match="not a face dataset"):
        load_samples(tmp_path, "face")
    (tmp_path / "train").mkdir()
    with pytest.raises(CunetError, match="no usable face samples in split 'train'"):
        load_samples(tmp_path, "face")
    assert load_samples(tmp_path, "face", allow_empty=True).samples == []
    with pytest.raises(CunetError, match="subsets apply to the test split only"):
        load_samples(tmp_path, "face", "train", "common")
    with pytest.raises(CunetError, match="unknown split"):
        load_samples(tmp_path, "face", "dev")
    with pytest.raises(CunetError, match="unknown task"):
        load_samples(tmp_path, "hand")
    with pytest.raises(CunetError, match="not a pose dataset"):
        load_samples(tmp_path, "pose", "test")
    (tmp_path / "train.json").write_text("[]")
    with pytest.raises(CunetError, match="no valid.json"):
        load_samples(tmp_path, "pose", "test")


def test_detector_box_file(tmp_path):
    _face(tmp_path / "train", "a")
    _face(tmp_path / "train", "b")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"train/a.png": [2, 4, 22, 24]}))
    result = load_samples(tmp_path, "face", boxes=boxes)
    (s,) = result.samples
    assert (s.box.cx, s.box.cy, s.box.size) == (12.0, 14.0, 25.0)
    assert [p.problem for p in result.problems] == ["no detector box for this image in the box file"]


def test_real_mpii_fixture_as_a_pose_dataset(tmp_path):
    src = FIXTURES / "mpii"
    if not (src / "test_mpii.json").is_file():
        pytest.skip("shared fixtures not present")
    # Copies, not symlinks: a symlink leading out of the dataset folder is refused (`resolve_key`).
    (tmp_path / "annot").mkdir()
    shutil.copy(src / "test_mpii.json", tmp_path / "annot" / "valid.json")
    (tmp_path / "images").mkdir()
    for img in src.glob("*.jpg"):
        shutil.copy(img, tmp_path / "images" / img.name)
    result = load_samples(tmp_path, "pose", "valid", check_images=True)
    assert not result.problems and len(result.samples) == 5
    s = result.samples[0]
    assert s.key == "005808361.jpg#0" and s.image.name == "005808361.jpg"
    assert s.box == box_from_center_scale((965.0, 339.0), 4.718488)
    assert result.samples[2].visible.sum() == 14 and np.isnan(result.samples[2].points[0]).all()
    assert dataset_parts(tmp_path, "pose") == [("test", None)]


def test_pose_records_with_missing_images_or_bad_fields_are_problems(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((40, 40, 3), np.uint8))
    rec = {"image": "a.png", "center": [20, 20], "scale": 0.1, "joints": [[10, 10]] * 16, "joints_vis": [1] * 16}
    (tmp_path / "train.json").write_text(json.dumps([rec, {**rec, "image": "gone.png"}, {**rec, "scale": 0}]))
    result = load_samples(tmp_path, "pose")
    assert [s.key for s in result.samples] == ["a.png#0"]
    assert [p.problem.split(":")[0] for p in result.problems] == ["record 1", "record 2"]
    assert "'gone.png' does not exist" in result.problems[0].problem


def test_real_300w_fixture_as_a_private_test_folder(tmp_path):
    src = FIXTURES / "300w"
    if not (src / "test_300w.json").is_file():
        pytest.skip("shared fixtures not present")
    folder = tmp_path / "300W" / "01_Indoor"
    folder.mkdir(parents=True)
    recs = read_coco_keypoints(src / "test_300w.json", num_keypoints=68)
    for r in recs:
        shutil.copy(src / r.image, folder / r.image)
        write_pts((folder / r.image).with_suffix(".pts"), r.points)
    result = load_samples(tmp_path, "face", "test", "300w-private", check_images=True)
    assert not result.problems
    assert [s.key for s in result.samples] == ["300W/01_Indoor/indoor_020.png", "300W/01_Indoor/indoor_029.png"]
    np.testing.assert_allclose(result.samples[1].points, recs[0].points, atol=1e-9)
    assert read_image(result.samples[1].image).shape == (845, 960, 3)


def test_read_image_converts_grayscale_and_rejects_missing(tmp_path):
    cv2.imwrite(str(tmp_path / "g.png"), np.full((5, 7), 200, np.uint8))
    img = read_image(tmp_path / "g.png")
    assert img.shape == (5, 7, 3) and img.dtype == np.uint8 and (img == 200).all()
    with pytest.raises(CunetError, match="no such image"):
        read_image(tmp_path / "x.png")

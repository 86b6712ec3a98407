"""Real folders: one layout detector for every command — flat .pts folders, every OpenCV image format (grayscale,
16-bit, RGBA), the 300-W private set's names, and COCO-keypoint face JSON (the shared mmpose fixture and files
written here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from cunet.data.check import check_dataset
from cunet.data.dataset import load_samples, read_image
from cunet.data.formats import read_coco_keypoints, write_pts
from cunet.data.layout import IMAGE_SUFFIXES, detect_layout, split_from_name
from cunet.errors import CunetError

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


def _pts(folder: Path, stem: str) -> np.ndarray:
    pts = np.column_stack([np.linspace(4, 27, 68), np.linspace(6, 25, 68)])
    write_pts(folder / f"{stem}.pts", pts)
    return pts


def test_flat_folder_is_one_split_served_to_every_split(tmp_path):
    for stem in ("a", "b"):
        cv2.imwrite(str(tmp_path / f"{stem}.png"), np.zeros((32, 32, 3), np.uint8))
        _pts(tmp_path, stem)
    layout = detect_layout(tmp_path, "face")
    assert layout.kind == "flat" and layout.parts == (("all", None),) and layout.selection_label(None) == "all"
    for split in ("train", "test", "valid"):
        assert [s.key for s in load_samples(tmp_path, "face", split).samples] == ["a.png", "b.png"]
    report = check_dataset(tmp_path, "face")
    assert report.ok and report.layout == "flat" and {n: p.valid for n, p in report.parts.items()} == {"all": 2}
    assert list(check_dataset(tmp_path, "face", split="test").parts) == ["test"]
    with pytest.raises(CunetError, match="one-split dataset has no test subsets"):
        load_samples(tmp_path, "face", "test", "common")


def test_every_opencv_format_any_case_converts_to_8bit_bgr(tmp_path):
    """Each suffix is a real file in that format; grayscale, 16-bit and RGBA come out as the pipeline's BGR uint8."""
    value16 = np.full((32, 32, 3), 40000, np.uint16)  # 40000 >> 8 = 156: OpenCV's 16 → 8-bit conversion
    cases = {
        "gray.PGM": (np.full((32, 32), 77, np.uint8), [77, 77, 77]),
        "mask.pbm": (np.full((32, 32), 255, np.uint8), [255, 255, 255]),
        "deep.ppm": (value16, [156, 156, 156]),
        "deeptif.TIF": (value16, [156, 156, 156]),
        "deep16.png": (np.full((32, 32), 40000, np.uint16), [156, 156, 156]),
        "alpha.png": (np.dstack([np.full((32, 32, 3), (10, 20, 30), np.uint8), np.zeros((32, 32), np.uint8)]),
                      [10, 20, 30]),
        "plain.tiff": (np.full((32, 32, 3), (1, 2, 3), np.uint8), [1, 2, 3]),
        "plainbmp.BMP": (np.full((32, 32, 3), (1, 2, 3), np.uint8), [1, 2, 3]),
        "lossless.webp": (np.full((32, 32, 3), (40, 80, 120), np.uint8), [40, 80, 120]),
        "photo.JPEG": (np.full((32, 32, 3), 128, np.uint8), [128, 128, 128]),
        "photo2.jpg": (np.full((32, 32, 3), 128, np.uint8), [128, 128, 128]),
    }
    for name, (pixels, _) in cases.items():
        params = [cv2.IMWRITE_WEBP_QUALITY, 101] if name.endswith(".webp") else []
        assert cv2.imwrite(str(tmp_path / name), pixels, params), name
        _pts(tmp_path, Path(name).stem)
    covered = {Path(n).suffix.lower() for n in cases} | {".jpeg"}
    assert covered <= set(IMAGE_SUFFIXES) and {".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp"} <= covered
    for name, (_, bgr) in cases.items():
        image = read_image(tmp_path / name)
        assert image.dtype == np.uint8 and image.shape == (32, 32, 3), name
        tol = 2 if name.lower().endswith((".jpg", ".jpeg")) else 0  # JPEG is lossy on a flat patch by a level
        np.testing.assert_allclose(image[16, 16], bgr, atol=tol, err_msg=name)
    report = check_dataset(tmp_path, "face")
    assert report.ok and report.valid == len(cases), report.problems


def test_300w_private_alone_is_the_default_test_set_with_its_names(tmp_path):
    root = tmp_path / "300W-private"
    for folder, stem in (("300W/01_Indoor", "indoor_001"), ("300W/01_Indoor", "indoor_002"),
                         ("300W/02_Outdoor", "outdoor_001")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / folder / f"{stem}.png"), np.zeros((32, 32, 3), np.uint8))
        _pts(root / folder, stem)
    layout = detect_layout(root, "face")
    assert layout.default_subset() == "300w-private" and layout.selection_label(None) == "300w-private"
    samples = load_samples(root, "face", "test").samples  # no --subset needed
    assert [s.subset for s in samples] == ["300w-private/indoor", "300w-private/indoor", "300w-private/outdoor"]
    assert len(load_samples(root, "face", "test", "300w-private/outdoor").samples) == 1
    with pytest.raises(CunetError, match="no 300-W test subset 'full' .*found: 300w-private/indoor"):
        load_samples(root, "face", "test", "full")  # full keeps meaning common + challenging
    assert list(check_dataset(root, "face").parts) == ["test/300w-private/indoor", "test/300w-private/outdoor"]


def test_split_from_file_name():
    assert split_from_name("face_landmarks_300w_train") == "train"
    assert split_from_name("test_300w") == "test" and split_from_name("face_landmarks_300w_valid") == "test"
    assert split_from_name("300w") is None and split_from_name("contest") is None


def _coco(path: Path, images: list[tuple[str, np.ndarray]]) -> Path:
    data = {"categories": [{"id": 1, "name": "face"}], "images": [], "annotations": []}
    for i, (name, pts) in enumerate(images):
        data["images"].append({"id": i + 1, "file_name": name, "width": 32, "height": 32})
        kps = np.column_stack([pts, np.full(len(pts), 2.0)]).ravel().tolist()
        data["annotations"].append({"id": i + 1, "image_id": i + 1, "keypoints": kps, "num_keypoints": len(pts),
                                    "bbox": [1.0, 1.0, 30.0, 30.0], "category_id": 1, "iscrowd": 0})
    path.write_text(json.dumps(data))
    return path


def test_coco_face_json_is_a_dataset(tmp_path):
    pts = np.column_stack([np.linspace(4, 27, 68), np.linspace(6, 25, 68)])
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((32, 32, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b.jpg"), np.zeros((32, 32, 3), np.uint8))
    train = _coco(tmp_path / "face_landmarks_300w_train.json", [("a.png", pts), ("b.jpg", pts), ("gone.png", pts)])
    layout = detect_layout(train, "face")
    assert layout.kind == "coco" and layout.parts == (("train", None),)
    loaded = load_samples(train, "face", "train")
    assert [s.key for s in loaded.samples] == ["a.png", "b.jpg"]  # images/ or beside the file
    np.testing.assert_allclose(loaded.samples[0].points, pts)  # COCO is 0-based: unchanged
    assert [p.problem for p in loaded.problems] == ["annotation 2: image 'gone.png' is neither beside the file nor "
                                                   "in images/ (there or beside its folder)"]
    report = check_dataset(train, "face")
    assert not report.ok and list(report.parts) == ["train"] and report.valid == 2
    assert list(check_dataset(train, "face", split="test").parts) == ["test"]  # --split names it
    (tmp_path / "annotations").mkdir()  # MMPose's layout: annotations/*.json beside images/
    mm = _coco(tmp_path / "annotations" / "face_landmarks_300w_test.json", [("a.png", pts)])
    assert [s.image.name for s in load_samples(mm, "face", "test").samples] == ["a.png"]
    few = _coco(tmp_path / "few.json", [("a.png", pts[:19])])
    assert [p.problem for p in check_dataset(few, "face").problems] == ["19 points, the face task needs 68"]


def test_shared_mmpose_300w_fixture_is_a_test_split(tmp_path):
    src = FIXTURES / "300w" / "test_300w.json"
    if not src.exists():
        pytest.skip("shared fixtures not present")
    layout = detect_layout(src, "face")
    assert layout.kind == "coco" and layout.parts == (("test", None),)
    loaded = load_samples(src, "face", "test", check_images=True)
    assert not loaded.problems and [s.key for s in loaded.samples] == ["indoor_020.png", "indoor_029.png"]
    records = {r.image: r for r in read_coco_keypoints(src)}
    np.testing.assert_allclose(loaded.samples[1].points, records["indoor_029.png"].points)
    # The same faces as a flat folder of images + .pts (the iBUG way): the same points and crop boxes
    for name, rec in records.items():
        shutil.copy(src.parent / name, tmp_path / name)
        write_pts(tmp_path / f"{Path(name).stem}.pts", rec.points)
    flat = load_samples(tmp_path, "face", "test", check_images=True).samples
    for a, b in zip(flat, loaded.samples):
        np.testing.assert_allclose(a.points, b.points, atol=1e-9)
        assert (a.box.cx, a.box.cy, a.box.size) == pytest.approx((b.box.cx, b.box.cy, b.box.size))


def test_not_a_dataset_names_the_layouts(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CunetError, match="a folder of images with .pts files, or a COCO-keypoint .json"):
        detect_layout(tmp_path, "face")
    with pytest.raises(CunetError, match="not a face dataset"):
        detect_layout(tmp_path / "notes.txt", "face")

"""Detector boxes (`cunet.data.detector_boxes`): cunet's box JSON and iBUG's 300-W `bounding_boxes_*.mat`; and the
per-crop min-max stretch of `cunet.data.preprocess.to_input` that the original CU-Net preprocessing needs."""

from __future__ import annotations

import json

import numpy as np
import pytest

scipy_io = pytest.importorskip("scipy.io")

from cunet.data.detector_boxes import read_detector_boxes  # noqa: E402
from cunet.data.preprocess import to_input  # noqa: E402
from cunet.errors import CunetError  # noqa: E402


def write_ibug_mat(path, entries):
    """A MATLAB file laid out as iBUG's: a 1 x N struct array `bounding_boxes` of imgName, bb_detector and
    bb_ground_truth (1 x 4 doubles, 1-based pixels)."""
    arr = np.empty((1, len(entries)), dtype=[("imgName", "O"), ("bb_detector", "O"), ("bb_ground_truth", "O")])
    for i, (name, det) in enumerate(entries):
        arr[0, i] = (name, np.array([det], dtype=np.float64), np.array([det], dtype=np.float64) + 5)
    scipy_io.savemat(str(path), {"bounding_boxes": arr})
    return path


def test_mat_boxes_are_bb_detector_moved_to_0_based(tmp_path):
    f = write_ibug_mat(tmp_path / "bounding_boxes_afw.mat", [("111_1.jpg", [11, 21, 111, 141]),
                                                             ("222_2.jpg", [1.5, 2.5, 50, 60])])
    found = read_detector_boxes(f)
    assert sorted(found.boxes) == ["afw/111_1.jpg", "afw/222_2.jpg"]
    np.testing.assert_array_equal(found.boxes["afw/111_1.jpg"], [10, 20, 110, 140])
    np.testing.assert_array_equal(found.find("afw/222_2.jpg"), [0.5, 1.5, 49, 59])
    np.testing.assert_array_equal(found.find("some/where/111_1.jpg"), [10, 20, 110, 140])  # by file name
    assert found.find("333_3.jpg") is None


def test_a_folder_reads_every_mat_and_the_path_settles_shared_names(tmp_path):
    write_ibug_mat(tmp_path / "bounding_boxes_lfpw_testset.mat", [("image_0001.png", [1, 1, 11, 11])])
    write_ibug_mat(tmp_path / "bounding_boxes_lfpw_trainset.mat", [("image_0001.png", [101, 101, 121, 121])])
    write_ibug_mat(tmp_path / "bounding_boxes_ibug.mat", [("image_003_1.jpg", [5, 5, 25, 25])])
    (tmp_path / "notes.mat").write_bytes(b"not read: no bounding_boxes_ prefix")
    found = read_detector_boxes(tmp_path)
    assert len(found.files) == 3 and len(found.boxes) == 3
    np.testing.assert_array_equal(found.find("lfpw/testset/image_0001.png"), [0, 0, 10, 10])
    np.testing.assert_array_equal(found.find("300W/lfpw/trainset/image_0001.png"), [100, 100, 120, 120])
    np.testing.assert_array_equal(found.find("ibug/image_003_1.jpg"), [4, 4, 24, 24])
    # the relative name does not say, the absolute path does: any of the names may settle it
    np.testing.assert_array_equal(found.find("image_0001.png", "/d/lfpw/testset/image_0001.png"), [0, 0, 10, 10])
    with pytest.raises(CunetError, match="'image_0001.png' is listed by lfpw_testset, lfpw_trainset"):
        found.find("flat/image_0001.png")


def test_json_boxes_stay_as_written(tmp_path):
    f = tmp_path / "boxes.json"
    f.write_text(json.dumps({"test/a.png": [1, 2, 30, 40]}))
    found = read_detector_boxes(f)
    np.testing.assert_array_equal(found.find("test/a.png"), [1, 2, 30, 40])


def test_refusals(tmp_path):
    with pytest.raises(CunetError, match="no such box file or folder"):
        read_detector_boxes(tmp_path / "absent.mat")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CunetError, match=r"no bounding_boxes_\*.mat files in this folder"):
        read_detector_boxes(tmp_path / "empty")
    other = tmp_path / "bounding_boxes_x.mat"
    scipy_io.savemat(str(other), {"boxes": np.zeros((2, 4))})
    with pytest.raises(CunetError, match=r"no 'bounding_boxes' struct array \(holds \['boxes'\]\)"):
        read_detector_boxes(other)
    broken = tmp_path / "bounding_boxes_broken.mat"
    broken.write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(CunetError, match="not a readable MATLAB file"):
        read_detector_boxes(broken)
    (tmp_path / "bounding_boxes_empty.mat").write_bytes(b"")
    with pytest.raises(CunetError, match=r"bounding_boxes_empty\.mat: empty file"):
        read_detector_boxes(tmp_path / "bounding_boxes_empty.mat")


def test_a_bad_entry_is_kept_as_the_reason_its_image_is_skipped(tmp_path):
    """One flipped or escaping entry does not refuse the file: only the image that would use it gets its reason."""
    flipped = write_ibug_mat(tmp_path / "bounding_boxes_flipped.mat", [("a.jpg", [50, 10, 20, 40]),
                                                                      ("../b.jpg", [1, 1, 9, 9]),
                                                                      ("c.jpg", [1, 1, 9, 9])])
    found = read_detector_boxes(flipped)
    assert sorted(found.boxes) == ["flipped/c.jpg"]
    key = found.find_key("test/a.jpg")
    assert found.find("test/a.jpg") is None and "bb_detector of 'a.jpg' must be" in found.problem(key)
    assert found.problem(found.find_key("b.jpg")).endswith("imgName '../b.jpg' has a '..' part; keys may not leave "
                                                          "the dataset folder")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"/abs/d.png": [1, 2, 30, 40], "e.png": [1, 2, float("nan"), 4], "f.png": [0, 0, 5, 5]}))
    found = read_detector_boxes(boxes)
    assert list(found.boxes) == ["f.png"]
    assert found.problem(found.find_key("test/d.png")) == f"{boxes}: key '/abs/d.png' is an absolute path; keys are " \
                                                         "relative to the dataset folder"
    assert found.problem(found.find_key("e.png")).startswith(f"{boxes}: box of 'e.png' must be [x1, y1, x2, y2]")


def test_minmax_stretch_by_hand():
    # BGR crop with values 51..102 (0.2..0.4): min-max maps them to 0..1 over all channels together.
    crop = np.zeros((1, 1, 2, 3), dtype=np.uint8)
    crop[0, 0, 0] = [51, 51, 51]
    crop[0, 0, 1] = [102, 76, 51]  # B G R
    x = to_input(crop, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), stretch="minmax")
    assert x.shape == (1, 3, 1, 2)
    np.testing.assert_allclose(x[0, :, 0, 0], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(x[0, :, 0, 1], [0, 25 / 51, 1], atol=1e-6)  # R G B
    flat = np.full((1, 2, 2, 3), 128, dtype=np.uint8)  # nothing to stretch: left as it is
    np.testing.assert_allclose(to_input(flat, (0, 0, 0), (1, 1, 1), "minmax"), 128 / 255, atol=1e-6)
    np.testing.assert_allclose(to_input(crop, (0, 0, 0), (1, 1, 1))[0, :, 0, 1], [0.2, 76 / 255, 0.4], atol=1e-6)
    with pytest.raises(ValueError):
        to_input(crop, stretch="gamma")

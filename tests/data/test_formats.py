"""Annotation readers and writers: round trips, tolerated variants, and one-line errors naming the file."""

import json
from pathlib import Path

import numpy as np
import pytest

from cunet.data.formats import (
    FormatError,
    PoseRecord,
    parse_mpii_json,
    read_box_file,
    read_coco_keypoints,
    read_mpii_json,
    read_pts,
    write_mpii_json,
    write_pts,
)
from cunet.errors import CunetError

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


# ------------------------------------------------------------------------------------------------------------ pts
def test_pts_round_trip_is_exact_and_file_is_one_based(tmp_path):
    pts = np.random.default_rng(0).uniform(-5, 500, (68, 2))
    pts[0] = (0.0, 0.0)
    path = tmp_path / "a.pts"
    write_pts(path, pts)
    text = path.read_text()
    assert text.startswith("version: 1\nn_points: 68\n{\n1 1\n") and text.endswith("}\n")
    # Shortest round-trip decimals of x + 1: reading back subtracts 1, exact to float rounding of that step.
    np.testing.assert_allclose(read_pts(path), pts, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\nn_points:  3\n{\n1 2\n3 4\n5 6\n}\n",
        "version: 1\r\nn_points: 3\r\n{\r\n1 2\r\n3 4\r\n5 6\r\n}\r\n",
        "version: 1\nn_points: 3\n{\n1 2\n3 4\n5 6\n}",
        "\ufeffversion: 1\n n_points :\t3 \n\n{\n  1\t 2 \n3   4\n\n5.0 6e0\n}\n\n",
    ],
    ids=["two-spaces", "crlf", "no-final-newline", "bom-tabs-blank-lines"],
)
def test_pts_whitespace_variants(tmp_path, text):
    path = tmp_path / "v.pts"
    path.write_bytes(text.encode())
    np.testing.assert_array_equal(read_pts(path), [[0, 1], [2, 3], [4, 5]])


@pytest.mark.parametrize(
    "text, message",
    [
        ("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n", "n_points is 3 but the file lists 2"),
        ("version: 1\nn_points: 2\n{\n1 2\n3 4\n5 6\n}\n", "n_points is 2 but the file lists 3"),
        ("version: 1\nn_points: 2\n{\n1 2\n3 x\n}\n", "line 5: not a number"),
        ("version: 1\nn_points: 2\n{\n1 2\nnan 4\n}\n", "line 5: non-finite"),
        ("version: 1\nn_points: 2\n{\n1 2\ninf 4\n}\n", "line 5: non-finite"),
        ("version: 1\nn_points: 2\n{\n1 2\n3 4 5\n}\n", "line 5: expected 'x y'"),
        ("version: 1\nn_points: 2\n1 2\n3 4\n", "expected 'key: value'"),
        ("version: 1\nn_points: 2\n{\n1 2\n3 4\n", "no '}'"),
        ("version: 1\n{\n1 2\n}\n", "no 'n_points:'"),
        ("version: 1\nn_points: two\n{\n1 2\n}\n", "not an integer"),
        ("version: 1\nn_points: 1\n{\n1 2\n}\n3 4\n", "text after the closing"),
        ("", "empty file"),
    ],
)
def test_malformed_pts_is_one_line_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.pts"
    path.write_text(text)
    with pytest.raises(CunetError) as e:
        read_pts(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value) and "\n" not in str(e.value)


def test_pts_missing_or_binary_file(tmp_path):
    with pytest.raises(FormatError, match="no such file"):
        read_pts(tmp_path / "nope.pts")
    (tmp_path / "bin.pts").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(FormatError, match="not a UTF-8"):
        read_pts(tmp_path / "bin.pts")


def test_write_pts_rejects_nan_and_bad_shapes(tmp_path):
    with pytest.raises(FormatError, match="cannot store missing"):
        write_pts(tmp_path / "a.pts", np.array([[1.0, np.nan]]))
    with pytest.raises(FormatError, match=r"\[K, 2\]"):
        write_pts(tmp_path / "a.pts", np.zeros((3, 3)))
    assert not (tmp_path / "a.pts").exists()


# ----------------------------------------------------------------------------------------------------------- MPII
def _record(**overrides):
    rec = {"image": "a.jpg", "center": [50.0, 60.0], "scale": 1.5, "joints": [[10.0 + j, 20.0 + j] for j in range(16)],
           "joints_vis": [1] * 16}
    rec.update(overrides)
    return rec


def test_mpii_read_converts_to_zero_based_with_nan_for_missing(tmp_path):
    joints = [[10.0 + j, 20.0 + j] for j in range(16)]
    joints[0] = [-1.0, -1.0]
    vis = [0] + [1] * 15
    vis[5] = 0  # flagged unannotated although it has coordinates
    path = tmp_path / "m.json"
    path.write_text(json.dumps([_record(joints=joints, joints_vis=vis, headbox=[5, 6, 25, 36])]))
    (r,) = read_mpii_json(path)
    assert r.image == "a.jpg" and r.scale == 1.5
    np.testing.assert_array_equal(r.center, [49.0, 59.0])
    np.testing.assert_array_equal(r.headbox, [4, 5, 24, 35])
    assert not r.visible[0] and not r.visible[5] and r.visible[1:5].all()
    assert np.isnan(r.joints[[0, 5]]).all()
    np.testing.assert_array_equal(r.joints[1], [10.0, 20.0])


def test_mpii_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    joints = rng.uniform(0, 300, (16, 2))
    visible = np.ones(16, dtype=bool)
    visible[[3, 9]] = False
    joints[~visible] = np.nan
    recs = [
        PoseRecord("x/1.jpg", np.array([100.5, 80.25]), 2.5, joints, visible, np.array([1.0, 2.0, 30.0, 40.0])),
        PoseRecord("2.jpg", np.array([0.0, 0.0]), 0.5, np.zeros((16, 2)), np.ones(16, dtype=bool), None),
    ]
    path = tmp_path / "rt.json"
    write_mpii_json(path, recs)
    raw = json.loads(path.read_text())
    assert raw[0]["joints"][3] == [-1.0, -1.0] and raw[0]["joints_vis"][3] == 0
    assert raw[1]["center"] == [1.0, 1.0] and "headbox" not in raw[1]
    assert raw[0]["headbox"] == [2.0, 3.0, 31.0, 41.0]
    back = read_mpii_json(path)
    for a, b in zip(recs, back):
        assert a.image == b.image and a.scale == b.scale
        np.testing.assert_allclose(b.center, a.center)
        np.testing.assert_array_equal(b.visible, a.visible)
        np.testing.assert_allclose(b.joints, a.joints, equal_nan=True)
    np.testing.assert_allclose(back[0].headbox, recs[0].headbox)
    assert back[1].headbox is None


@pytest.mark.parametrize(
    "record, message",
    [
        ({"image": "a.jpg"}, "record 1: missing key(s) center, scale, joints, joints_vis"),
        (_record(joints=[[1.0, 2.0]] * 15), "record 1: expected 16 joints, got 15"),
        (_record(joints_vis=[1] * 17), "record 1: expected 16 joints_vis flags, got 17"),
        (_record(scale=-1), "record 1: 'scale' must be a positive number"),
        (_record(center=[1.0]), "record 1: 'center' must be two finite numbers"),
        (_record(joints_vis=[2] * 16), "record 1: joints_vis[0] must be 0 or 1"),
        (_record(joints=[["a", 1]] * 16), "record 1: joint 0 must be two finite numbers"),
        (_record(headbox=[10, 10, 5, 20]), "record 1: 'headbox' must be"),
        (_record(image=""), "record 1: 'image' must be a non-empty string"),
        ("text", "record 1: expected an object"),
    ],
)
def test_malformed_mpii_names_file_and_record(tmp_path, record, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([_record(), record]))
    with pytest.raises(CunetError) as e:
        read_mpii_json(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value) and "\n" not in str(e.value)
    parsed = parse_mpii_json(path)
    assert isinstance(parsed[0], PoseRecord) and isinstance(parsed[1], FormatError)


def test_mpii_file_level_errors(tmp_path):
    (tmp_path / "obj.json").write_text("{}")
    with pytest.raises(FormatError, match="expected a JSON list"):
        read_mpii_json(tmp_path / "obj.json")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(FormatError, match="not valid JSON"):
        parse_mpii_json(tmp_path / "broken.json")


def test_real_mpii_fixture():
    path = FIXTURES / "mpii" / "test_mpii.json"
    if not path.is_file():
        pytest.skip("shared fixtures not present")
    recs = read_mpii_json(path)
    assert len(recs) == 5
    assert recs[0].image == "005808361.jpg"
    np.testing.assert_array_equal(recs[0].center, [965.0, 339.0])
    np.testing.assert_array_equal(recs[0].joints[0], [803.0, 710.0])
    assert recs[2].visible.sum() == 14 and np.isnan(recs[2].joints[[0, 5]]).all()
    assert all(r.headbox is None for r in recs)


# ------------------------------------------------------------------------------------------------- COCO and boxes
def test_real_coco_300w_fixture():
    path = FIXTURES / "300w" / "test_300w.json"
    if not path.is_file():
        pytest.skip("shared fixtures not present")
    recs = read_coco_keypoints(path, num_keypoints=68)
    assert [r.image for r in recs] == ["indoor_029.png", "indoor_020.png"]
    assert recs[0].points.shape == (68, 2) and recs[0].visible.all()
    np.testing.assert_array_equal(recs[0].points[0], [268.0, 398.882])  # COCO coordinates are kept 0-based
    np.testing.assert_allclose(recs[0].box, [223.7298, 217.3791, 223.7298 + 531.2424, 217.3791 + 571.4508])
    assert recs[0].image_size == (960, 845)


def test_coco_errors_and_unlabelled_points(tmp_path):
    doc = {"images": [{"id": 1, "file_name": "a.png"}],
           "annotations": [{"image_id": 1, "keypoints": [1, 2, 2, 3, 4, 0], "bbox": [0, 0, 5, 5]}]}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(doc))
    (r,) = read_coco_keypoints(path)
    assert r.visible.tolist() == [True, False] and np.isnan(r.points[1]).all() and r.image_size is None
    with pytest.raises(FormatError, match="annotation 0: expected 68 keypoints, got 2"):
        read_coco_keypoints(path, num_keypoints=68)
    doc["annotations"][0]["image_id"] = 7
    path.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="image_id 7 is not in 'images'"):
        read_coco_keypoints(path)


def test_box_file(tmp_path):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps({"./test/a.png": [1, 2, 30, 40]}))
    boxes = read_box_file(path)
    np.testing.assert_array_equal(boxes["test/a.png"], [1, 2, 30, 40])
    path.write_text(json.dumps({"a.png": [1, 2, 0, 40]}))
    with pytest.raises(FormatError, match="box of 'a.png'"):
        read_box_file(path)
    path.write_text("[]")
    with pytest.raises(FormatError, match="expected a JSON object"):
        read_box_file(path)

"""Readers (issue 22 items 2, 4, 5; issue 27's "empty file" and JSON paths): dataset keys never leave their root,
every file read whole has a size limit, boxes are checked before cropping or drawing, a 0-byte file reads
"empty file" in every reader, `data check` takes JSON files, and a COCO file's split has one name everywhere.

Each test is a row of the issues' tables, run on real files (the shared 300-W and MPII samples) through the CLI's
entry point; what each guards is said in its docstring (checked to fail without the fix).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from cunet.cli import main  # noqa: E402
from cunet.errors import CunetError  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


@pytest.fixture(scope="module")
def real():
    if not (FIXTURES / "300w" / "test_300w.json").is_file() or not (FIXTURES / "mpii" / "test_mpii.json").is_file():
        pytest.skip("no real 300-W / MPII samples in ../shared/fixtures")
    return FIXTURES


def _run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(code: int, err: str, prefix: str, pattern: str = "") -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"error: {prefix}") and re.search(pattern, lines[0]), lines[0]


def _tree(folder: Path) -> dict[str, str]:
    """The files under `folder` (its `.cunet-outputs` manifest of what cunet wrote there left out)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".cunet-outputs"}


def _coco(real: Path, folder: Path, names: list[str]) -> Path:
    """A COCO face JSON whose images carry `names` as file_name, with the real faces' annotations in turn."""
    src = json.loads((real / "300w" / "test_300w.json").read_text())
    doc = {"categories": src["categories"], "images": [], "annotations": []}
    for i, name in enumerate(names):
        ann = src["annotations"][i % 2]
        image = next(im for im in src["images"] if im["id"] == ann["image_id"])
        doc["images"].append({**image, "id": i, "file_name": name})
        doc["annotations"].append({**ann, "id": i, "image_id": i})
    path = folder / "faces_test.json"
    path.write_text(json.dumps(doc))
    return path


# ---------------------------------------------------------------------------------------- keys inside their root
def test_coco_file_names_leaving_the_root_are_refused_and_nothing_is_written_outside(real, quick_onnx, tmp_path,
                                                                                     capsys):
    """Issue 22's row: a COCO `file_name` of `../elsewhere/x.png` or an absolute path made `evaluate
    --save-predictions OUT` write `.pts` files outside OUT, beside images anywhere on disk (exit 0)."""
    elsewhere, data, out = tmp_path / "elsewhere", tmp_path / "data", tmp_path / "out"
    elsewhere.mkdir()
    data.mkdir()
    for name in ("indoor_020.png", "indoor_029.png"):
        shutil.copy(real / "300w" / name, data / name)
        shutil.copy(real / "300w" / name, elsewhere / name)
    before = _tree(elsewhere)
    absolute = str((elsewhere / "indoor_029.png").resolve())
    coco = _coco(real, data, ["indoor_029.png", "../elsewhere/indoor_020.png", absolute])
    code, stdout, err = _run(capsys, "evaluate", quick_onnx("face"), "--data", coco, "--save-predictions", out,
                             "--json")
    assert code == 1 and "Traceback" not in err, err
    assert json.loads(stdout)["n"] == 1
    assert f"skipped {coco}: annotation 1: file_name '../elsewhere/indoor_020.png' has a '..' part" in err
    assert f"skipped {coco}: annotation 2: file_name '{absolute}' is an absolute path" in err
    assert _tree(elsewhere) == before  # nothing written beside the images outside the dataset
    assert sorted(_tree(out)) == ["indoor_029.pts"]
    code, stdout, _ = _run(capsys, "data", "check", coco, "--task", "face", "--json")  # the lister agrees
    assert code == 1 and json.loads(stdout)["invalid"] == 2


def test_mpii_image_keys_box_keys_and_symlinks_out_of_the_root(real, quick_onnx, tmp_path, capsys):
    """An MPII `image` key with `..`, a box-file key that is absolute, and a symlinked image leading out of the
    dataset folder are each one `skipped` line naming the file and the key (they were read, and used, before)."""
    from cunet.data.dataset import load_samples

    outside = tmp_path / "outside"
    outside.mkdir()
    records = json.loads((real / "mpii" / "test_mpii.json").read_text())
    poses = tmp_path / "poses"
    poses.mkdir()
    for r in records:
        shutil.copy(real / "mpii" / r["image"], poses / r["image"])
    shutil.copy(real / "mpii" / records[0]["image"], outside / "x.jpg")
    (poses / "valid.json").write_text(json.dumps(records + [dict(records[0], image="../outside/x.jpg")]))
    loaded = load_samples(poses, "pose", "test")
    assert len(loaded.samples) == 5 and [(p.file, p.problem) for p in loaded.problems] == [
        (str(poses / "valid.json"), "record 5: image '../outside/x.jpg' has a '..' part; keys may not leave the "
                                    "dataset folder")]

    faces = tmp_path / "faces"
    faces.mkdir()
    for i, name in enumerate(("indoor_020.png", "indoor_029.png")):
        shutil.copy(real / "300w" / name, faces / name)
    (faces / "linked.png").symlink_to(outside / "x.jpg")  # a symlink leading out of the folder
    images = [faces / "indoor_020.png", faces / "indoor_029.png", faces / "linked.png"]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"indoor_020.png": [200, 150, 540, 590], str(faces / "indoor_029.png"): [1, 1, 9, 9]}))
    code, _, err = _run(capsys, "predict", quick_onnx("face"), *images, "--boxes", boxes, "--out", tmp_path / "p",
                        "--no-draw")
    assert code == 1 and "Traceback" not in err, err
    assert (f"skipped {faces / 'indoor_029.png'}: {boxes}: key '{faces / 'indoor_029.png'}' is an absolute path"
            in err)
    from cunet.calib.reader import select_calibration_images, read_preprocess_spec

    selection = select_calibration_images(faces, read_preprocess_spec(quick_onnx("face")), 8)  # a plain folder
    assert [p.name for p, _ in selection.items] == ["indoor_020.png", "indoor_029.png"]
    assert selection.problems[0][0] == str(faces / "linked.png")
    assert "leads out of the dataset folder" in selection.problems[0][1]


# ------------------------------------------------------------------------------------------------ size limits
def test_every_file_read_whole_has_a_size_limit(real, tmp_path, monkeypatch):
    """Issue 22's row: `.mat` (--boxes, --headboxes), JSON and `.pts` readers read whole files of any size. Each
    file here is valid and read fine under the default limit; under a limit below its size it is one line."""
    import scipy.io

    from cunet.data.detector_boxes import read_detector_boxes
    from cunet.data.formats import read_coco_keypoints, read_mpii_json, read_pts, write_pts
    from cunet.data.mpii_mat import read_gt_mat
    from cunet.limits import DEFAULT_MAX_MB, max_file_bytes
    from cunet.pipeline.video import read_video_boxes

    assert max_file_bytes() == DEFAULT_MAX_MB * 2**20 == 256 * 2**20
    write_pts(tmp_path / "a.pts", np.full((68, 2), 10.0))
    mat = tmp_path / "gt_valid.mat"
    scipy.io.savemat(str(mat), {"jnt_missing": np.zeros((16, 1)), "pos_gt_src": np.ones((16, 2, 1)),
                                "headboxes_src": np.array([[[1.0], [1.0]], [[9.0], [9.0]]])})
    arr = np.empty((1, 1), dtype=[("imgName", "O"), ("bb_detector", "O"), ("bb_ground_truth", "O")])
    arr[0, 0] = ("a.png", np.array([[1.0, 1.0, 20.0, 20.0]]), np.array([[1.0, 1.0, 20.0, 20.0]]))
    boxes_mat = tmp_path / "bounding_boxes_x.mat"
    scipy.io.savemat(str(boxes_mat), {"bounding_boxes": arr})
    (tmp_path / "boxes.json").write_text(json.dumps({"a.png": [1, 1, 20, 20]}))
    readers = [(tmp_path / "a.pts", read_pts), (real / "mpii" / "test_mpii.json", read_mpii_json),
               (real / "300w" / "test_300w.json", read_coco_keypoints), (mat, read_gt_mat),
               (boxes_mat, read_detector_boxes), (tmp_path / "boxes.json", read_detector_boxes),
               (tmp_path / "boxes.json", read_video_boxes)]
    for path, read in readers:
        read(path)  # fine under the default limit
        monkeypatch.setenv("CUNET_MAX_FILE_MB", repr(path.stat().st_size / 2 / 2**20))
        with pytest.raises(CunetError) as e:
            read(path)
        assert str(e.value).startswith(f"{path}: ") and "over the limit of" in str(e.value), e.value
        assert "set CUNET_MAX_FILE_MB to allow it" in str(e.value) and "\n" not in str(e.value)
        monkeypatch.delenv("CUNET_MAX_FILE_MB")
    monkeypatch.setenv("CUNET_MAX_FILE_MB", "lots")
    with pytest.raises(CunetError, match=r"CUNET_MAX_FILE_MB='lots': must be a positive number of MiB"):
        read_pts(tmp_path / "a.pts")


def test_an_oversized_headbox_file_is_one_line_in_the_cli(real, tmp_path, monkeypatch, capsys, pose_ckpt):
    monkeypatch.setenv("CUNET_MAX_FILE_MB", "0.5")
    big = tmp_path / "gt_valid.mat"
    big.write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 2**20)  # read whole by scipy before: 1 MiB here, 3 GB there
    poses = tmp_path / "poses"
    poses.mkdir()
    shutil.copy(real / "mpii" / "test_mpii.json", poses / "valid.json")
    code, _, err = _run(capsys, "metrics", "--task", "pose", "--gt", poses / "valid.json", "--pred",
                        poses / "valid.json", "--headboxes", big)
    _one_error(code, err, f"{big}: ", r"1\.0 MiB, over the limit of 0\.5 MiB for files cunet reads whole \(set "
                                      r"CUNET_MAX_FILE_MB to allow it\)$")


# ------------------------------------------------------------------------------------------------------ boxes
def test_predict_with_a_box_far_outside_the_image_is_a_skipped_line(real, quick_onnx, tmp_path, capsys):
    """Issue 22's row: `predict IMG --boxes '{"img.jpg": [1e9, 1e9, 2e9, 2e9]}'` was a cv2.error traceback while
    drawing; a box wholly outside the image was accepted silently."""
    image = tmp_path / "img.png"
    shutil.copy(real / "300w" / "indoor_020.png", image)  # 726 x 768
    boxes = tmp_path / "boxes.json"
    for box, ok in (([1e9, 1e9, 2e9, 2e9], False), ([-1e9, -1e9, 1e9, 1e9], False), ([-300, -300, 200, 200], True)):
        boxes.write_text(json.dumps({"img.png": box}))
        out = tmp_path / f"out-{ok}-{box[0]:g}"
        code, _, err = _run(capsys, "predict", quick_onnx("face"), image, "--boxes", boxes, "--out", out)
        assert "Traceback" not in err, err
        if ok:  # a face cut by the frame: more than half of its crop box outside the image, still a face
            assert code == 0 and (out / "img.overlay.png").is_file(), err
            continue
        assert code == 1 and not (out / "img.overlay.png").exists()
        assert re.search(rf"^skipped {re.escape(str(image))}: crop box \[.*\] lies (wholly|more than 99\.9 %) "
                         r"outside the 726x768 image \(at least 10 % of it must be inside\) \(from boxes\.json\)$",
                         err, re.M), err
    boxes.write_text(json.dumps({"img.png": [1e9, 1e9, 2e9, 2e9]}))
    code, _, err = _run(capsys, "predict", quick_onnx("face"), image, "--boxes", boxes, "--out", tmp_path / "s",
                        "--strict")
    _one_error(code, err, f"{image}: crop box")


def test_box_problem_and_drawing_far_points():
    """The rule by hand (a 100 x 100 image spans [-0.5, 99.5]; a box's area inside it over its area), and drawing
    never raises for a point beyond OpenCV's fixed-point range (it raised cv2.error)."""
    from cunet.data.preprocess import Box, box_problem
    from cunet.evaluate.draw import PRED_COLOUR, draw_landmarks

    assert box_problem(Box(50, 50, 100), 100, 100) is None  # 99.5² / 100² inside
    assert box_problem(Box(-0.5, -0.5, 100), 100, 100) is None  # a face cut by the corner: 50 x 50, 25 % inside
    assert box_problem(Box(-10.5, -10.5, 100), 100, 100) is None  # 40 x 40: 16 %
    assert box_problem(Box(49.5, 49.5, 300), 100, 100) is None  # 3x the image: 11.1 %
    assert "91.0 % outside the 100x100 image" in box_problem(Box(-20.5, -20.5, 100), 100, 100)  # 30 x 30: 9 %
    assert "93.8 % outside" in box_problem(Box(49.5, 49.5, 400), 100, 100)  # 4x the image: 6.25 %
    assert "lies wholly outside" in box_problem(Box(300, 300, 100), 100, 100)
    assert "more than 99.9 % outside" in box_problem(Box(49.5, 49.5, 1e9), 100, 100)
    image = np.zeros((20, 20, 3), np.uint8)
    drawn = draw_landmarks(image, np.array([[1e12, 5.0], [5.0, 5.0], [np.nan, 1.0]]), PRED_COLOUR)
    assert drawn[5, 5].any() and not drawn[15, 15].any()


# ---------------------------------------------------------------------------------------------- empty files
def test_an_empty_file_is_empty_file_in_every_reader(real, quick_onnx, face_ckpt, tmp_path, capsys):
    """Issue 27: an empty `.onnx` was "no 'cunet' metadata", an empty `.pts` "no '{' opening", an empty image
    "unreadable or unsupported image", an empty JSON "not valid JSON (line 1: Expecting value)", an empty `.mat`
    "not a readable MATLAB file": every reader now says `FILE: empty file`."""
    faces = tmp_path / "faces"
    faces.mkdir()
    for name in ("indoor_020.png", "indoor_029.png"):
        shutil.copy(real / "300w" / name, faces / name)
    from cunet.data.formats import read_coco_keypoints, write_pts

    for r in read_coco_keypoints(real / "300w" / "test_300w.json"):
        write_pts((faces / r.image).with_suffix(".pts"), r.points)
    empty = {s: tmp_path / f"empty{s}" for s in (".onnx", ".pt", ".json", ".xml", ".engine", ".cunetq")}
    for p in empty.values():
        p.write_bytes(b"")
    mat = tmp_path / "bounding_boxes_e.mat"
    mat.write_bytes(b"")
    gt_mat = tmp_path / "gt_valid.mat"
    gt_mat.write_bytes(b"")
    out = tmp_path / "o"
    onnx, pt = empty[".onnx"], empty[".pt"]
    commands = [
        (["evaluate", onnx, "--data", faces], onnx), (["evaluate", pt, "--data", faces], pt),
        (["evaluate", empty[".xml"], "--data", faces], empty[".xml"]),
        (["evaluate", empty[".engine"], "--data", faces], empty[".engine"]),
        (["profile", onnx], onnx), (["predict", onnx, faces / "indoor_020.png", "--out", out], onnx),
        (["calibrate", onnx, "--data", faces], onnx), (["quantize", onnx, "--recipe", "cpu", "--data", faces,
                                                         "-o", out / "q.onnx"], onnx),
        (["summary", onnx], onnx), (["summary", pt], pt), (["check-trt", onnx], onnx),
        (["compile", onnx, "--precision", "fp32", "-o", out / "m.engine"], onnx),
        (["pack", onnx, "-o", out / "m.cunetq"], onnx), (["unpack", empty[".cunetq"], "-o", out / "m.onnx"],
                                                         empty[".cunetq"]),
        (["export", pt, "-o", out / "m.onnx"], pt), (["bench", onnx, "--data", faces, "--report", out], onnx),
        (["import-original", pt, "-o", out / "m.pt"], pt), (["compare", empty[".json"]], empty[".json"]),
        (["evaluate", quick_onnx("face"), "--data", faces, "--boxes", empty[".json"]], empty[".json"]),
        (["evaluate", quick_onnx("face"), "--data", faces, "--boxes", mat], mat),
        (["predict", quick_onnx("face"), faces / "indoor_020.png", "--boxes", empty[".json"], "--out", out],
         empty[".json"]),
        (["metrics", "--task", "pose", "--gt", real / "mpii" / "test_mpii.json", "--pred",
          real / "mpii" / "test_mpii.json", "--headboxes", gt_mat], gt_mat),
    ]
    for argv, file in commands:
        code, _, err = _run(capsys, *argv)
        _one_error(code, err, f"{file}: ", r": empty file$")
    code, out_json, _ = _run(capsys, "data", "check", empty[".json"], "--task", "face", "--json")  # the lister
    assert code == 1 and json.loads(out_json)["problems"] == [{"file": str(empty[".json"]), "problem": "empty file"}]
    # inside a batch: one skipped line, the rest used
    (faces / "indoor_029.pts").write_bytes(b"")
    code, _, err = _run(capsys, "evaluate", quick_onnx("face"), "--data", faces)
    assert code == 1 and f"skipped {faces / 'indoor_029.pts'}: empty file" in err.splitlines()
    (faces / "indoor_029.pts").unlink()
    (faces / "indoor_020.png").write_bytes(b"")
    code, out_json, err = _run(capsys, "data", "check", faces, "--task", "face", "--json")
    assert code == 1 and json.loads(out_json)["problems"] == [
        {"file": str(faces / "indoor_020.png"), "problem": "empty file"},
        {"file": str(faces / "indoor_029.png"), "problem": "no .pts annotation beside the image"}]


# ------------------------------------------------------------------------------ data check on files, split names
def test_data_check_takes_a_pose_json_and_a_coco_json_file(real, capsys):
    """Issue 27: `cunet data check fixtures/mpii/test_mpii.json --task pose` said "dataset folder does not exist"
    although the file exists."""
    code, out, err = _run(capsys, "data", "check", real / "mpii" / "test_mpii.json", "--task", "pose", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["layout"] == "mpii-json" and doc["valid"] == 5 and doc["splits"] == {
        "test": {"valid": 5, "invalid": 0}}
    assert "PCKh will not be computable" in err  # the sample keeps MPII's head boxes apart
    code, out, _ = _run(capsys, "data", "check", real / "300w" / "test_300w.json", "--task", "face", "--json")
    assert code == 0 and json.loads(out)["splits"] == {"test": {"valid": 2, "invalid": 0}}


def test_a_coco_file_has_one_split_name_in_every_command(real, quick_onnx, tmp_path, capsys):
    """Issue 27: a COCO JSON's split was "test" in `data check` but "all" in `evaluate` (and `metrics`)."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("indoor_020.png", "indoor_029.png"):
        shutil.copy(real / "300w" / name, data / name)
    coco = _coco(real, data, ["indoor_029.png", "indoor_020.png"])
    _, out, _ = _run(capsys, "data", "check", coco, "--task", "face", "--json")
    checked = list(json.loads(out)["splits"])
    code, out, err = _run(capsys, "evaluate", quick_onnx("face"), "--data", coco, "--json", "--save-predictions",
                          tmp_path / "pred")
    evaluated = json.loads(out)["subset"]
    code, out, _ = _run(capsys, "metrics", "--task", "face", "--gt", coco, "--pred", tmp_path / "pred", "--json")
    scored = json.loads(out)["subset"]
    assert checked == [evaluated] == [scored] == ["test"]

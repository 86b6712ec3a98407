"""`cunet predict` on synthetic images with an exported tiny model: outputs, formats others can score, errors.

The model is untrained, so its landmarks are poor; what is checked is that predict crops, runs and writes exactly
what `cunet evaluate` computes for the same images and boxes, in files `cunet metrics` reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from cunet.cli import main  # noqa: E402

# Predict runs one image per call and evaluate 16: ONNX Runtime may sum in another order for another batch size,
# which moves a point by far less than 1e-4 px. NME is a fraction of the ~40 px eye distance, so 1e-6 NME points
# is far below anything a wrong crop, box or coordinate convention would cause (those are whole pixels).
NME_TOL = 1e-6
POINT_TOL = 1e-3  # pixels


def _export(tmp: Path, task: str) -> Path:
    from cunet.compile.export import export_onnx
    from cunet.model import CUNet, CUNetConfig

    torch.manual_seed(0)
    cfg = CUNetConfig(layers=1, order=0, channels=16, growth=8, input_size=64,
                      num_landmarks=68 if task == "face" else 16)
    onnx_path = tmp / f"{task}.onnx"
    export_onnx(CUNet(cfg).eval(), onnx_path, task=task, simplify=False, verify=False)
    return onnx_path


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    from cunet.data.formats import read_pts
    from cunet.data.synth import synthesize

    root = tmp_path_factory.mktemp("predict-face")
    synthesize(root / "data", "face", n=12, seed=3, image_size=96)
    test = root / "data" / "test"
    boxes = {}
    for pts in sorted(test.rglob("*.pts")):  # tight landmark boxes: evaluate crops from the same box
        p = read_pts(pts)
        boxes[pts.relative_to(test).with_suffix(".png").as_posix()] = [*p.min(axis=0), *p.max(axis=0)]
    (root / "boxes.json").write_text(json.dumps(boxes))
    return root / "data", root / "boxes.json", _export(root, "face")


@pytest.fixture(scope="module")
def pose(tmp_path_factory):
    from cunet.data.synth import synthesize

    root = tmp_path_factory.mktemp("predict-pose")
    synthesize(root / "data", "pose", n=12, seed=3, image_size=96)
    return root / "data", _export(root, "pose")


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_pts_output_scored_by_metrics_equals_evaluate(face, tmp_path, capsys):
    data, boxes, model = face
    preds = tmp_path / "preds"
    code, out, err = _run(capsys, "predict", model, data / "test", "--boxes", boxes, "--format", "pts",
                          "--out", preds, "--json")
    assert code == 0, err
    summary = json.loads(out)
    n_test = len(list((data / "test").rglob("*.png")))
    assert summary["images"] == n_test and summary["box_sources"] == {"box file boxes.json": n_test}
    assert "whole image" not in err
    code, out, err = _run(capsys, "metrics", "--task", "face", "--gt", data / "test", "--pred", preds, "--json")
    assert code == 0, err
    scored = json.loads(out)
    code, out, err = _run(capsys, "evaluate", model, "--data", data, "--json")
    assert code == 0, err
    evaluated = json.loads(out)
    assert scored["n"] == evaluated["n"] == n_test
    assert scored["nme"] == pytest.approx(evaluated["nme"], abs=NME_TOL)
    assert scored["nme"] > 0


def test_per_image_json_overlay_and_whole_image_box(face, tmp_path, capsys):
    data, _, model = face
    image = sorted((data / "test" / "common").glob("*.png"))[0]
    # --no-detect: with cunet[detect] installed, a face without --boxes would be cropped from the detector's box
    code, out, err = _run(capsys, "predict", model, image, "--no-detect", "--out", tmp_path / "o")
    assert code == 0, err
    assert out == ""  # without --json nothing goes to stdout
    assert "no --boxes given: the whole image is the face box for 1 image(s)" in err
    doc = json.loads((tmp_path / "o" / f"{image.stem}.json").read_text())
    h, w = cv2.imread(str(image)).shape[:2]
    inst = doc["instances"]
    assert len(inst) == 1 and inst[0]["box_source"] == "whole image"
    assert inst[0]["box"]["cx"] == (w - 1) / 2 and inst[0]["box"]["size"] == max(h, w)
    assert np.asarray(inst[0]["points"]).shape == (68, 2)
    assert doc["model"] == str(model) and doc["backend"] == "ort-cpu" and doc["provider"] == "CPUExecutionProvider"
    overlay = cv2.imread(str(tmp_path / "o" / f"{image.stem}.overlay.png"))
    original = cv2.imread(str(image))
    assert overlay.shape == original.shape and np.abs(overlay.astype(int) - original).sum() > 0  # something drawn
    # The same points as the Predictor gives for the same box.
    from cunet.runtime import open_predictor

    with open_predictor(model, backend="ort-cpu") as p:
        direct = p.predict([original])[0]
    assert np.allclose(inst[0]["points"], direct, atol=POINT_TOL)


def test_mpii_output_matches_evaluate_predictions(pose, tmp_path, capsys):
    data, model = pose
    code, out, err = _run(capsys, "predict", model, data, "--boxes", data / "valid.json", "--format", "mpii",
                          "--out", tmp_path / "preds", "--no-draw", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["mpii_file"] == str(tmp_path / "preds" / "valid.json")
    assert summary["skipped"]  # training images have no record in valid.json
    assert not list((tmp_path / "preds").glob("*.overlay.png"))
    code, out, err = _run(capsys, "metrics", "--task", "pose", "--gt", data / "valid.json", "--pred",
                          tmp_path / "preds", "--json")
    assert code == 0, err
    code, _, err = _run(capsys, "evaluate", model, "--data", data, "--save-predictions", tmp_path / "eval")
    assert code == 0, err
    mine = json.loads((tmp_path / "preds" / "valid.json").read_text())
    theirs = json.loads((tmp_path / "eval" / "valid.json").read_text())
    assert [r["image"] for r in mine] == [r["image"] for r in theirs]
    assert np.allclose([r["joints"] for r in mine], [r["joints"] for r in theirs], atol=POINT_TOL)


def test_folder_outputs_mirror_input_names(face, tmp_path, capsys):
    data, boxes, model = face
    code, _, err = _run(capsys, "predict", model, data / "test", "--boxes", boxes, "--out", tmp_path / "p",
                        "--no-draw")
    assert code == 0, err
    names = sorted(p.relative_to(tmp_path / "p").as_posix() for p in (tmp_path / "p").rglob("*.json"))
    expected = sorted(p.relative_to(data / "test").with_suffix(".json").as_posix()
                      for p in (data / "test").rglob("*.png"))
    assert names == expected and any("/" in n for n in names)


@pytest.mark.parametrize("case", ["no box", "not an image", "missing", "mpii for faces", "bad box file"])
def test_bad_input_is_one_line_error(face, tmp_path, capsys, case):
    data, boxes, model = face
    image = sorted((data / "test" / "common").glob("*.png"))[0]
    args = ["predict", model, image, "--out", tmp_path / "o"]
    expect = {"no box": f"{image}: no box for this image in {tmp_path / 'other.json'}",
              "not an image": f"{boxes}: not an image file",
              "missing": f"{tmp_path / 'nope.png'}: no such file or folder",
              "mpii for faces": f"{model}: --format mpii writes human pose; this is a face model",
              "bad box file": f"{image}: {tmp_path / 'bad.json'}: box of '{image.name}' must be [x1, y1, x2, y2]"}[case]
    if case == "no box":
        (tmp_path / "other.json").write_text(json.dumps({"elsewhere.png": [0, 0, 10, 10]}))
        args += ["--boxes", tmp_path / "other.json", "--strict"]  # without --strict: skipped (tests/reliability)
    elif case == "not an image":
        args[2] = boxes
    elif case == "missing":
        args[2] = tmp_path / "nope.png"
    elif case == "mpii for faces":
        args += ["--format", "mpii"]
    else:
        (tmp_path / "bad.json").write_text(json.dumps({image.name: [5, 5, 1, 1]}))  # an entry, not the file, is bad
        args += ["--boxes", tmp_path / "bad.json", "--strict"]
    code, out, err = _run(capsys, *args)
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expect}"), err
    assert not (tmp_path / "o").exists()



def test_overlay_dots_follow_the_face_box_not_the_image(face, tmp_path):
    """A 40-px face in a 3000-px photo keeps dot-sized dots (the image-scaled radius was 10 px and hid the face)."""
    from cunet.pipeline.predict import PredictOptions, overlay_radius, predict_files

    _, _, model = face
    photo = np.full((3000, 3000, 3), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), photo)
    (tmp_path / "boxes.json").write_text(json.dumps({"photo.png": [1500, 1500, 1540, 1540]}))
    predict_files(PredictOptions(model=model, inputs=(tmp_path / "photo.png",), out=tmp_path / "o",
                                 boxes=tmp_path / "boxes.json"))
    from cunet.data.spec import get_spec
    from cunet.evaluate.draw import PRED_COLOUR, draw_landmarks

    def changed(image: np.ndarray) -> int:
        return int((np.abs(image.astype(int) - photo).sum(axis=2) > 0).sum())

    drawn = cv2.imread(str(tmp_path / "o" / "photo.overlay.png"))
    instance = json.loads((tmp_path / "o" / "photo.json").read_text())["instances"][0]
    points, box = np.array(instance["points"]), instance["box"]["size"]
    skeleton = get_spec("face").skeleton
    assert overlay_radius(box) == 1.0 and overlay_radius(1280) == 10.0
    assert np.array_equal(drawn, draw_landmarks(photo, points, PRED_COLOUR, skeleton=skeleton,
                                                radius=overlay_radius(box)))
    dots_now = changed(draw_landmarks(photo, points, PRED_COLOUR, radius=overlay_radius(box)))
    dots_before = changed(draw_landmarks(photo, points, PRED_COLOUR, radius=3000 / 300))  # max(H, W) / 300
    assert dots_now < dots_before / 4, (dots_now, dots_before)  # overlapping 10-px dots hide the face

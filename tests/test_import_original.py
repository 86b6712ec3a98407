"""`cunet import-original` end to end: the CLI in a real subprocess, the original preprocessing in the checkpoint,
the exported ONNX metadata, ONNX Runtime, calibration, `predict --boxes` and `evaluate --boxes` with iBUG `.mat`
detector boxes on real 300-W faces (the shared fixtures, when present).

The model is the committed original-code fixture (tests/fixtures/original/, see tests/model/test_original.py),
written as the original `Checkpoint` class writes it, imported at a 64 px input so everything runs in seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
scipy_io = pytest.importorskip("scipy.io")

from cunet.model.original import import_original  # noqa: E402
from cunet.data.preprocess import box_from_points, box_from_xyxy  # noqa: E402
from cunet.errors import CunetError  # noqa: E402
from cunet.runtime.meta import ModelMeta, read_onnx_meta  # noqa: E402

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixtures" / "original" / "cu_net_L2_K1_face.npz"
SHARED_300W = HERE.parent / ".." / "shared" / "fixtures" / "300w"
ORIGINAL = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "stretch": "minmax", "box_margin": 1.1,
            "crop": "original"}


def _preprocessing(meta) -> tuple:
    return meta.mean, meta.std, meta.stretch, meta.box_margin, meta.crop


def _original_file(path: Path) -> Path:
    """The fixture's prev_version-layout weights saved as the original face script's Checkpoint would (legacy)."""
    z = np.load(FIXTURE)
    state, offset = {}, 0
    for _key, prev_key, shape in json.loads(str(z["index"])):
        n = int(np.prod(shape))
        if prev_key is not None:
            state[f"module.{prev_key}"] = torch.from_numpy(z["weights"][offset : offset + n].reshape(shape).copy())
        offset += n
    ckpt = {"state_dict": state, "optimizer": {"state": {}, "param_groups": []},
            "train_history": {"rmse": [{"val_rmse": np.float64(0.04)}], "is_best": np.bool_(True)}}
    torch.save(ckpt, path, _use_new_zipfile_serialization=False, pickle_protocol=2)
    return path


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cunet", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """(original .pth.tar, imported .pt, exported .onnx)."""
    from cunet.compile.export import export_onnx

    root = tmp_path_factory.mktemp("orig")
    src = _original_file(root / "face-layer-num-2-order-1.pth.tar")
    pt = root / "face.pt"
    import_original(src, pt, input_size=64)
    onnx_path = root / "face.onnx"
    export_onnx(pt, onnx_path, simplify=False)
    return src, pt, onnx_path


def test_cli_writes_one_json_object_and_refuses_to_overwrite(tmp_path):
    from cunet.io import Output, WritePolicy, write_bytes, writing

    src = _original_file(tmp_path / "orig.pth.tar")
    done = _cli("import-original", str(src), "-o", "out.pt", "--input-size", "64", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["layout"] == "prev_version" and result["task"] == "face" and result["heads"] == [0, 1]
    assert (result["config"]["layers"], result["config"]["order"], result["config"]["channels"]) == (2, 1, 8)
    assert result["parameters"] == 22088 and result["preprocess"]["stretch"] == "minmax"
    again = _cli("import-original", str(src), "-o", "out.pt", "--input-size", "64", cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # its own earlier output (.cunet-outputs proves it): replaced
    # A trained run's checkpoint, recorded as written by `cunet train --out`, is not import-original's to replace.
    run = tmp_path / "run"
    with writing(WritePolicy([Output(run, "cunet train", "--out", folder=True)])):
        write_bytes(run / "best.pt", (tmp_path / "out.pt").read_bytes())
    before = (run / "best.pt").read_bytes()
    refused = _cli("import-original", str(src), "-o", "run/best.pt", cwd=tmp_path)
    assert refused.returncode == 1 and refused.stderr.strip().count("\n") == 0
    assert refused.stderr.startswith("error: run/best.pt: exists and it was written by `cunet train --out`")
    assert "--force" in refused.stderr
    assert (run / "best.pt").read_bytes() == before
    bad = tmp_path / "bad.pth.tar"
    torch.save({"state_dict": {"features.conv0.weight": torch.zeros(8, 3, 7, 7)}}, bad)
    refused = _cli("import-original", str(bad), "-o", "bad.pt", cwd=tmp_path)
    assert refused.returncode == 1 and refused.stderr.startswith("error: ")
    assert "no 'hg.down_blocks.0.layers.0.norm1.weight' (models/cu_net.py)" in refused.stderr
    assert not (tmp_path / "bad.pt").exists()


def test_checkpoint_and_onnx_record_the_original_preprocessing(imported):
    from cunet.model.checkpoint import load_checkpoint

    src, pt, onnx_path = imported
    ckpt = load_checkpoint(pt)
    assert ckpt["original"]["layout"] == "prev_version" and ckpt["original"]["file"] == src.name
    for meta in (ModelMeta.from_checkpoint(ckpt), read_onnx_meta(onnx_path)):
        assert _preprocessing(meta) == tuple(ORIGINAL.values())
        assert meta.input_size == 64 and meta.task == "face"


def test_records_without_the_new_fields_keep_cunet_preprocessing(imported):
    d = read_onnx_meta(imported[2]).to_dict()
    assert d["stretch"] == "minmax" and d["box_margin"] == 1.1 and d["crop"] == "original"
    old = {k: v for k, v in d.items() if k not in ("stretch", "box_margin", "crop")}
    meta = ModelMeta.from_dict(old)
    assert meta.stretch == "none" and meta.box_margin == 1.25 and meta.crop == "cunet"
    for key in ("stretch", "box_margin", "crop"):  # old records stay as they were
        assert key not in meta.to_dict()
    # A file imported before `crop` existed keeps the cunet crop it had.
    assert ModelMeta.from_dict({k: v for k, v in d.items() if k != "crop"}).crop == "cunet"
    with pytest.raises(CunetError, match="crop must be one of"):
        ModelMeta.from_dict({**d, "crop": "scipy"})
    with pytest.raises(CunetError, match="stretch must be one of"):
        ModelMeta.from_dict({**d, "stretch": "gamma"})
    with pytest.raises(CunetError, match="box_margin must be a number"):
        ModelMeta.from_dict({**d, "box_margin": -1})


def test_onnx_runtime_reproduces_the_original_heatmaps(imported):
    from cunet.runtime import open_predictor

    z = np.load(FIXTURE)
    with open_predictor(imported[2], backend="ort-cpu") as p:
        y = p.predict_heatmaps(z["input"])
    ref = z["heatmaps"]
    # 1e-3, not the converter's 1e-4 (held in torch, where it measures 0.0): ONNX Runtime folds each BatchNorm into
    # its conv and runs other float32 kernels; measured 4.7e-5 on this machine, and CPUs with other vector units
    # round differently. A wiring error is O(0.5) (tests/model/test_original.py).
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) <= 1e-3


def _real_faces(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A 300-W style test folder of the shared real faces and an iBUG-layout .mat of their boxes (1-based)."""
    import cv2

    from cunet.data.formats import write_pts

    if not SHARED_300W.is_dir():
        pytest.skip("shared 300-W fixtures not present")
    coco = json.loads((SHARED_300W / "test_300w.json").read_text())
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "test" / "common").mkdir(parents=True)
    boxes, entries = {}, []
    for a in coco["annotations"]:
        name = names[a["image_id"]]
        image = cv2.imread(str(SHARED_300W / name))
        for split in ("train", "test/common"):
            cv2.imwrite(str(data / split / name), image)
            write_pts(data / split / Path(name).with_suffix(".pts"), np.array(a["keypoints"]).reshape(-1, 3)[:, :2])
        x, y, w, h = a["bbox"]
        boxes[f"test/common/{name}"] = (x, y, x + w, y + h)
        entries.append((name, [x + 1, y + 1, x + w + 1, y + h + 1]))
    from tests.data.test_detector_boxes import write_ibug_mat

    mat = write_ibug_mat(tmp_path / "bounding_boxes_300w_indoor.mat", entries)
    return data, mat, boxes


def test_evaluate_boxes_crops_by_the_models_rule(imported, tmp_path):
    from cunet.data.formats import read_pts
    from cunet.evaluate.accuracy import evaluate
    from cunet.runtime import open_predictor

    data, mat, boxes = _real_faces(tmp_path)
    onnx_path = imported[2]
    result = evaluate(onnx_path, data, backend="ort-cpu", boxes=mat, save_predictions=tmp_path / "pred")
    assert result["n"] == 2 and result["boxes"] == str(mat)
    import cv2

    with open_predictor(onnx_path, backend="ort-cpu") as p:
        for key, xyxy in boxes.items():
            want = p.predict([cv2.imread(str(data / key))], [box_from_xyxy(*xyxy, margin=1.1)])[0]
            got = read_pts(tmp_path / "pred" / Path(key).with_suffix(".pts"))
            np.testing.assert_allclose(got, want, atol=1e-3)  # .pts files hold 3 decimals
    # without boxes: the landmark box, with the model's margin too
    evaluate(onnx_path, data, backend="ort-cpu", save_predictions=tmp_path / "pred2")
    with open_predictor(onnx_path, backend="ort-cpu") as p:
        key = next(iter(boxes))
        pts = read_pts(data / Path(key).with_suffix(".pts"))
        want = p.predict([cv2.imread(str(data / key))], [box_from_points(pts, margin=1.1)])[0]
    np.testing.assert_allclose(read_pts(tmp_path / "pred2" / Path(key).with_suffix(".pts")), want, atol=1e-3)


def test_evaluate_boxes_refusals(imported, tmp_path):
    """The batch rule: an image without a box is skipped (strict: stops there); a box file for none is an error."""
    from cunet.evaluate.accuracy import evaluate
    from tests.data.test_detector_boxes import write_ibug_mat

    data, _, _ = _real_faces(tmp_path)
    partial = write_ibug_mat(tmp_path / "bounding_boxes_one.mat", [("indoor_020.png", [10, 10, 300, 300])])
    result = evaluate(imported[2], data, backend="ort-cpu", boxes=partial)
    missing = str((data / "test" / "common" / "indoor_029.png").resolve())
    assert result["n"] == 1 and result["skipped"] == [
        {"file": missing, "problem": f"no detector box for this image in {partial}"}]
    with pytest.raises(CunetError, match=rf"{missing}: no detector box for this image"):
        evaluate(imported[2], data, backend="ort-cpu", boxes=partial, strict=True)
    other = write_ibug_mat(tmp_path / "bounding_boxes_two.mat", [("elsewhere.png", [10, 10, 300, 300])])
    with pytest.raises(CunetError, match=r"no detector box for 2 of 2 image\(s\), e.g. test/common/indoor_020.png"):
        evaluate(imported[2], data, backend="ort-cpu", boxes=other)


def test_predict_with_mat_boxes_uses_the_models_margin(imported, tmp_path):
    from cunet.pipeline.predict import PredictOptions, predict_files

    data, mat, boxes = _real_faces(tmp_path)
    out = predict_files(PredictOptions(model=imported[2], inputs=(data / "test",), out=tmp_path / "out",
                                       boxes=mat, backend="ort-cpu", draw=False))
    assert out["images"] == 2
    for doc in out["predictions"]:
        x1, y1, x2, y2 = boxes[f"test/{doc['name']}"]
        box = doc["instances"][0]["box"]
        assert box["cx"] == pytest.approx((x1 + x2) / 2) and box["cy"] == pytest.approx((y1 + y2) / 2)
        assert box["size"] == pytest.approx(1.1 * max(x2 - x1, y2 - y1))


def test_calibration_inputs_follow_the_recorded_preprocessing(imported, tmp_path):
    from cunet.calib.reader import read_preprocess_spec, select_calibration_images

    data, _, _ = _real_faces(tmp_path)
    spec = read_preprocess_spec(imported[2])
    assert (spec.stretch, spec.box_margin, spec.mean, spec.std) == ("minmax", 1.1, (0.0,) * 3, (1.0,) * 3)
    selection = select_calibration_images(data, spec, samples=2)
    from cunet.data.formats import read_pts

    import cv2

    from cunet.data.preprocess import prepare_inputs

    assert spec.crop == "original"
    for path, box in selection.items:
        assert box == box_from_points(read_pts(path.with_suffix(".pts")), margin=1.1)
    arrays = selection.load().arrays
    images = [cv2.imread(str(path)) for path, _ in selection.items]
    want, _ = prepare_inputs(images, [box for _, box in selection.items], 64, (0.0,) * 3, (1.0,) * 3, "minmax",
                             "original")
    np.testing.assert_array_equal(arrays, want)  # the original's crop, as every runtime makes it


def test_every_compiled_form_keeps_the_original_preprocessing(imported, tmp_path):
    """`crop: "original"` (and the rest of the record) travels through every quantize recipe (the OpenVINO IR's
    rt_info too), the FP16 model and an engine manifest."""
    import importlib.util

    from cunet.compile.quantize import quantize
    from cunet.compile.tensorrt import BatchProfile, build_manifest, fp16_converter, inspect_source, to_fp16_onnx
    from cunet.runtime.manifest import DeviceInfo, write_manifest
    from cunet.runtime.meta import read_engine_meta, read_ir_meta

    data, _, _ = _real_faces(tmp_path)
    recipes = ["cpu", "tensorrt"] + (["openvino"] if importlib.util.find_spec("nncf") else [])
    metas = {}
    for recipe in recipes:
        if recipe == "openvino":
            from cunet.compile.openvino import quantize_openvino

            quantize_openvino(imported[2], tmp_path / "face.openvino.xml", data, samples=2)
            metas[recipe] = read_ir_meta(tmp_path / "face.openvino.xml")
            continue
        out = tmp_path / f"face.{recipe}.onnx"
        quantize(imported[2], out, recipe, data, samples=2, cache_dir=tmp_path / "cache")
        metas[recipe] = read_onnx_meta(out)
        assert metas[recipe].precision == "int8" and metas[recipe].recipe == recipe
    if fp16_converter() is not None:
        metas["fp16"] = read_onnx_meta(to_fp16_onnx(imported[2], tmp_path / "face.fp16.onnx"))
    engine = tmp_path / "face.int8.engine"
    engine.write_bytes(b"engine bytes stand-in")  # the manifest is written beside an engine; no GPU needed
    proto, meta, _ = inspect_source(tmp_path / "face.tensorrt.onnx", "int8")
    write_manifest(engine, build_manifest(engine, tmp_path / "face.tensorrt.onnx", proto, meta, "int8",
                                          BatchProfile(1, 1, 1), DeviceInfo("10.3.0", "Orin", "8.7"),
                                          strongly_typed=True))
    metas["engine"] = read_engine_meta(engine)
    for name, m in metas.items():
        assert _preprocessing(m) == tuple(ORIGINAL.values()), name


def test_runtimes_crop_an_imported_model_as_the_original(imported, tmp_path):
    """The Predictor (torch and ONNX Runtime) feeds the original's crop, not cunet's; `--decode original` gives the
    original's whole-pixel points, the default decoder sub-pixel ones."""
    import cv2

    from cunet.data.preprocess import prepare_inputs
    from cunet.evaluate.accuracy import evaluate
    from cunet.runtime import open_predictor

    data, mat, boxes = _real_faces(tmp_path)
    key, xyxy = next(iter(boxes.items()))
    image, box = cv2.imread(str(data / key)), box_from_xyxy(*xyxy, margin=1.1)
    want, _ = prepare_inputs([image], [box], 64, (0.0,) * 3, (1.0,) * 3, "minmax", "original")
    cunet_crop, _ = prepare_inputs([image], [box], 64, (0.0,) * 3, (1.0,) * 3, "minmax", "cunet")
    assert np.abs(want - cunet_crop).max() > 0.1
    for model in imported[1:]:
        with open_predictor(model, backend="auto") as p:
            np.testing.assert_array_equal(p.preprocess([image], [box])[0], want)
    sub = evaluate(imported[2], data, backend="ort-cpu", boxes=mat, save_predictions=tmp_path / "dark")
    whole = evaluate(imported[2], data, backend="ort-cpu", boxes=mat, save_predictions=tmp_path / "orig",
                     decode="original")
    assert sub["n"] == whole["n"] == 2
    from cunet.data.formats import read_pts

    got = read_pts(tmp_path / "orig" / Path(key).with_suffix(".pts"))
    np.testing.assert_array_equal(got, np.round(got))  # whole pixels (1-based in the file, 0-based here)
    assert not np.array_equal(got, read_pts(tmp_path / "dark" / Path(key).with_suffix(".pts")))


def test_tensorrt_recipe_of_an_imported_model_has_one_scale_per_concat(imported, tmp_path):
    """Issue 26: an imported original model through --recipe tensorrt: no error and no concat-scale warning."""
    from cunet.compile.quantize import quantize
    from cunet.compile.trt_rules import check_trt
    from cunet.data.synth import synthesize

    synthesize(tmp_path / "faces", "face", n=4, seed=0, image_size=80)
    out = tmp_path / "face.trt.onnx"
    quantize(imported[2], out, "tensorrt", tmp_path / "faces", samples=4, cache_dir=tmp_path / "cache")
    assert check_trt(out, strict=True) == []

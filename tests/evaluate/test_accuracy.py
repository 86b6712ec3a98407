"""`evaluate` / `cunet evaluate` end to end on tiny synthetic datasets with a tiny untrained CU-Net.

An untrained model predicts poorly, which is fine: these tests check the plumbing (task checks, saved predictions
that `cunet metrics` rescores to the identical numbers, plots, JSON keys), not accuracy.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from cunet.cli import main  # noqa: E402
from cunet.errors import CunetError  # noqa: E402
from cunet.evaluate.accuracy import evaluate  # noqa: E402
from cunet.evaluate.scoring import score_face, score_pose  # noqa: E402

RUN_KEYS = {"model", "task", "backend", "provider", "device", "precision", "flip", "boxes", "skipped",
            "nonfinite_files"}
#: What `cunet metrics` adds about files it could not match (all empty when the predictions are complete).
CLEAN = {"missing": [], "bad": [], "ignored": 0, "skipped": []}


@pytest.fixture(scope="module")
def face_setup(tmp_path_factory, tiny_checkpoint):
    from cunet.data.synth import synthesize

    root = tmp_path_factory.mktemp("face")
    synthesize(root / "data", "face", n=10, seed=1, image_size=96)
    return root / "data", tiny_checkpoint("face")


@pytest.fixture(scope="module")
def pose_setup(tmp_path_factory, tiny_checkpoint):
    from cunet.data.synth import synthesize

    root = tmp_path_factory.mktemp("pose")
    synthesize(root / "data", "pose", n=10, seed=1, image_size=96)
    return root / "data", tiny_checkpoint("pose")


def test_face_saved_predictions_rescore_to_identical_numbers(face_setup, tmp_path):
    data, ckpt = face_setup
    r = evaluate(ckpt, data, save_predictions=tmp_path / "pred", plot_dir=tmp_path / "plots", batch=3)
    assert r["task"] == "face" and r["backend"] == "torch" and r["provider"] and r["flip"] is False
    assert r["n"] > 0 and r["nme"] > 0
    again = score_face(data, tmp_path / "pred")
    assert again == {**{k: v for k, v in r.items() if k not in RUN_KEYS}, **CLEAN}  # exactly, not approximately
    assert (tmp_path / "plots" / "ced.png").read_bytes()[:4] == b"\x89PNG"


def test_pose_saved_predictions_rescore_to_identical_numbers(pose_setup, tmp_path, pckh_by_hand):
    data, ckpt = pose_setup
    r = evaluate(ckpt, data, flip=True, save_predictions=tmp_path / "pred", plot_dir=tmp_path / "plots")
    assert r["flip"] is True and r["pckh_style"] == "mpii" and r["nonfinite"] == 0
    truth = json.loads((data / "valid.json").read_text())
    pred = json.loads((tmp_path / "pred" / "valid.json").read_text())
    assert r["pckh@0.5"] == pytest.approx(pckh_by_hand(truth, pred), abs=1e-9)  # plain Python, not cunet's code
    # An untrained model scores 0 everywhere, which any code would match: the same file with every other
    # annotated joint replaced by its ground truth must score what plain Python says (strictly between 0 and 100)
    for g, p in zip(truth, pred):
        for j in range(0, 16, 2):
            if g["joints_vis"][j]:
                p["joints"][j], p["joints_vis"][j] = g["joints"][j], 1
    (tmp_path / "half" / "valid.json").parent.mkdir()
    (tmp_path / "half" / "valid.json").write_text(json.dumps(pred))
    half = score_pose(data, tmp_path / "half")
    assert 0 < half["pckh@0.5"] < 100 and half["pckh@0.5"] == pytest.approx(pckh_by_hand(truth, pred), abs=1e-9)
    assert score_pose(data, tmp_path / "pred") == {**{k: v for k, v in r.items() if k not in RUN_KEYS}, **CLEAN}
    assert (tmp_path / "plots" / "pckh.png").is_file()


def test_wrong_task_is_a_clear_error(face_setup, pose_setup):
    with pytest.raises(CunetError, match="a face model cannot be evaluated on pose data"):
        evaluate(face_setup[1], pose_setup[0], task="pose")


def test_cli_json_and_metrics_roundtrip(face_setup, tmp_path, capsys):
    data, ckpt = face_setup
    pred = tmp_path / "pred"
    assert main(["evaluate", str(ckpt), "--data", str(data), "--json", "--save-predictions", str(pred)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"nme", "auc@0.08", "auc@0.10", "fr@0.08", "fr@0.10", "n", "norm"} | RUN_KEYS <= set(out)
    assert main(["metrics", "--task", "face", "--gt", str(data), "--pred", str(pred), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {**{k: v for k, v in out.items() if k not in RUN_KEYS}, **CLEAN}


def test_onnx_on_ort_cpu_matches_the_checkpoint(face_setup, tmp_path):
    pytest.importorskip("onnxruntime")
    from cunet.compile.export import export_onnx

    data, ckpt = face_setup
    onnx_path = tmp_path / "face.onnx"
    export_onnx(ckpt, onnx_path, verify=False)
    on_ort = evaluate(onnx_path, data, backend="ort-cpu")
    on_torch = evaluate(ckpt, data)
    assert on_ort["backend"] == "ort-cpu" and on_ort["provider"] == "CPUExecutionProvider"
    assert on_ort["task"] == "face"  # taken from the ONNX metadata
    # Same weights, different kernels: float32 heatmaps differ by ~1e-6, which can move a decoded sub-pixel peak by
    # a tiny amount; 0.01 NME-percentage points is far below any real difference between models.
    assert on_ort["nme"] == pytest.approx(on_torch["nme"], abs=1e-2)

"""A model that returns NaN for some images is a failing model, never a shorter test set (issue 23, item 1).

The model is real: a tiny cunet export with an appended ONNX Where that makes the heatmaps NaN for every image whose
normalised crop is darker (by mean) than the median of the test images. `evaluate` must count those images in `n`,
report them in `nonfinite`, fail them in FR@0.10 and exit 1; a model that is NaN everywhere is one line.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from cunet.errors import CunetError  # noqa: E402
from cunet.evaluate.accuracy import evaluate  # noqa: E402


@pytest.fixture(scope="module")
def broken(tmp_path_factory, tiny_checkpoint, nan_model):
    """(data, the NaN-below-median model, the NaN-everywhere model, the test images that break)."""
    from cunet.compile.export import export_onnx
    from cunet.data.dataset import load_samples, read_image
    from cunet.data.synth import synthesize
    from cunet.runtime import open_predictor

    root = tmp_path_factory.mktemp("nonfinite")
    data = root / "data"
    synthesize(data, "face", n=20, seed=4, image_size=96)
    fp32 = export_onnx(tiny_checkpoint("face"), root / "face.onnx", verify=False) and root / "face.onnx"
    samples = load_samples(data, "face", "test").samples
    with open_predictor(fp32, backend="ort-cpu") as p:
        x, _ = p.preprocess([read_image(s.image) for s in samples], [s.box for s in samples])
    brightness = x.mean(axis=(1, 2, 3))
    # the median, taken between the two middle values: no image sits at the threshold, where ONNX Runtime's float32
    # mean and numpy's could disagree
    middle = np.sort(brightness)[len(brightness) // 2 - 1: len(brightness) // 2 + 1]
    threshold = float(middle.mean())
    dark = sorted(str(s.image) for s, b in zip(samples, brightness) if b < threshold)
    assert 0 < len(dark) < len(samples)  # some images break and some do not, or the test proves nothing
    half = nan_model(fp32, root / "half-nan.onnx", threshold)
    everywhere = nan_model(fp32, root / "all-nan.onnx", float("inf"))
    return data, half, everywhere, dark, len(samples)


def test_nan_predictions_count_as_failures(broken, tmp_path):
    data, half, _, dark, n = broken
    r = evaluate(half, data, backend="ort-cpu", save_predictions=tmp_path / "pred")
    assert r["n"] == n and r["nonfinite"] == len(dark)
    assert sorted(r["nonfinite_files"]) == dark
    assert r["fr@0.10"] >= 100 * len(dark) / n
    assert np.isfinite(r["nme"])  # the mean of the finite errors, reported beside the count of the others
    # AUC@0.10 counts the broken images as 0: at most the finite share of a perfect score
    assert r["auc@0.10"] <= (n - len(dark)) / n
    assert r["skipped"] == [] and r["device"] == "cpu" and r["precision"] == "fp32"
    # a .pts cannot hold NaN: the broken images get no prediction file
    assert len(list((tmp_path / "pred").rglob("*.pts"))) == n - len(dark)


def test_cli_exits_1_and_names_every_broken_image(broken):
    data, half, _, dark, n = broken
    proc = subprocess.run([sys.executable, "-m", "cunet", "evaluate", str(half), "--data", str(data), "--backend",
                           "ort-cpu", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert out["nonfinite"] == len(dark) and out["n"] == n
    lines = proc.stderr.strip().splitlines()
    assert [ln for ln in lines if "not finite (NaN or inf)" in ln] == \
        [f"{f}: the prediction is not finite (NaN or inf); counted as a failure" for f in out["nonfinite_files"]]
    assert lines[-1].startswith(f"error: the model's prediction is not finite for {len(dark)} of {n} image(s)")


def test_all_nan_is_one_line(broken):
    data, _, everywhere, _, n = broken
    with pytest.raises(CunetError, match=f"every prediction is NaN or inf \\({n} image"):
        evaluate(everywhere, data, backend="ort-cpu")
    proc = subprocess.run([sys.executable, "-m", "cunet", "evaluate", str(everywhere), "--data", str(data)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and proc.stderr.strip().startswith("error: ")


def test_predict_writes_nothing_for_a_nan_image_and_says_so(broken, tmp_path):
    data, half, everywhere, dark, n = broken
    images = sorted(str(p) for p in (data / "test").rglob("*.png"))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "cunet", "predict", str(half), *images, "--out", str(out),
                           "--no-draw", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    # the whole-image crop differs from the landmark-box crop evaluate used, so which images break is read from
    # the result: every failure is a non-finite prediction, every success wrote its JSON, a failure nothing
    broken_names = {f["file"] for f in doc["failed"]}
    assert broken_names and all("not finite" in f["problem"] for f in doc["failed"])
    assert doc["images"] + len(broken_names) == len(images)
    for image in images:
        written = (out / image.rsplit("/", 1)[1]).with_suffix(".json").is_file()
        assert written == (image not in broken_names)
        pts = [json.loads(p.read_text())["instances"][0]["points"] for p in out.glob("*.json")]
        assert all(np.isfinite(np.asarray(p)).all() for p in pts)
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("skipped ")] == \
        [f"skipped {f['file']}: {f['problem']}" for f in doc["failed"]]
    proc = subprocess.run([sys.executable, "-m", "cunet", "predict", str(everywhere), *images, "--out",
                           str(tmp_path / "all")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "every prediction is NaN or inf" in proc.stderr and not list((tmp_path / "all").glob("*.json"))

"""Bench as a gate (issue 23, items 1, 2 and 9): a row with non-finite predictions fails, `--max-drop` fails on any
row that was not measured for a reason other than missing hardware, and an ONNX input reports its calibration count.

The rows are real: a tiny cunet export and the same export with an appended ONNX Where that returns NaN for the
darker half of the images (tests/conftest.py `nan_model`), scored and timed by bench's own `_run_row`.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from cunet.pipeline.bench import _calibration, _preprocess_spec, _run_row, gate_failures  # noqa: E402
from cunet.pipeline.bench_plan import Artifact  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_checkpoint, nan_model):
    from cunet.compile.export import export_onnx
    from cunet.data.dataset import load_samples, read_image
    from cunet.data.synth import synthesize
    from cunet.runtime import open_predictor

    root = tmp_path_factory.mktemp("gate")
    data = root / "data"
    synthesize(data, "face", n=20, seed=4, image_size=96)
    fp32 = root / "face.onnx"
    export_onnx(tiny_checkpoint("face"), fp32, verify=False)
    samples = load_samples(data, "face", "test").samples
    with open_predictor(fp32, backend="ort-cpu") as p:
        x, _ = p.preprocess([read_image(s.image) for s in samples], [s.box for s in samples])
    middle = np.sort(x.mean(axis=(1, 2, 3)))[len(x) // 2 - 1: len(x) // 2 + 1]
    threshold = float(middle.mean())  # between the two middle images: none sits at the threshold
    return data, fp32, nan_model(fp32, root / "half-nan.onnx", threshold), len(samples)


def _opts(data):
    return SimpleNamespace(data=data, threads=1, batch=1, warmup=1, timed_iters=2, samples=64, video=None)


def test_a_row_with_nan_predictions_fails_validation(models, tmp_path):
    data, fp32, half, n = models
    ok, _ = _run_row(Artifact("onnx-fp32", "onnx", "fp32", "ort-cpu", fp32), _opts(data), "face", tmp_path, {},
                     lambda what: None)
    assert ok["status"] == "ok" and ok["nonfinite"] == 0 and ok["device"] == "cpu"
    assert ok["provider"] == "CPUExecutionProvider" and ok["load_peak_mb"] > 0 and ok["run_peak_mb"] > 0
    assert ok["peak_mb"] == ok["run_peak_mb"] and ok["device_peak_mb"] is None
    bad, errors = _run_row(Artifact("onnx-int8-cpu", "onnx", "int8", "ort-cpu", half), _opts(data), "face",
                           tmp_path, {}, lambda what: None)
    assert bad["status"] == "failed validation" and 0 < bad["nonfinite"] < n
    assert bad["reason"] == f"{bad['nonfinite']} of {n} predictions are not finite (NaN or inf); they count as " \
                            "failures in its nme"
    assert np.isinf(errors).sum() == bad["nonfinite"]  # the CED/plots see them as failures too
    assert gate_failures([ok, bad]) == [bad]


def test_the_gate_fails_on_rows_that_were_not_measured():
    row = dict(status="ok", skip_kind=None)
    hardware = dict(status="skipped", skip_kind="hardware")
    nothing_to_run = dict(status="skipped", skip_kind="not applicable")
    missing_package = dict(status="skipped", skip_kind="not installed")
    failed = dict(status="failed", skip_kind=None)
    assert gate_failures([row, hardware, nothing_to_run]) == []
    assert gate_failures([row, missing_package, failed]) == [missing_package, failed]
    assert gate_failures([failed, dict(failed)]) == [failed, failed]  # every row failed: the gate fails


def test_an_onnx_input_reports_its_calibration_images(models):
    data, fp32, _, _ = models
    images, counts = _calibration(SimpleNamespace(data=data, samples=64), _preprocess_spec(fp32, None))
    n_train = len(list((data / "train").glob("*.png")))
    assert counts == (n_train, 64) and len(images) == n_train  # fewer than asked: bench warns

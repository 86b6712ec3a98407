"""Every deployment command on ONNX artifacts with torch out of reach, and the torch commands refusing in one line.

Run in both installs (see conftest.py): in the full one torch is blocked in each child, in .venv-deploy it is not
installed at all.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

TRAIN_HINT = "pip install 'cunet[train]'"


def _one_error_line(run) -> str:
    assert run.code == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    return lines[0]


def test_import_and_help_load_no_torch(no_torch_env) -> None:
    import subprocess
    import sys

    code = ("import sys, cunet, cunet.cli\n"
            "from click.testing import CliRunner\n"
            "assert CliRunner().invoke(cunet.cli.cli, ['--help']).exit_code == 0\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    # no block here: in the full install torch is importable, and nothing may import it anyway
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("args, what", [
    (["train", "--task", "face", "--data", "{data}", "--out", "{tmp}/run"], "cunet train"),
    (["export", "{pt}", "-o", "{tmp}/x.onnx"], "cunet export"),
    (["import-original", "{pt}", "-o", "{tmp}/x.pt"], "cunet import-original"),
    (["summary", "cunet-tiny"], "cunet summary of a variant or a .pt checkpoint"),
    (["demo", "--quick", "--out", "{tmp}/demo"], "cunet demo"),
    (["evaluate", "{pt}", "--data", "{data}"], "{pt}: a .pt checkpoint"),
    (["profile", "{pt}", "--iters", "1"], "{pt}: a .pt checkpoint"),
    (["bench", "{pt}", "--data", "{data}", "--quick", "--report", "{tmp}/bench"], "{pt}: a .pt checkpoint"),
])
def test_torch_commands_refuse_in_one_line(cunet, artifacts, tmp_path, args, what) -> None:
    fill = {"data": artifacts.data, "pt": artifacts.checkpoint, "tmp": tmp_path}
    line = _one_error_line(cunet(*[a.format(**fill) for a in args]))
    assert line == f"error: {what.format(**fill)} needs PyTorch, which this install lacks: {TRAIN_HINT}"
    assert list(tmp_path.iterdir()) == []  # refused before writing anything


def test_evaluate_then_metrics_score_the_saved_predictions_alike(cunet, artifacts, tmp_path) -> None:
    ev = cunet("evaluate", artifacts.onnx, "--data", artifacts.data, "--save-predictions", tmp_path / "pred",
               "--json")
    assert ev.code == 0, ev.stderr
    nme = ev.json()["nme"]
    assert 0 < nme < 1000
    m = cunet("metrics", "--task", "face", "--gt", artifacts.data, "--pred", tmp_path / "pred", "--json")
    assert m.code in (0, 1), m.stderr  # exit 1 only where some ground truth lacks a prediction
    assert m.json()["nme"] == pytest.approx(nme, rel=1e-6)


def test_profile_and_predict(cunet, artifacts, tmp_path) -> None:
    prof = cunet("profile", artifacts.onnx, "--iters", "2", "--warmup", "0", "--threads", "1", "--json")
    assert prof.code == 0, prof.stderr
    report = prof.json()
    assert report["format"] == "onnx" and report["results"][0]["latency_ms"]["total"]["p50"] > 0
    image = next(p for p in sorted(artifacts.data.rglob("*.png")))
    pred = cunet("predict", artifacts.onnx, image, "--out", tmp_path / "out", "--json")
    assert pred.code == 0, pred.stderr
    written = [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(n.endswith(".json") for n in written) and any(n.endswith(".overlay.png") for n in written)


def test_calibrate_quantize_check_trt(cunet, artifacts, tmp_path) -> None:
    cal = cunet("calibrate", artifacts.onnx, "--data", artifacts.data, "--samples", "4", "--cache-dir",
                tmp_path / "cache", "-o", tmp_path / "ranges.json", "--json")
    assert cal.code == 0, cal.stderr
    assert json.loads((tmp_path / "ranges.json").read_text())
    for recipe in ("cpu", "tensorrt"):
        out = tmp_path / f"int8-{recipe}.onnx"
        q = cunet("quantize", artifacts.onnx, "--recipe", recipe, "--data", artifacts.data, "--samples", "4",
                  "--cache-dir", tmp_path / "cache", "-o", out, "--json")
        assert q.code == 0, q.stderr
        assert out.stat().st_size > 0
    trt = cunet("check-trt", tmp_path / "int8-tensorrt.onnx", "--json")
    assert trt.code == 0, trt.stderr


def test_data_doctor_summary_compile(cunet, artifacts, tmp_path) -> None:
    check = cunet("data", "check", artifacts.data, "--task", "face", "--json")
    assert check.code == 0, check.stderr
    synth = cunet("data", "synth", "--task", "pose", "--out", tmp_path / "pose", "--n", "4", "--image-size", "64")
    assert synth.code == 0, synth.stderr
    summary = cunet("summary", artifacts.onnx, "--json")  # what the metadata records; MACs need torch
    assert summary.code == 0, summary.stderr
    assert summary.json()["task"] == "face" and summary.json()["config"]["layers"] >= 1
    table = cunet("summary", artifacts.onnx)  # the hint where MACs would be names the extra that brings torch
    assert table.code == 0 and f"counted with PyTorch: {TRAIN_HINT}" in table.stderr, table.stderr
    doctor = cunet("doctor", "--json")
    assert doctor.code in (0, 1), doctor.stderr
    assert doctor.json()["torch"]["installed"] is False
    # no TensorRT on a torch-free CPU machine: one line, no traceback
    line = _one_error_line(cunet("compile", artifacts.onnx, "--precision", "fp32", "-o", tmp_path / "m.engine"))
    assert "TensorRT" in line or "CUDA" in line


def test_bench_of_an_onnx_model_skips_export_and_two_runs_compare(cunet, artifacts, tmp_path) -> None:
    def bench(report, *extra):
        run = cunet("bench", artifacts.onnx, "--data", artifacts.data, "--quick", "--calib-samples", "4",
                    "--report", report, "--work", tmp_path / "work", "--no-progress", "--json", *extra)
        assert run.code == 0, run.stderr
        return {r["artifact"]: r for r in run.json()["rows"]}

    rows = bench(tmp_path / "a", "--threads", "1")
    assert rows["pytorch-fp32"]["status"] == "skipped" and ".pt" in rows["pytorch-fp32"]["reason"]
    assert rows["onnx-fp32"]["status"] == "ok" and rows["onnx-fp32"]["path"] == str(artifacts.onnx)
    assert rows["onnx-fp32"]["p50_ms"] > 0 and rows["onnx-fp32"]["delta"] == 0
    assert rows["onnx-int8-cpu"]["status"] == "ok"
    assert not (tmp_path / "work" / "model.onnx").exists()  # nothing exported
    second = bench(tmp_path / "b", "--threads", "2", "--label", "two-threads")
    assert second["onnx-int8-cpu"]["reused"] is True

    a, b = tmp_path / "a" / "bench.json", tmp_path / "b" / "bench.json"
    run = cunet("compare", a, b, "--csv", tmp_path / "cmp.csv", "--plot", tmp_path / "cmp.png", "--json")
    assert run.code == 0, run.stderr
    cmp = run.json()
    host = json.loads(a.read_text())["environment"]["host"]
    assert [c["label"] for c in cmp["columns"]] == [host, "two-threads"] and cmp["baseline"] == "onnx-fp32"
    by_row = {r["artifact"]: r for r in cmp["rows"]}
    assert by_row["onnx-int8-cpu"]["values"] == {host: rows["onnx-int8-cpu"]["p50_ms"],
                                                 "two-threads": second["onnx-int8-cpu"]["p50_ms"]}
    assert by_row["onnx-int8-cpu"]["ratios"][host] == pytest.approx(
        rows["onnx-int8-cpu"]["p50_ms"] / rows["onnx-fp32"]["p50_ms"])
    assert by_row["onnx-fp32"]["ratios"] == {host: 1.0, "two-threads": 1.0}
    csv_lines = (tmp_path / "cmp.csv").read_text().splitlines()
    assert csv_lines[0] == f"artifact,{host} p50_ms,two-threads p50_ms,{host} ratio,two-threads ratio"
    assert len(csv_lines) == 1 + len(cmp["rows"])
    assert (tmp_path / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = cunet("compare", a, b)
    assert table.code == 0 and table.stdout == "" and "two-threads" in table.stderr and "onnx-int8-cpu" in table.stderr
    line = _one_error_line(cunet("compare", a, artifacts.data / "train" / "x.json"))
    assert line.startswith("error: ") and "no such report file" in line
    not_ours = tmp_path / "other.json"
    not_ours.write_text('{"rows": [1, 2]}')
    assert _one_error_line(cunet("compare", a, not_ours)) == (
        f"error: {not_ours}: not a cunet report (expected the JSON of `cunet bench` or `cunet profile --json`)")


def test_video_predict_with_the_detect_extra(cunet, artifacts, tmp_path) -> None:
    """`[cpu,detect]` without torch: a video is tracked, with the detector installed (no hint to install it)."""
    import cv2

    face = cv2.imread(str(next(p for p in sorted(artifacts.data.rglob("*.png")))))
    clip = tmp_path / "clip.mp4"
    h, w = face.shape[:2]
    writer = cv2.VideoWriter(str(clip), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
    for i in range(6):  # the face drifts right by 1 px a frame
        writer.write(cv2.warpAffine(face, np.float64([[1, 0, i], [0, 1, 0]]), (w, h), borderMode=cv2.BORDER_REPLICATE))
    writer.release()
    run = cunet("predict", artifacts.onnx, clip, "--overlay", "--smooth", "one-euro", "--out", tmp_path / "out",
                "--json")
    assert run.code == 0, run.stderr
    assert "cunet[detect]" not in run.stderr  # the extra is installed and importable here
    assert len((tmp_path / "out" / "clip.jsonl").read_text().splitlines()) == 6
    assert (tmp_path / "out" / "clip.overlay.mp4").stat().st_size > 0
    assert run.json()["smooth"]["method"] == "one-euro"

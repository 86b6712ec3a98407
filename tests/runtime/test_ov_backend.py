"""The openvino backend: same landmarks as ONNX Runtime on FP32 models, IR metadata, hints, threads, clear errors.

Parity tolerance: both runtimes compute the same FP32 graph with different kernels (summation order, fused
convolution + ReLU), so heatmaps agree to float32 rounding — measured max |diff| about 1e-6 on heatmaps of peak ~1 —
and `1e-4` absolute leaves two orders of margin. Landmarks are decoded from those heatmaps by the same Python code,
so they agree to within 0.01 px (DARK decoding is continuous in the heatmap values; an argmax tie could flip
between runtimes, which would show as a whole pixel, far outside this tolerance).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

from cunet.errors import CunetError  # noqa: E402
from cunet.runtime import available_backends, open_predictor, read_ir_meta, read_onnx_meta  # noqa: E402

HEATMAP_ATOL = 1e-4
POINT_ATOL_PX = 0.01
TINY = dict(layers=1, order=0, channels=16, growth=8, input_size=64, num_landmarks=68)


@pytest.fixture(scope="module")
def fp32(tmp_path_factory) -> Path:
    import torch

    from cunet.compile.export import export_onnx
    from cunet.model import CUNet, CUNetConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ov") / "tiny.onnx"
    export_onnx(CUNet(CUNetConfig(**TINY)), path, task="face")
    return path


@pytest.fixture(scope="module")
def ir(fp32) -> Path:
    """The FP32 export converted to IR with the export's metadata (what the openvino recipe writes, unquantized)."""
    import openvino as ov

    from cunet.compile.openvino import save_ir

    out = fp32.with_name("tiny.fp32.xml")
    save_ir(ov.Core().read_model(str(fp32)), read_onnx_meta(fp32).to_dict(), out)
    return out


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (70 + 10 * i, 90, 3), dtype=np.uint8) for i in range(5)]


def test_openvino_gives_the_same_landmarks_as_onnx_runtime_on_fp32(fp32, ir, images):
    with open_predictor(fp32, backend="ort-cpu", threads=1) as p:
        x, _ = p.preprocess(images)
        ref_heat, ref_pts = p.predict_heatmaps(x), p.predict(images)
    for model in (fp32, ir):
        with open_predictor(model, backend="openvino", threads=1) as p:
            assert p.backend == "openvino" and p.provider == "openvino-CPU"
            np.testing.assert_allclose(p.predict_heatmaps(x), ref_heat, rtol=0, atol=HEATMAP_ATOL)
            np.testing.assert_allclose(p.predict(images), ref_pts, rtol=0, atol=POINT_ATOL_PX)


def test_batches_run_on_the_throughput_model_and_match_batch_one(ir, images):
    with open_predictor(ir, threads=2) as p:  # auto picks openvino for .xml
        assert p.backend == "openvino"
        x, _ = p.preprocess(images)
        one = np.concatenate([p.predict_heatmaps(x[i : i + 1]) for i in range(len(x))])
        many = p.predict_heatmaps(x)
        props = p._backend.properties()
    np.testing.assert_allclose(many, one, rtol=0, atol=HEATMAP_ATOL)
    assert props["LATENCY"]["PERFORMANCE_HINT"] == "LATENCY"
    assert props["THROUGHPUT"]["PERFORMANCE_HINT"] == "THROUGHPUT"
    assert props["LATENCY"]["INFERENCE_NUM_THREADS"] == 2 and props["THROUGHPUT"]["INFERENCE_NUM_THREADS"] == 2


def test_ir_metadata_round_trips(fp32, ir):
    assert read_ir_meta(ir) == read_onnx_meta(fp32)
    assert read_ir_meta(ir).to_dict() == read_onnx_meta(fp32).to_dict()


def test_damaged_or_foreign_ir_is_one_clear_error(ir, tmp_path):
    text = ir.read_text(encoding="utf-8")
    start = text.index("<cunet value=")
    end = text.index("/>", start) + 2
    (tmp_path / "bare.xml").write_text(text[:start] + text[end:], encoding="utf-8")
    (tmp_path / "bare.bin").write_bytes(ir.with_suffix(".bin").read_bytes())
    with pytest.raises(CunetError, match="no 'cunet' rt_info"):
        open_predictor(tmp_path / "bare.xml")
    (tmp_path / "bad.xml").write_text(text[:start] + '<cunet value="{not json" />' + text[end:], encoding="utf-8")
    with pytest.raises(CunetError, match="not valid JSON"):
        read_ir_meta(tmp_path / "bad.xml")
    (tmp_path / "cut.xml").write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(CunetError, match="not a readable OpenVINO IR"):
        read_ir_meta(tmp_path / "cut.xml")
    (tmp_path / "nobin.xml").write_text(text, encoding="utf-8")
    with pytest.raises(CunetError, match="nobin.bin"):
        open_predictor(tmp_path / "nobin.xml").open()


def test_backend_file_type_and_device_errors(fp32, ir, tmp_path):
    with pytest.raises(CunetError, match="runs on the openvino backend"):
        open_predictor(ir, backend="ort-cpu")
    with pytest.raises(CunetError, match="not on this machine"):
        open_predictor(fp32, backend="openvino", device="NPU.7")
    assert "openvino" in available_backends(fp32) and "openvino" in available_backends(ir)
    assert available_backends(ir) == ["openvino"]


def test_qdq_models_cunet_writes_run_on_openvino(fp32, tmp_path, images):
    """Both ONNX recipes' Q/DQ files load and give finite heatmaps close to ONNX Runtime's for the same file.

    INT8 kernels round differently between runtimes (measured: mean |diff| about 3 steps of the output's
    quantization scale on this random-init model), so this checks that the file runs as the same INT8 model on
    OpenVINO (finite, correlation with ONNX Runtime's INT8 heatmaps above 0.95), not bit parity.
    """
    from cunet.compile.quantize import quantize

    folder = tmp_path / "calib"
    folder.mkdir()
    import cv2

    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"{i}.png"), image)
    for recipe in ("tensorrt", "cpu"):
        int8 = tmp_path / f"tiny.{recipe}.onnx"
        quantize(fp32, int8, recipe, folder, samples=5, cache_dir=tmp_path / "cache")
        with open_predictor(int8, backend="ort-cpu", threads=1) as p:
            x, _ = p.preprocess(images)
            ref = p.predict_heatmaps(x)
        with open_predictor(int8, backend="openvino", threads=1) as p:
            got = p.predict_heatmaps(x)
        assert np.isfinite(got).all()
        assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.95, recipe


def test_missing_openvino_is_one_line_naming_the_extra(ir):
    # The real CLI in a child process where `import openvino` fails, as on a machine without the extra.
    code = ("import sys; sys.modules['openvino'] = None; from cunet.cli import main; "
            f"sys.argv = ['cunet', 'profile', {str(ir)!r}, '--iters', '1']; sys.exit(main())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install 'cunet[openvino]'" in lines[0], proc.stderr


def test_profile_and_doctor_report_openvino(ir):
    proc = subprocess.run([sys.executable, "-m", "cunet", "profile", str(ir), "--iters", "2", "--warmup", "1",
                           "--batch", "1,3", "--threads", "1", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["backend"] == "openvino" and report["format"] == "xml"
    assert report["model_bytes"] == ir.stat().st_size + ir.with_suffix(".bin").stat().st_size
    assert [r["batch"] for r in report["results"]] == [1, 3]
    from cunet.commands.doctor import machine_report

    info = machine_report()["openvino"]
    assert info["installed"] and "CPU" in info["devices"] and info["version"]


def test_fp16_onnx_runs_on_openvino_like_onnx_runtime(fp32, tmp_path, images):
    """The FP16 file `cunet bench` builds: the weights are float16 in both runtimes, ONNX Runtime computes in
    float16 where the graph says so while OpenVINO's CPU plugin (pinned to f32) computes in float32, so they agree to
    float16 rounding (steps of ~1e-3 at heatmap peaks of ~1; 2e-2 leaves a 10x margin) and landmarks within 0.1 px."""
    from cunet.compile.tensorrt import fp16_converter, to_fp16_onnx

    if fp16_converter() is None:
        pytest.skip("no float16 converter installed")
    half = tmp_path / "tiny.fp16.onnx"
    to_fp16_onnx(fp32, half)
    with open_predictor(half, backend="ort-cpu", threads=1) as p:
        x, _ = p.preprocess(images)
        ref_heat, ref_pts = p.predict_heatmaps(x), p.predict(images)
    with open_predictor(half, backend="openvino", threads=1) as p:
        np.testing.assert_allclose(p.predict_heatmaps(x), ref_heat, rtol=0, atol=2e-2)
        np.testing.assert_allclose(p.predict(images), ref_pts, rtol=0, atol=0.1)

"""`profile` / `cunet profile`: the report's keys and internal consistency, never timing thresholds (machines are
noisy). Uses a tiny checkpoint on the torch backend, so no export is needed."""

import json
import platform
import subprocess
import sys

import pytest

from cunet.errors import CunetError
from cunet.evaluate.profile import environment, latency_stats, peak_rss_mb, profile

STAGES = {"total", "preprocess", "inference", "decode"}
STATS = {"p50", "p90", "p99", "mean", "std", "min", "max"}


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    return tiny_checkpoint("face")


def check_report(report, batches):
    assert report["backend"] == "torch" and report["provider"] == "torch-cpu" and report["format"] == "pt"
    assert report["task"] == "face" and report["precision"] == "fp32" and report["model_bytes"] > 0
    assert [r["batch"] for r in report["results"]] == list(batches)
    for r in report["results"]:
        assert set(r["latency_ms"]) == STAGES
        for stats in r["latency_ms"].values():
            assert set(stats) == STATS
            assert 0 <= stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]
        assert r["throughput_ips"] > 0 and r["peak_rss_mb"] > 0
        assert r["device_inference_ms"] is None and r["device_memory_mb"] is None
    env = report["environment"]
    assert {"device", "cpu", "python", "numpy", "torch", "onnxruntime", "tensorrt", "cpu_count"} <= set(env)
    assert env["device"] == "cpu" and env["torch"] and env["host"] == platform.node()


def test_profile_report(ckpt):
    report = profile(ckpt, backend="torch", batch_sizes=(1, 2), warmup=1, iters=5, threads=1, device="cpu")
    check_report(report, (1, 2))
    assert report["threads"] == 1 and report["iters"] == 5 and report["image_size"] == [480, 640]


def test_cli_json_is_one_object(ckpt):
    proc = subprocess.run(
        [sys.executable, "-m", "cunet", "profile", str(ckpt), "--batch", "1,3", "--warmup", "1", "--iters", "3",
         "--device", "cpu", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    check_report(json.loads(proc.stdout), (1, 3))


def test_cli_table_goes_to_stderr_and_bad_input_is_one_line(ckpt, tmp_path):
    from click.testing import CliRunner

    from cunet.cli import cli

    result = CliRunner().invoke(cli, ["profile", str(ckpt), "--warmup", "0", "--iters", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "total p99 (ms)" in result.stderr and "images / s" in result.stderr and result.stdout == ""
    proc = subprocess.run(
        [sys.executable, "-m", "cunet", "profile", str(tmp_path / "nope.onnx")], capture_output=True, text=True
    )
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and "no such model file" in proc.stderr


def test_argument_validation(ckpt):
    with pytest.raises(CunetError, match="batch sizes"):
        profile(ckpt, batch_sizes=(0,))
    with pytest.raises(CunetError, match="iters"):
        profile(ckpt, iters=0)


def test_helpers():
    stats = latency_stats([1_000_000, 2_000_000, 3_000_000, 4_000_000])  # ns → ms
    assert stats["p50"] == 2.5 and stats["mean"] == 2.5 and stats["min"] == 1.0 and stats["max"] == 4.0
    assert stats["std"] == pytest.approx(1.118033988749895)
    # The high-water mark is the worker's lifetime peak: an earlier test may have left it far above today's resident
    # set, where 64 MB more does not reach it. Reset it first where Linux allows (else the peak must still grow).
    from cunet.evaluate.memory import reset_peak_rss

    reset_peak_rss()
    before = peak_rss_mb()
    grown = bytearray(64 * 1024 * 1024)  # touching 64 MB must raise the peak by about that much
    grown[:: 4096] = b"\x01" * len(grown[:: 4096])
    assert peak_rss_mb() >= before + 50
    env = environment("cuda (X)")
    assert env["device"] == "cuda (X)" and env["host"] == platform.node() and env["python"] == platform.python_version()


def test_a_cpu_profile_never_imports_torch_and_defines_its_memory(tmp_path):
    """Profiling an ONNX model on the CPU must not probe CUDA through PyTorch: that import alone was ~250 MB of
    every ONNX and OpenVINO row's "peak" on main (issue 23, item 4). Run in a fresh process, as bench does."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_tiny_trt", Path(__file__).parents[1] / "compile" /
                                                  "test_tensorrt_fake.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.tiny_model(tmp_path / "one_conv.onnx")  # a real ONNX file with cunet metadata, no torch needed
    code = ("import json, sys; from cunet.evaluate.profile import profile; "
            "r = profile(sys.argv[1], backend='auto', warmup=1, iters=3, threads=1); "
            "print(json.dumps({'torch': 'torch' in sys.modules, 'r': r}))")
    proc = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    report, row = out["r"], out["r"]["results"][0]
    assert out["torch"] is False
    assert (report["backend"], report["provider"], report["device"]) == ("ort-cpu", "CPUExecutionProvider", "cpu")
    assert set(report["memory_definitions"]) == {"load_peak_mb", "run_peak_mb", "device_peak_mb"}
    assert report["load_peak_mb"] > 0 and row["device_peak_mb"] is None
    assert row["run_peak_mb"] == (row["peak_rss_mb"] if row["peak_rss_reset"] else None)

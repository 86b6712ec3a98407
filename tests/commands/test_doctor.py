"""`cunet doctor` reports this machine as it is: versions from the installed packages, providers that really load."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _doctor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cunet", "doctor", *args], capture_output=True, text=True,
                          timeout=180)


@pytest.fixture(scope="module")
def report() -> dict:
    proc = _doctor("--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # exactly one JSON object on stdout


def test_versions_match_the_installed_packages(report):
    import onnxruntime
    import torch

    import cunet

    assert report["cunet"] == cunet.__version__
    assert report["torch"]["version"] == torch.__version__
    assert report["onnxruntime"]["version"] == onnxruntime.__version__
    assert report["cpu"]["threads"] == os.cpu_count() and 1 <= report["cpu"]["usable"] <= os.cpu_count()


def test_every_offered_provider_is_tried(report):
    import onnxruntime

    providers = {p["name"]: p for p in report["onnxruntime"]["providers"]}
    assert set(providers) == set(onnxruntime.get_available_providers())
    assert providers["CPUExecutionProvider"] == {"name": "CPUExecutionProvider", "loads": True, "detail": "ok"}
    assert "ort-cpu" in report["backends"] and "torch" in report["backends"]


def test_gpu_fields_on_this_machine(report):
    import torch

    if torch.cuda.is_available():
        assert report["torch"]["device"] == "cuda" and len(report["gpus"]) == torch.cuda.device_count()
        major, minor = torch.cuda.get_device_capability(0)
        assert report["gpus"][0]["compute_capability"] == f"{major}.{minor}"
        return
    assert report["torch"]["device"] == "cpu" and report["gpus"] == []
    assert not {"ort-cuda", "ort-trt", "tensorrt"} & set(report["backends"])
    assert report["engines"]["can_build"] is False and "no CUDA device is visible" in report["engines"]["reason"]
    trt = report["tensorrt"]
    assert trt["detail"] != "ok"  # never imported without a CUDA device
    for p in report["onnxruntime"]["providers"]:
        if p["name"] == "TensorrtExecutionProvider":
            assert p["loads"] is False and "no CUDA device" in p["detail"]


def test_human_output_goes_to_stderr():
    proc = _doctor()
    assert proc.returncode == 0 and proc.stdout == ""
    assert "cunet doctor" in proc.stderr and "CPUExecutionProvider" in proc.stderr
    assert "backends that run here" in proc.stderr and "TensorRT engines" in proc.stderr

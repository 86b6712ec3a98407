"""`cunet doctor`'s GPU branch on the fake two-device machine with the fake TensorRT (tests/fakes)."""

from __future__ import annotations


def test_gpu_branch_lists_both_devices_and_imports_tensorrt(fake_gpu):
    from cunet.commands.doctor import machine_report

    report = machine_report()
    assert [(g["index"], g["name"], g["compute_capability"]) for g in report["gpus"]] == [
        (0, "NVIDIA GeForce RTX 4090", "8.9"), (1, "NVIDIA Jetson AGX Orin", "8.7")]
    assert report["gpus"][0]["memory_mb"] == round((24 << 30) / 1e6)
    assert report["cuda_binding"] == "fake-cuda"
    assert report["tensorrt"] == {"installed": True, "version": fake_gpu.trt.__version__, "detail": "ok"}
    assert report["engines"] == {"can_build": True, "reason": None}
    assert "tensorrt" in report["backends"]

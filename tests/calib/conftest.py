"""Shared fixtures for calibration tests: a tiny exported CU-Net and a folder of real-looking images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

TINY = dict(layers=1, order=0, channels=16, growth=8, input_size=64, num_landmarks=68)


def export_tiny(path: Path, seed: int = 0) -> Path:
    """Export a random-init tiny CU-Net with cunet metadata (stand-in until `cunet.compile.export` lands)."""
    import onnx
    import torch

    from cunet.data.preprocess import MEAN, STD
    from cunet.model import CUNet, CUNetConfig

    torch.manual_seed(seed)
    cfg = CUNetConfig(**TINY)
    model = CUNet(cfg).eval()
    x = torch.randn(1, 3, cfg.input_size, cfg.input_size)
    torch.onnx.export(
        model, (x,), str(path), dynamo=False, opset_version=17, input_names=["image"], output_names=["heatmaps"],
        dynamic_axes={"image": {0: "N"}, "heatmaps": {0: "N"}},
    )
    proto = onnx.load(str(path))
    meta = {"format_version": 1, "task": "face", "input_size": cfg.input_size, "mean": MEAN, "std": STD,
            "config": cfg.to_dict(), "precision": "fp32", "heatmap_stride": 4}
    entry = proto.metadata_props.add()
    entry.key, entry.value = "cunet", json.dumps(meta)
    onnx.save(proto, str(path))
    return path


def write_images(folder: Path, n: int = 6, seed: int = 0, constant: bool = False) -> Path:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = np.full((96, 96, 3), 128, np.uint8) if constant else rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"img{i:02d}.png"), img)
    return folder


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture()
def image_dir(tmp_path) -> Path:
    return write_images(tmp_path / "images")


@pytest.fixture()
def blank_dir(tmp_path) -> Path:
    return write_images(tmp_path / "blank", n=2, constant=True)

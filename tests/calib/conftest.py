"""Shared fixtures for calibration tests: a tiny exported CU-Net and a folder of real-looking images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TINY = dict(layers=1, order=0, channels=16, growth=8, input_size=64, num_landmarks=68)


def export_tiny(path: Path, seed: int = 0) -> Path:
    """Export a random-init tiny CU-Net through the real exporter (dynamo, onnxslim, cunet metadata)."""
    import torch

    from cunet.compile.export import export_onnx
    from cunet.model import CUNet, CUNetConfig

    torch.manual_seed(seed)
    export_onnx(CUNet(CUNetConfig(**TINY)), path, task="face")
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

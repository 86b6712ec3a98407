"""`cunet predict` on a folder of images in every lossless OpenCV format, any case: each is found and predicted,
and the same pixels in another format give the same points."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cunet.cli import main  # noqa: E402


def test_predict_reads_every_lossless_format_the_same(tmp_path, capsys):
    from cunet.compile.export import export_onnx
    from cunet.model import CUNet, CUNetConfig

    torch.manual_seed(0)
    cfg = CUNetConfig(layers=1, order=0, channels=16, growth=8, input_size=64, num_landmarks=68)
    model = tmp_path / "face.onnx"
    export_onnx(CUNet(cfg).eval(), model, task="face", simplify=False, verify=False)
    pixels = np.random.default_rng(0).integers(0, 256, (72, 80, 3), np.uint8)
    folder = tmp_path / "imgs"
    folder.mkdir()
    names = ["a.png", "b.PPM", "c.tif", "d.TIFF", "e.bmp", "f.webp"]
    for name in names:
        params = [cv2.IMWRITE_WEBP_QUALITY, 101] if name.endswith(".webp") else []  # 101: lossless WebP
        assert cv2.imwrite(str(folder / name), pixels, params)
    code = main(["predict", str(model), str(folder), "--out", str(tmp_path / "out"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["images"] == len(names)
    points = {n: np.asarray(json.loads((tmp_path / "out" / f"{Path(n).stem}.json").read_text())
                            ["instances"][0]["points"]) for n in names}
    for name in names[1:]:
        np.testing.assert_array_equal(points[name], points["a.png"], err_msg=name)  # identical pixels in

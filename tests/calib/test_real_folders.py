"""Calibration reads what every command reads: a flat folder of images + .pts and a COCO face JSON give annotated
crops (not whole images), and grayscale / 16-bit files decode through the one image reader."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cunet.calib.reader import PreprocessSpec, select_calibration_images
from cunet.data.formats import write_pts
from cunet.errors import CunetError

SPEC = PreprocessSpec("input", 64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "face")


def _flat(root):
    root.mkdir()
    pts = np.column_stack([np.linspace(20, 60, 68), np.linspace(30, 70, 68)])
    cv2.imwrite(str(root / "gray.pgm"), np.full((96, 128), 200, np.uint8))
    cv2.imwrite(str(root / "deep.TIF"), np.full((96, 128, 3), 20000, np.uint16))
    for stem in ("gray", "deep"):
        write_pts(root / f"{stem}.pts", pts)
    return pts


def test_flat_folder_and_coco_json_calibrate_on_annotated_crops(tmp_path):
    pts = _flat(tmp_path / "afw")
    sel = select_calibration_images(tmp_path / "afw", SPEC, 8)
    assert [p.name for p, _ in sel.items] == ["deep.TIF", "gray.pgm"]
    assert all(box is not None for _, box in sel.items)  # the landmark boxes, as in training
    x = sel.load().arrays
    assert x.shape == (2, 3, 64, 64) and x.dtype == np.float32
    # 16-bit 20000 → 8-bit 78; gray 200: normalised with mean 0.5, std 0.25 (inside the face crop)
    assert x[0, :, 32, 32] == pytest.approx([(78 / 255 - 0.5) / 0.25] * 3, abs=1e-5)
    assert x[1, :, 32, 32] == pytest.approx([(200 / 255 - 0.5) / 0.25] * 3, abs=1e-5)
    coco = tmp_path / "afw" / "faces_train.json"
    kps = np.column_stack([pts, np.full(68, 2.0)]).ravel().tolist()
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "gray.pgm"}],
                                "annotations": [{"id": 1, "image_id": 1, "keypoints": kps, "bbox": [1, 1, 9, 9]}]}))
    sel = select_calibration_images(coco, SPEC, 8)
    assert [p.name for p, _ in sel.items] == ["gray.pgm"] and sel.items[0][1] is not None


def test_bench_refuses_a_folder_no_command_reads(tmp_path):
    torch = pytest.importorskip("torch")
    from cunet.pipeline.bench import BenchOptions, run_bench
    from cunet.model import CUNet, get_variant
    from cunet.model.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "m.pt", CUNet(get_variant("cunet-tiny", input_size=64)), "face")
    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(CunetError, match="not a face dataset .*a folder of images with .pts files"):
        run_bench(BenchOptions(checkpoint=tmp_path / "m.pt", data=tmp_path / "photos", report=tmp_path / "r",
                               quick=True, progress=False))
    assert not (tmp_path / "r").exists() and torch is not None

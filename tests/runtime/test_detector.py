"""The `cunet[detect]` face detector (dlib's HOG) on a real 300-W face, and its one-line error when not installed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cunet.errors import CunetError

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "300w"


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures is not beside this checkout")
@pytest.mark.parametrize("roll", [0.0, -20.0])  # -20°: the upright pass alone finds nothing there
def test_finds_the_real_face_upright_and_tilted(roll) -> None:
    pytest.importorskip("dlib")
    import cv2

    from cunet.runtime.detector import open_detector

    doc = json.loads((FIXTURES / "test_300w.json").read_text())
    image = cv2.imread(str(FIXTURES / doc["images"][1]["file_name"]))  # indoor_020: the harder of the two
    pts = np.asarray(doc["annotations"][1]["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2] - 1.0
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), roll, 1.0)
    image = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    pts = pts @ m[:, :2].T + m[:, 2]
    found = open_detector().detect(image)
    assert found, "no face found"
    # the detector's box is not the landmark box (it leaves out the jaw's sides): 0.4 is "this face"
    assert _iou(found[0].box, (*pts.min(axis=0), *pts.max(axis=0))) > 0.4


def test_missing_extra_is_one_line_saying_what_to_install(monkeypatch) -> None:
    from cunet.runtime import detector

    monkeypatch.setattr(detector, "detector_available", lambda: False)
    with pytest.raises(CunetError) as e:
        detector.open_detector()
    assert str(e.value) == "no face detector installed: pip install 'cunet[detect]' (or give face boxes with --boxes)"
    with pytest.raises(CunetError, match="unknown face detector"):
        detector.open_detector("haar")

"""The face detector behind `cunet[detect]`: dlib's HOG + linear-SVM frontal face detector, imported lazily.

Why this one (docs/video.md has the measurements, bench/detector.py makes them): its model is compiled into the
`dlib` library itself, so `pip install 'cunet[detect]'` (the `dlib-bin` wheels: no compiler, no CMake) brings a
working detector with nothing downloaded at run time; code and model are under the Boost Software License; it
needs neither torch nor TensorFlow, and `dlib-bin` has wheels for every Python cunet supports. The candidates it
was measured against fell short on one of these: MediaPipe's wheels no longer carry BlazeFace (its Tasks API
downloads the `.tflite`) and pull `opencv-contrib-python`, which overwrites `opencv-python-headless`; the packages
wrapping BlazeFace's `.tflite` require TensorFlow; YuNet's ONNX ships in no package (the wrappers download it),
and `yuface` (libfacedetection's YuNet compiled in) has CPython 3.11 wheels only; MTCNN packages need TensorFlow
or PyTorch.

One small interface (`FaceDetector.detect(image) -> [Detection]`), so another detector can stand in later.
Detections are in 0-based pixels of the image given, best first.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cunet.errors import CunetError

__all__ = ["Detection", "FaceDetector", "DlibHogDetector", "DETECT_HINT", "detector_available", "open_detector"]

#: What to install for a detector, said wherever one is missing.
DETECT_HINT = "pip install 'cunet[detect]'"


@dataclass(frozen=True)
class Detection:
    """A detected face: box [x1, y1, x2, y2] in 0-based pixels and the detector's score (higher is surer)."""

    box: tuple[float, float, float, float]
    score: float


class FaceDetector(Protocol):
    """What the tracker needs of a face detector."""

    name: str

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 image [H, W, 3], best first (empty when there is none)."""
        ...


def detector_available() -> bool:
    """True when the `detect` extra (dlib) is installed; imports nothing."""
    return importlib.util.find_spec("dlib") is not None


class DlibHogDetector:
    """dlib's `get_frontal_face_detector` (HOG features, 5 linear SVMs: frontal and turned up to about 30°).

    The image is first resized so its long side is `side` pixels (shrunk or enlarged: the detector's smallest face
    is 80 px, so faces down to 80/`side` of the long side are found, at a time that does not grow with the frame).
    The SVMs know upright faces only: when none is found, the image is rotated by each of `rolls` in turn (a
    tilted head) and the first angle that finds a face wins; its box is the axis-aligned box around the rotated
    one.

    Attributes:
        name: "dlib-hog".
        side: long side the image is resized to.
        rolls: in-plane rotations (degrees) tried after the upright pass finds nothing.
        threshold: dlib's score threshold adjustment (0: its default; lower finds more, and more false faces).
    """

    name = "dlib-hog"

    def __init__(self, side: int = 640, rolls: tuple[float, ...] = (25.0, -25.0), threshold: float = 0.0) -> None:
        if not detector_available():
            raise CunetError(f"no face detector installed: {DETECT_HINT} (or give face boxes with --boxes)")
        import dlib

        self.side, self.rolls, self.threshold = int(side), tuple(float(r) for r in rolls), float(threshold)
        self._detector = dlib.get_frontal_face_detector()

    def detect(self, image: np.ndarray) -> list[Detection]:
        import cv2

        h, w = image.shape[:2]
        s = self.side / max(h, w)
        # one affine from the input to the detector's image: resize (pixel centres stay on integers), then rotate
        size = (max(1, round(w * s)), max(1, round(h * s)))
        resize = np.array([[s, 0.0, 0.5 * s - 0.5], [0.0, s, 0.5 * s - 0.5]])
        for roll in (0.0, *self.rolls):
            m = resize
            if roll:
                rot = cv2.getRotationMatrix2D(((size[0] - 1) / 2, (size[1] - 1) / 2), roll, 1.0)
                m = rot @ np.vstack([resize, [0.0, 0.0, 1.0]])
            small = cv2.warpAffine(image, m, size, flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
            rects, scores, _ = self._detector.run(np.ascontiguousarray(small[..., ::-1]), 0, self.threshold)
            if len(rects):
                back = cv2.invertAffineTransform(m)
                found = [Detection(_box_back(r, back), float(sc)) for r, sc in zip(rects, scores)]
                return sorted(found, key=lambda d: -d.score)
        return []


def _box_back(rect: object, back: np.ndarray) -> tuple[float, float, float, float]:
    """A dlib rectangle (inclusive pixel indices: its outer edges lie half a pixel further out, pixel centres on
    integers) mapped through `back` into the input image: the axis-aligned box around its four corners."""
    x1, y1 = rect.left() - 0.5, rect.top() - 0.5  # type: ignore[attr-defined]
    x2, y2 = rect.right() + 0.5, rect.bottom() + 0.5  # type: ignore[attr-defined]
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]) @ back[:, :2].T + back[:, 2]
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def open_detector(name: str = "dlib-hog") -> FaceDetector:
    """The face detector `name` ("dlib-hog", the only one today).

    Raises:
        CunetError: the `detect` extra is not installed (one line saying what to install), or an unknown name.
    """
    if name != DlibHogDetector.name:
        raise CunetError(f"unknown face detector {name!r}; choose {DlibHogDetector.name}")
    return DlibHogDetector()

"""Face detectors measured on real and synthetic faces: found / missed, box IoU, crop IoU, time per image.

Usage:
    PYTHONPATH=. .venv/bin/python bench/detector.py [--synthetic 100] [--out bench/results/detector.json]

Faces: the two real 300-W faces of ../shared/fixtures/300w (68 annotated points each), each at three scales
(1, 1/2, 1/4: about 600, 300 and 150 px faces) and three in-plane rotations (-20°, 0°, +20°): 18 images; and
`--synthetic` faces from `cunet data synth --task face` (256 px images, difficulty 0.5, seed 3).
For every image the detection that overlaps the face's landmark box most is its match:

- found: a detection with IoU >= 0.3 against the tight box of the 68 points (a detector box is not a landmark
  box: dlib's leaves out the jaw's sides and takes in the brows, so 0.3, not 0.5, is "this face").
- box IoU: detector box vs tight landmark box, mean over found faces.
- crop IoU: the square crop cunet takes from the detector box (`box_from_xyxy`, margin 1.25) vs the one it takes
  from the landmarks (`box_from_points`, margin 1.25): what the landmark model sees.
- false: detections overlapping no face (IoU < 0.1).
- ms: mean time per image (one thread, machine under load: compare rows of one run only).

Candidates: cunet's detector (dlib HOG at its defaults: long side 640, upright then rolled ±25°), the same upright
only, the same at long side 320,
and `yuface` (libfacedetection's YuNet) when it is importable (it is not a dependency: CPython 3.11 wheels only).
Writes the JSON (and a table on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from cunet.data.preprocess import box_from_points, box_from_xyxy
from cunet.io import write_json

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "300w"
FOUND_IOU, FALSE_IOU = 0.3, 0.1


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def square(box) -> tuple[float, float, float, float]:
    half = box.size / 2
    return (box.cx - half, box.cy - half, box.cx + half, box.cy + half)


def real_faces() -> list[tuple[str, np.ndarray, np.ndarray]]:
    import cv2

    doc = json.loads((FIXTURES / "test_300w.json").read_text())
    faces = []
    for image, ann in zip(doc["images"], doc["annotations"]):
        img = cv2.imread(str(FIXTURES / image["file_name"]))
        pts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2] - 1.0  # 1-based → 0-based
        h, w = img.shape[:2]
        for scale in (1.0, 0.5, 0.25):
            for roll in (-20.0, 0.0, 20.0):
                m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), roll, scale)
                size = (round(w * scale), round(h * scale))
                m[:, 2] += (np.array(size) - 1) / 2 - (np.array([w, h]) - 1) / 2
                out = cv2.warpAffine(img, m, size, flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT_101)
                faces.append((f"{image['file_name']}@{scale:g}x{roll:+g}deg", out, pts @ m[:, :2].T + m[:, 2]))
    return faces


def synthetic_faces(n: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    import cv2

    from cunet.data.formats import read_pts
    from cunet.data.synth import synthesize

    out = []
    from cunet.tempdirs import temp_dir

    with temp_dir("bench-detector") as tmp:
        synthesize(Path(tmp) / "faces", "face", n=n, seed=3, image_size=256)
        for pts in sorted((Path(tmp) / "faces").rglob("*.pts")):
            out.append((pts.stem, cv2.imread(str(pts.with_suffix(".png"))), read_pts(pts)))
    return out


def candidates() -> dict[str, object]:
    from cunet.runtime.detector import DlibHogDetector, detector_available

    found: dict[str, object] = {}
    if detector_available():
        found["dlib-hog (cunet default)"] = DlibHogDetector().detect
        found["dlib-hog, upright only"] = DlibHogDetector(rolls=()).detect
        found["dlib-hog, long side 320"] = DlibHogDetector(side=320).detect
    try:
        import yuface

        def yunet(image):
            from cunet.runtime.detector import Detection

            confs, boxes, _ = yuface.detect(image, conf=0.5)
            return [Detection((float(x) - 0.5, float(y) - 0.5, float(x + w) - 0.5, float(y + h) - 0.5), float(c))
                    for c, (x, y, w, h) in zip(confs, boxes.astype(np.float64))]

        found["yuface (YuNet)"] = yunet
    except ImportError:
        pass
    return found


def measure(detect, faces) -> dict[str, float | int]:
    ious, crops, times, false = [], [], [], 0
    for _, image, pts in faces:
        truth = (*pts.min(axis=0), *pts.max(axis=0))
        t0 = time.perf_counter()
        dets = detect(image)
        times.append(time.perf_counter() - t0)
        scores = [iou(d.box, truth) for d in dets]
        false += sum(s < FALSE_IOU for s in scores)
        if scores and max(scores) >= FOUND_IOU:
            best = dets[int(np.argmax(scores))]
            ious.append(max(scores))
            crops.append(iou(square(box_from_xyxy(*best.box)), square(box_from_points(pts))))
    n = len(faces)
    return {"faces": n, "found": len(ious), "missed": n - len(ious), "found_pct": 100.0 * len(ious) / n,
            "box_iou": float(np.mean(ious)) if ious else math.nan,
            "crop_iou": float(np.mean(crops)) if crops else math.nan,
            "false": false, "ms": 1000.0 * float(np.mean(times))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synthetic", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("bench/results/detector.json"))
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    sets = {"real 300-W (18)": real_faces() if FIXTURES.is_dir() else [],
            f"synthetic ({args.synthetic})": synthetic_faces(args.synthetic)}
    rows = []
    for name, detect in candidates().items():
        for set_name, faces in sets.items():
            if faces:
                rows.append({"detector": name, "faces": set_name, **measure(detect, faces)})
    write_json(args.out, {"found_iou": FOUND_IOU, "false_iou": FALSE_IOU, "rows": rows})
    header = ("detector", "faces", "found", "missed", "box IoU", "crop IoU", "false", "ms")
    print(" | ".join(header), file=sys.stderr)
    for r in rows:
        print(f"{r['detector']} | {r['faces']} | {r['found']} | {r['missed']} | {r['box_iou']:.3f} | "
              f"{r['crop_iou']:.3f} | {r['false']} | {r['ms']:.1f}", file=sys.stderr)
    print(json.dumps({"out": str(args.out), "rows": len(rows)}))


if __name__ == "__main__":
    main()

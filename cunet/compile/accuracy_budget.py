"""`--max-drop` of `cunet quantize`: the accuracy an INT8 model loses, measured as `cunet evaluate` measures it.

The budget is in the task metric's own points — NME points for faces (percent of the inter-ocular distance of the
ground truth), PCKh@0.5 points for poses — so `--max-drop 0.5` means what it means in `cunet bench --max-drop 0.5`
and in the evaluate report. It is measured:

- on held-out images: annotated samples of the split calibration reads that the calibration selection did not
  pick (evenly spread, deterministic), never the images the ranges were computed from;
- through the Predictor's own path: the same crops, the same decoder (`Predictor.postprocess`: DARK with the
  training sigma, back through the inverse crop affine), scored by `cunet.evaluate.scoring` against the ground truth
  (faces: per-image NME with the ground truth's normaliser; poses: the headline PCKh@0.5 with the head boxes);
- as the loss against the FP32 model on the same images: NME(INT8) - NME(FP32), or PCKh(FP32) - PCKh(INT8). A
  non-finite prediction makes the loss infinite (a broken model never fits a budget).

`BudgetImages.count` says how many images the figure rests on; the quantize report carries it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cunet.data.spec import Task
from cunet.errors import CunetError

__all__ = ["BudgetImages", "budget_images", "metric_of", "loss_of"]


@dataclass(frozen=True)
class BudgetImages:
    """Held-out annotated crops and what scoring them needs.

    Attributes:
        task: "face" or "pose".
        x: [N, 3, S, S] network inputs (the model's own preprocessing).
        affines: [N, 2, 3] original → crop pixels, for decoding back.
        gt: [N, K, 2] ground truth (0-based pixels); mask: [N, K] annotated.
        headboxes: pose: [N, 4] head boxes; faces: None.
        files: the N image files.
        postprocess: the FP32 Predictor's decoder (heatmaps, affines) → [N, K, 2] image points.
    """

    task: str
    x: np.ndarray
    affines: np.ndarray
    gt: np.ndarray
    mask: np.ndarray
    headboxes: np.ndarray | None
    files: tuple[str, ...]
    postprocess: Callable[[np.ndarray, np.ndarray], np.ndarray]

    @property
    def count(self) -> int:
        return len(self.x)

    @property
    def metric(self) -> str:
        return Task(self.task).metric


def _spread(n_total: int, n: int) -> list[int]:
    if n >= n_total:
        return list(range(n_total))
    return sorted({int(i) for i in np.linspace(0, n_total - 1, n).round()})


def budget_images(model_path: str | os.PathLike, data: str | os.PathLike, calibration: Any,
                  count: int) -> BudgetImages:
    """Up to `count` annotated samples of `data`'s calibration split that `calibration` (a `CalibrationSelection`)
    did not pick, preprocessed by the FP32 model `model_path` as evaluate would.

    Raises:
        CunetError: `data` has no annotations (a plain image folder), no sample is left outside the calibration
            selection, or pose samples without head boxes.
    """
    from cunet.data.dataset import load_samples, read_image
    from cunet.data.preprocess import FACE_BOX_MARGIN, box_from_points
    from cunet.runtime import open_predictor

    if count < 1:
        raise CunetError(f"--max-drop needs at least 1 held-out image, got {count}")
    with open_predictor(model_path, backend="ort-cpu") as p:
        meta = p.meta
        try:
            loaded = load_samples(data, meta.task, split="train", allow_empty=True)
        except CunetError as e:
            raise CunetError(f"{data}: --max-drop measures {Task(meta.task).metric} against ground truth, and this "
                             f"is no annotated {meta.task} dataset ({e})") from None
        used = {Path(path).resolve() for path, _ in calibration.items}
        held_out = [s for s in sorted(loaded.samples, key=lambda s: s.key) if Path(s.image).resolve() not in used]
        if not held_out:
            raise CunetError(f"{data}: --max-drop needs annotated images the calibration did not use; all "
                             f"{len(loaded.samples)} are in the calibration selection (lower --samples)")
        chosen = [held_out[i] for i in _spread(len(held_out), count)]
        if meta.task == "face" and meta.box_margin != FACE_BOX_MARGIN:  # the model's crop rule, as evaluate has it
            chosen = [dataclasses.replace(s, box=box_from_points(s.points, s.visible, meta.box_margin))
                      for s in chosen]
        headboxes = None
        if meta.task == "pose":
            lacking = [s.key for s in chosen if s.headbox is None]
            if lacking:
                raise CunetError(f"{data}: --max-drop scores PCKh, which needs head boxes; {lacking[0]} has none")
            headboxes = np.stack([np.asarray(s.headbox, dtype=np.float64) for s in chosen])
        x, affines = p.preprocess([read_image(s.image) for s in chosen], [s.box for s in chosen])
        return BudgetImages(meta.task, x, affines, np.stack([s.points for s in chosen]),
                            np.stack([s.visible for s in chosen]), headboxes, tuple(str(s.image) for s in chosen),
                            p.postprocess)


def metric_of(images: BudgetImages, heatmaps: np.ndarray) -> float:
    """The task metric (percent: "nme" or "pckh@0.5") of `heatmaps` [N, K, h, w] on `images`, scored as evaluate
    scores: +inf NME when any prediction is not finite (pose: such joints are simply incorrect)."""
    from cunet.evaluate import scoring

    with np.errstate(all="ignore"):
        pred = images.postprocess(heatmaps, images.affines)
    if images.task == "face":
        errors = scoring.per_image_nme(pred, images.gt, images.mask, "inter-ocular", list(images.files))
        return float("inf") if not np.isfinite(errors).all() else 100.0 * float(np.mean(errors))
    return float(scoring.summarize_pose(pred, images.gt, images.mask, images.headboxes)["pckh@0.5"])


def loss_of(images: BudgetImages, fp32_metric: float, heatmaps: np.ndarray) -> float:
    """The metric points lost against FP32 (`Task.loss`: NME up, PCKh down); +inf for a non-finite metric."""
    value = metric_of(images, heatmaps)
    if not np.isfinite(value):
        return float("inf")
    return Task(images.task).loss(value - fp32_metric)

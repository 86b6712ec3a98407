"""Accuracy of a model file (`.pt`, `.onnx`, `.engine`) on a dataset split: predict, score, optionally save and plot.

One `Predictor` runs over the split's samples (cropped from each sample's box, or from a detector box file, by the
model's own crop rule: the face margin its metadata records), and the
predictions are scored with the same code as `cunet metrics`. With `save_predictions`, the predictions are written
in the dataset's format (faces: `.pts` at the images' relative paths; pose: an MPII JSON with the ground truth's
records and the predicted joints) and the numbers are computed from the files as written, so
`cunet metrics --gt DATA --pred DIR` reproduces them exactly.

Bad files follow the batch rule of every command (`cunet.batch`): a file `load_samples` reports as a problem (a
`.pts` of 19 points, an image without annotation, a record with a bad field, a key leaving the dataset folder), an
image that cannot be decoded (truncated, empty, over the pixel limit), an image without a usable detector box and a
crop box lying (almost) wholly outside its image are left out, each named in the result's "skipped"; the numbers
are of the rest, say so by their `n`, and the CLI exits 1 after printing them. A benchmark number from a shortened
test set is therefore never silent. `strict=True` stops at the first instead.

A prediction that is not finite (NaN or inf from a broken INT8 model) is the model's failure, not a skipped input:
the image stays in `n` with an infinite error (`cunet.evaluate.summaries`), the result's "nonfinite" counts it and
"nonfinite_files" names it, and the CLI exits 1. No file is saved for it (a `.pts` cannot hold NaN), so `cunet
metrics` lists it as missing. A model whose every prediction is non-finite is one `CunetError`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Collection

import numpy as np

from cunet.batch import Skips
from cunet.data.decode import DEFAULT_METHOD
from cunet.errors import CunetError
from cunet.evaluate import scoring

__all__ = ["evaluate"]

#: Called after each batch with (images done, images in total); the CLI draws a progress bar with it.
Progress = Callable[[int, int], None]


def _predict_all(predictor, samples: list, flip: bool, batch: int, progress: Progress | None,
                 skips: Skips) -> tuple[np.ndarray, np.ndarray]:
    """Predictions [N, K, 2] (whatever the model returned, NaN included) and which images were used [N] bool; the
    images left out (unreadable, or a crop box outside the image) are added to `skips`, which raises at the first
    when strict. Which rows were used is never read off the predictions: a NaN prediction is the model's failure."""
    from cunet.data.dataset import read_image
    from cunet.data.preprocess import box_problem

    out = np.full((len(samples), predictor.meta.num_landmarks, 2), np.nan, dtype=np.float64)
    read = np.zeros(len(samples), dtype=bool)
    for start in range(0, len(samples), batch):
        rows, images = [], []
        for i in range(start, min(start + batch, len(samples))):
            try:
                image = read_image(samples[i].image)
            except CunetError as e:
                skips.add_error(samples[i].image, e)
                continue
            bad_box = box_problem(samples[i].box, image.shape[1], image.shape[0])
            if bad_box is not None:
                skips.add(samples[i].image, bad_box)
                continue
            images.append(image)
            rows.append(i)
        if rows:
            with np.errstate(all="ignore"):  # a NaN-producing model is reported below, not as numpy warnings
                out[rows] = predictor.predict(images, [samples[i].box for i in rows], flip=flip)
            read[rows] = True
        if progress is not None:
            progress(min(start + batch, len(samples)), len(samples))
    return out, read


def _crop_boxes(samples: list, meta, boxes: Path | None, task: str, skips: Skips) -> list:
    """The samples with the model's crop rule: detector boxes from `boxes`, or the landmark box, enlarged by the
    model's face margin (`ModelMeta.box_margin`; 1.25 for cunet's own models, which `load_samples` already used).
    An image without a usable box in `boxes` is left out (added to `skips`); a box file matching none is an error."""
    from cunet.data.preprocess import FACE_BOX_MARGIN, box_from_points, box_from_xyxy

    if boxes is None:
        if task == "face" and meta.box_margin != FACE_BOX_MARGIN:
            return [dataclasses.replace(s, box=box_from_points(s.points, s.visible, meta.box_margin)) for s in samples]
        return samples
    if task != "face":
        raise CunetError(f"{boxes}: detector boxes apply to faces; poses are cropped from their centre and scale")
    from cunet.data.detector_boxes import read_detector_boxes

    found = read_detector_boxes(boxes)
    keys = [found.find_key(s.key, Path(s.image).as_posix()) for s in samples]
    if all(k is None for k in keys):
        raise CunetError(f"{boxes}: no detector box for {len(samples)} of {len(samples)} image(s), e.g. "
                         f"{samples[0].key} (a box file for other images? its keys are the images' relative paths "
                         "or file names)")
    out = []
    for s, key in zip(samples, keys):
        if key is None:
            skips.add(s.image, f"no detector box for this image in {boxes}")
        elif found.problem(key) is not None:
            skips.add(s.image, str(found.problem(key)))
        else:
            box = found.boxes[key]
            out.append(dataclasses.replace(s, box=box_from_xyxy(*(float(v) for v in box), margin=meta.box_margin)))
    return out


def _face_errors(samples: list, pred: np.ndarray, norm: str, save: Path | None) -> np.ndarray:
    if save is not None:
        from cunet.data.formats import read_pts, write_pts

        pred = pred.copy()
        for f, i in zip(_prediction_files(save, samples), range(len(pred))):
            if np.isfinite(pred[i]).all():  # a .pts cannot hold NaN: a non-finite prediction gets no file
                write_pts(f, pred[i])
                pred[i] = read_pts(f)  # score what the file holds, as `cunet metrics` will
    gt = np.stack([s.points for s in samples])
    mask = np.stack([s.visible for s in samples])
    return scoring.per_image_nme(pred, gt, mask, norm, [s.key for s in samples])


def _prediction_files(save: Path, samples: list) -> list[Path]:
    """Where the face predictions of `samples` go: the ground truth's relative paths under `save`."""
    return [save / Path(s.key).with_suffix(".pts") for s in samples]


def _score_poses(data_root: Path, split: str, pred: np.ndarray, save: Path | None, indices: list[int],
                 headboxes: str | Path | None = None, style: str = "mpii") -> tuple[dict, np.ndarray]:
    # The records the scored samples came from (`indices`: their places in the file); head boxes from them or a
    # gt_valid.mat. People left out (a bad record, an unreadable image) are not among them.
    gt_file, records = scoring.load_pose_gt(data_root, split, headboxes, strict=False)
    records = [records[i] for i in indices]
    scoring.pckh_needs_headboxes(gt_file, records)
    if save is not None:
        from cunet.data.formats import read_mpii_json, write_mpii_json

        out = save / gt_file.name
        write_mpii_json(out, [
            dataclasses.replace(r, joints=p, visible=np.ones(len(p), dtype=bool)) for r, p in zip(records, pred)
        ])
        # score what the file holds: a non-finite joint was written as "not predicted" and reads back as NaN
        pred = np.stack([r.joints for r in read_mpii_json(out)])
    gt, mask = np.stack([r.joints for r in records]), np.stack([r.visible for r in records])
    heads = np.stack([np.asarray(r.headbox, dtype=np.float64) for r in records])
    return scoring.summarize_pose(pred, gt, mask, heads, style), scoring.joint_correct(pred, gt, mask, heads, 0.5)


def evaluate(
    model_path: str | Path,
    data_root: str | Path,
    task: str | None = None,
    backend: str = "auto",
    split: str = "test",
    subset: str | None = None,
    flip: bool = False,
    batch: int = 16,
    save_predictions: str | Path | None = None,
    plot_dir: str | Path | None = None,
    norm: str = "inter-ocular",
    threads: int | None = None,
    progress: Progress | None = None,
    per_image: bool = False,
    boxes: str | Path | None = None,
    headboxes: str | Path | None = None,
    strict: bool = False,
    decode: str = DEFAULT_METHOD.value,
    device: str | None = None,
    pckh_style: str = "mpii",
    exclude: Collection[str | Path] = (),
) -> dict | tuple[dict, np.ndarray]:
    """Run a model over a dataset split and score it.

    Args:
        model_path: a `.pt` checkpoint, `.onnx` model or `.engine` (see `cunet.runtime.open_predictor`).
        data_root: a dataset folder (the layouts of `cunet.data.dataset`).
        task: "face" or "pose"; None takes the model's own task from its metadata.
        backend: "auto", "torch", "ort-cpu", "ort-cuda", "ort-trt" or "tensorrt".
        split: dataset split ("test", "valid" or "train").
        subset: faces: one test subset ("common", "challenging", ...); None or "full" for all.
        flip: flip test (average with the mirrored crop's heatmaps).
        batch: images per inference call.
        save_predictions: folder to write the predictions to in the dataset's format. Like `plot_dir`, it is
            written under the rule of `cunet evaluate` (a file there is replaced only when an earlier evaluate wrote
            it, never the model or the data, nothing outside the folder): the running command's write policy, or,
            called from Python without one, the policy of `cunet evaluate --save-predictions/--plot-dir`.
        plot_dir: folder for `ced.png` (faces) or `pckh.png` (pose).
        norm: face NME normaliser (a key of `scoring.NORMS`).
        threads: CPU threads for inference (None: the runtime's default).
        progress: called as progress(done, total) after each batch.
        per_image: also return the errors behind the numbers, scored once from what was saved: faces: per-image
            NME [N] (fractions); pose: per-person joint correctness at PCKh@0.5 [N, 16] (1, 0, NaN not visible).
        boxes: faces: detector boxes to crop from (a box JSON, an iBUG `bounding_boxes_*.mat` or a folder of them,
            `cunet.data.detector_boxes`) instead of the landmark box; either is enlarged by the model's margin.
        headboxes: pose: a `gt_valid.mat` with the head boxes (default: the one beside `valid.json`, if any).
        strict: stop at the first file that cannot be used (`cunet.batch`) instead of leaving it out.
        decode: the heatmap decoder (`cunet.data.decode`): "dark" (cunet's sub-pixel default), "quarter",
            "argmax", or "original" (the original CU-Net code's integer points, to reproduce its logged numbers).
        device: where to run ("cpu", "cuda", "cuda:N"; None: the backend's default, see `open_predictor`).
        pckh_style: pose: the headline of `pckh@0.5`/`pckh@0.1` (`cunet.evaluate.scoring.PCKH_STYLES`).
        exclude: image files to leave out of the scored set (bench: the calibration images of a dataset whose
            one split serves both calibration and scoring).

    Returns:
        The `cunet metrics` JSON of the task (of the images used; "nonfinite" counts the images whose prediction
        is not finite, which stay in "n" as failures), plus "model", "task", "backend", "provider", "device" and
        "precision" (what really ran), "flip", "boxes" (the box file or folder, None for landmark boxes), "skipped"
        ([{"file", "problem"}] of the files left out: bad annotations, unreadable images, missing or bad boxes) and
        "nonfinite_files" (the images with a non-finite prediction); with `per_image`, the tuple (that dict, the
        per-image errors of the images used).

    Raises:
        CunetError: unreadable model or data, a model for another task or landmark count, a split without one
            usable sample, missing head boxes (pose), a backend this machine cannot run, a model whose every
            prediction is non-finite; with `strict`, the first file that cannot be used.
    """
    args = dict(locals())  # first: the parameters, passed on as they came
    from cunet.io import Output, WritePolicy, writing

    outputs = [Output(Path(p), "cunet evaluate", option, folder=True)
               for p, option in ((save_predictions, "--save-predictions"), (plot_dir, "--plot-dir")) if p is not None]
    inputs = [model_path, data_root, *(p for p in (boxes, headboxes) if p is not None)]
    with writing(WritePolicy(outputs, inputs), default=True):
        return _evaluate(**args)


def _evaluate(model_path, data_root, task, backend, split, subset, flip, batch, save_predictions, plot_dir, norm,
              threads, progress, per_image, boxes, headboxes, strict, decode, device, pckh_style, exclude):
    from cunet.data.dataset import load_samples
    from cunet.data.layout import detect_layout
    from cunet.io import check_writable
    from cunet.runtime import open_predictor

    if batch < 1:
        raise CunetError(f"batch must be at least 1, got {batch}")
    if pckh_style not in scoring.PCKH_STYLES:
        raise CunetError(f"unknown PCKh style {pckh_style!r}; choose one of {', '.join(scoring.PCKH_STYLES)}")
    data_root = Path(data_root)
    save = Path(save_predictions) if save_predictions is not None else None
    with open_predictor(model_path, backend=backend, threads=threads, device=device,
                        decode_method=decode) as predictor:
        meta = predictor.meta
        task = task or meta.task
        if task != meta.task:
            raise CunetError(f"{model_path}: a {meta.task} model cannot be evaluated on {task} data")
        # allow_empty: a split whose only file is broken (valid.json not JSON) is reported as that file's problem.
        skips = Skips(strict)
        loaded = load_samples(data_root, task, split, subset, allow_empty=True, headboxes=headboxes)
        skips.extend(loaded.problems)
        if exclude and task != "face":
            raise CunetError("leaving images out of the scored set applies to face datasets only")
        left_out = {Path(f).resolve() for f in exclude}
        samples = [s for s in loaded.samples if Path(s.image).resolve() not in left_out]
        if not samples:
            first = f" (first: {skips.items[0].file}: {skips.items[0].problem})" if skips else ""
            but = f" besides the {len(loaded.samples)} left out of the scored set" if loaded.samples else ""
            raise CunetError(f"{data_root}: no usable {task} samples in split {split!r}{but}{first}")
        if len(samples[0].points) != meta.num_landmarks:
            raise CunetError(f"{model_path}: predicts {meta.num_landmarks} landmarks but {data_root} has "
                             f"{len(samples[0].points)}")
        samples = _crop_boxes(samples, meta, None if boxes is None else Path(boxes), task, skips)
        # Before any inference: a prediction or plot path that holds a file evaluate may not replace (the ground
        # truth itself, when --save-predictions is the data folder or a key leaves it) stops the run here.
        plot = [Path(plot_dir) / ("ced.png" if task == "face" else "pckh.png")] if plot_dir is not None else []
        check_writable([*(_prediction_files(save, samples) if save is not None and task == "face" else []), *plot])
        pred, keep = _predict_all(predictor, samples, flip, batch, progress, skips)
        ran = {"model": str(model_path), "task": task, "backend": predictor.backend,
               "provider": predictor.provider, "device": predictor.device, "precision": meta.precision,
               "flip": flip, "boxes": None if boxes is None else str(boxes), "skipped": skips.to_json()}
    if not keep.any():
        first = skips.items[0]
        raise CunetError(f"{first.file}: {first.problem} (none of the {len(samples)} images could be used)")
    # Not finite where a point is scored: the definition of the metric JSON's "nonfinite".
    scored = np.stack([s.visible for s in samples]) & np.isfinite(np.stack([s.points for s in samples])).all(axis=-1)
    broken = keep & (scored & ~np.isfinite(pred).all(axis=-1)).any(axis=1)
    if broken.sum() == keep.sum():
        raise CunetError(f"{model_path}: every prediction is NaN or inf ({int(keep.sum())} image(s)); the model is "
                         "broken (an INT8 model with a bad scale, or weights that overflow)")
    ran["nonfinite_files"] = [str(s.image) for s, b in zip(samples, broken) if b]
    name = Path(model_path).name
    if task == "face":
        samples, pred = [s for s, k in zip(samples, keep) if k], pred[keep]
        errors = _face_errors(samples, pred, norm, save)
        label = detect_layout(data_root, task).selection_label(subset)
        subsets = tuple(s.subset for s in samples) if label in ("full", scoring.PRIVATE) else None
        result = scoring.summarize_face(errors, subsets, norm, total=label)
        if plot_dir is not None:
            from cunet.evaluate.plots import plot_ced

            plot_ced({name: errors}, Path(plot_dir) / "ced.png", title=f"CED ({norm} NME)")
    else:
        indices = [int(s.key.rpartition("#")[2]) for s, k in zip(samples, keep) if k]
        result, errors = _score_poses(data_root, split, pred[keep], save, indices, headboxes, pckh_style)
        if plot_dir is not None:
            from cunet.evaluate.plots import plot_pckh

            plot_pckh({name: {k: v / 100 for k, v in result["per_joint"].items()}}, Path(plot_dir) / "pckh.png")
    return ({**result, **ran}, errors) if per_image else {**result, **ran}

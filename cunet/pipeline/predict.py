"""Landmarks for image files with any model file: the library behind `cunet predict`.

Images come as files or folders (searched recursively); each keeps a relative name (its path inside the folder
given, or its file name), and every output lands at that name under the output folder, so the prediction folder
mirrors the input one. That is what lets `cunet metrics` score `--format pts` output against a 300-W folder.

A landmark model needs a crop box per face or person. Boxes come from a box file — the detector box JSON
`{relative_image_path: [x1, y1, x2, y2]}` that `cunet.data.formats.read_box_file` reads (0-based pixels) or iBUG's
300-W `bounding_boxes_*.mat` files (`cunet.data.detector_boxes`), enlarged by the model's own crop margin
(`ModelMeta.box_margin`: 1.25 for cunet's training, 1.1 for an imported original model), or for poses an MPII
JSON whose records' centre and scale give one box per person (images without a record are skipped) — or, without a
box file, the face detector's boxes (faces, when `cunet[detect]` is installed: one instance per face found), else
the whole image. Which one was used is recorded per instance, and the CLI says so on stderr, because a
whole-image box on a photo with a small face gives poor landmarks.

Videos and frame folders among the inputs are tracked frame by frame (`cunet.pipeline.video`): JSON lines or CSV
per video, and an overlay video with `overlay`. Smoothing applies to videos only: a still image's landmarks are
the same whatever `smooth` says.

Outputs per image: `<name>.json` (points, box, model, backend), `<name>.overlay.png` (predictions drawn with
OpenCV) and with `--format pts` a 300-W `<name>.pts`; `--format mpii` writes one MPII JSON for all images (named
like the MPII box file, so `cunet metrics --task pose --gt DATA --pred OUT` finds it). `<name>` is the image's
relative name without its extension; when two images would share it (`face.png` and `face.jpg`), both keep their
extension instead (`face.png.json`, `face.jpg.json`), so no prediction overwrites another.

Nothing is lost: the output folder keeps a manifest of the files `cunet predict` wrote there (`cunet.io`); a run
replaces only those and refuses, before any inference, an output path that holds any other file. Called from Python
without a write policy, `predict_files` runs under the one `cunet predict --out` has.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cunet.batch import Skips
from cunet.data.decode import DEFAULT_METHOD
from cunet.data.smooth import SmoothConfig
from cunet.evaluate.draw import overlay_radius
from cunet.errors import CunetError
from cunet.pipeline.track import DEFAULT_MIN_SCORE

__all__ = ["OutputFormat", "PredictOptions", "ImageFile", "collect_images", "output_stems", "overlay_radius",
           "read_boxes", "predict_files"]

#: Called after each image with (images done, images in total).
Progress = Callable[[int, int], None]


class OutputFormat(str, Enum):
    """What `predict_files` writes besides the per-image JSON and overlay."""

    JSON = "json"
    PTS = "pts"
    MPII = "mpii"
    CSV = "csv"  # videos: one CSV row per frame instead of JSON lines (images still get their .json)


@dataclass(frozen=True)
class PredictOptions:
    """Options of `predict_files` (the `cunet predict` flags).

    Attributes:
        model: a `.pt`, `.onnx` or `.engine` file.
        inputs: image files and/or folders.
        out: output folder.
        boxes: a box file (detector JSON, or an MPII JSON for poses), or None for whole-image boxes.
        format: extra output in a dataset format (`OutputFormat`).
        backend: as `cunet.runtime.open_predictor`.
        threads: CPU inference threads (None: the runtime's default).
        draw: write `<name>.overlay.png` per image.
        flip: flip test (average with the mirrored crop).
        strict: stop at the first image that fails (unreadable, no box) instead of listing it in "failed".
        overlay: videos: also write `<name>.overlay.mp4`.
        frames: each folder given is one video made of its images (in natural order), not a folder of photos.
        fps: a frame folder's frame rate (None: `cunet.data.video.DEFAULT_FOLDER_FPS`).
        smooth: videos: the temporal filter (`cunet.data.smooth.SmoothConfig`).
        detect: faces without a box file: use the face detector when `cunet[detect]` is installed.
        min_score: videos: mean heatmap peak below which the tracked face is lost (`cunet.pipeline.track`).
        decode: the heatmap decoder ("dark", "quarter", "argmax" or "original", `cunet.data.decode`).
    """

    model: Path
    inputs: tuple[Path, ...]
    out: Path
    boxes: Path | None = None
    format: OutputFormat = OutputFormat.JSON
    backend: str = "auto"
    threads: int | None = None
    draw: bool = True
    flip: bool = False
    strict: bool = False
    overlay: bool = False
    frames: bool = False
    fps: float | None = None
    smooth: SmoothConfig = dataclasses.field(default_factory=SmoothConfig)
    detect: bool = True
    min_score: float = DEFAULT_MIN_SCORE
    decode: str = DEFAULT_METHOD.value

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", Path(self.model))
        object.__setattr__(self, "inputs", tuple(Path(p) for p in self.inputs))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "format", OutputFormat(self.format))
        if self.boxes is not None:
            object.__setattr__(self, "boxes", Path(self.boxes))
        if not self.inputs:
            raise CunetError("no images given")


@dataclass(frozen=True)
class ImageFile:
    """An input image and its name relative to the folder it was found in (POSIX, used for every output)."""

    path: Path
    name: str


def collect_images(inputs: Sequence[str | os.PathLike]) -> list[ImageFile]:
    """Image files of `inputs` (files as given; folders searched recursively for .png .jpg .jpeg .bmp).

    Raises:
        CunetError: a missing path, a file that is not an image, a folder without images, or two inputs with the
            same relative name (their outputs would overwrite each other).
    """
    from cunet.data.dataset import IMAGE_SUFFIXES

    found: list[ImageFile] = []
    for item in (Path(p) for p in inputs):
        if item.is_dir():
            files = sorted(f for f in item.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                           and not any(part.startswith(".") for part in f.relative_to(item).parts))
            if not files:
                raise CunetError(f"{item}: no images ({' '.join(IMAGE_SUFFIXES)}) in this folder")
            found += [ImageFile(f, f.relative_to(item).as_posix()) for f in files]
        elif item.is_file():
            if item.suffix.lower() not in IMAGE_SUFFIXES:
                raise CunetError(f"{item}: not an image file (expected {' '.join(IMAGE_SUFFIXES)})")
            found.append(ImageFile(item, item.name))
        else:
            raise CunetError(f"{item}: no such file or folder")
    seen: dict[str, Path] = {}
    for f in found:
        if f.name in seen and seen[f.name].resolve() != f.path.resolve():
            raise CunetError(f"{f.path}: has the same output name {f.name!r} as {seen[f.name]}; give their folder "
                             "instead, or predict them in separate runs")
        seen[f.name] = f.path
    unique = {f.path.resolve(): f for f in found}
    return list(unique.values())


@dataclass(frozen=True)
class _Boxes:
    """Crop boxes per image key, and for an MPII box file the records (so predictions keep the file's order)."""

    by_key: dict[str, list[Any]]
    records: list[Any] | None
    source: Path
    detector: Any = None  # `cunet.data.detector_boxes.DetectorBoxes`: looks images up by path or file name


def read_boxes(path: str | os.PathLike, task: str, margin: float | None = None) -> _Boxes:
    """Read a box file: a detector box JSON object or iBUG `bounding_boxes_*.mat` file(s) (faces and poses), or an
    MPII JSON list (poses).

    Args:
        path: the box file, or a folder of `bounding_boxes_*.mat` files.
        task: the model's task.
        margin: a detector box's crop side is `margin` x max(width, height) (the model's `ModelMeta.box_margin`;
            None: cunet's own 1.25).

    Returns:
        Boxes (`cunet.data.preprocess.Box`) per POSIX image key, in file order.

    Raises:
        CunetError: unreadable or malformed file (names it), an MPII file for faces.
    """
    import json

    from cunet.data.detector_boxes import read_detector_boxes
    from cunet.data.formats import read_mpii_json
    from cunet.data.layout import key_text_problem
    from cunet.data.preprocess import FACE_BOX_MARGIN, box_from_center_scale, box_from_xyxy
    from cunet.limits import read_limited_text

    path = Path(path)
    try:
        is_list = path.is_file() and isinstance(json.loads(read_limited_text(path)), list)
    except (CunetError, json.JSONDecodeError):
        is_list = False  # read_detector_boxes reports the precise problem
    if is_list:
        if task != "pose":
            raise CunetError(f"{path}: an MPII list of people gives person boxes; faces need a box file "
                             "{\"image\": [x1, y1, x2, y2]}")
        records = read_mpii_json(path)
        by_key: dict[str, list[Any]] = {}
        for i, r in enumerate(records):
            bad_key = key_text_problem(r.image)
            if bad_key is not None:  # keys never leave the folder they are relative to
                raise CunetError(f"{path}: record {i}: image {r.image!r} {bad_key}")
            by_key.setdefault(Path(r.image).as_posix(), []).append(
                box_from_center_scale((float(r.center[0]), float(r.center[1])), r.scale))
        return _Boxes(by_key, records, path)
    found = read_detector_boxes(path)
    m = FACE_BOX_MARGIN if margin is None else margin
    return _Boxes({k: [box_from_xyxy(*(float(v) for v in b), margin=m)] for k, b in found.boxes.items()}, None, path,
                  found)


def _box_key(image: ImageFile, boxes: _Boxes) -> str | None:
    candidates = [image.name, image.path.as_posix(), image.path.name]
    try:
        candidates.append(image.path.resolve().relative_to(boxes.source.resolve().parent).as_posix())
    except ValueError:
        pass
    if boxes.detector is not None:
        return boxes.detector.find_key(*candidates, image.path.resolve().as_posix())
    return next((c for c in candidates if c in boxes.by_key), None)


def _box_dict(box: Any) -> dict[str, float]:
    half = box.size / 2
    return {"cx": box.cx, "cy": box.cy, "size": box.size,
            "x1": box.cx - half, "y1": box.cy - half, "x2": box.cx + half, "y2": box.cy + half}


def output_stems(images: Sequence[ImageFile]) -> dict[str, str]:
    """Each image name's output stem (relative, POSIX): the name without its extension, or the whole name when that
    stem is shared by another image (`face.png` + `face.jpg` → `face.png`, `face.jpg`); compared case-insensitively,
    as a case-insensitive file system would."""
    def bare(name: str) -> str:
        rel = Path(name)
        return (rel.parent / rel.stem).as_posix()

    counts: dict[str, int] = {}
    for f in images:
        counts[bare(f.name).lower()] = counts.get(bare(f.name).lower(), 0) + 1
    return {f.name: bare(f.name) if counts[bare(f.name).lower()] == 1 else f.name for f in images}


def _planned_outputs(opts: PredictOptions, stems: dict[str, str], videos: set[str]) -> list[Path]:
    from cunet.pipeline.video import video_outputs

    suffixes = [".json"] + [".overlay.png"] * opts.draw + [".pts"] * (opts.format is OutputFormat.PTS)
    out = []
    for name, stem in stems.items():
        rel = video_outputs(stem, opts.format.value, opts.overlay) if name in videos else [stem + s for s in suffixes]
        out += [opts.out / r for r in rel]
    return out


def predict_files(opts: PredictOptions, progress: Progress | None = None,
                  frame_progress: Callable[[str, int, int | None], None] | None = None) -> dict[str, Any]:
    """Predict landmarks for every image and video of `opts.inputs` and write the outputs described in the module
    docstring.

    Args:
        opts: what to predict and write.
        progress: called after each image with (done, total).
        frame_progress: called after each video frame with (video name, frames done, frames announced or None).

    Returns:
        {"model", "backend", "provider", "task", "out", "format", "images" (predicted), "skipped" (names of
        images without a person in an MPII box file: not an error), "failed" ([{"file", "problem"}]: the batch
        rule's list (`cunet.batch`): images left out because they could not be read, had no usable box in the box
        file, a box (almost) wholly outside the image, or held several people for `--format pts`; videos that
        could not be opened; video frames that could not be decoded), "box_sources": {source: instances},
        "mpii_file" (or None), "predictions": [per-image JSON documents], "videos" ([per-video summaries, see
        `cunet.pipeline.video.predict_video`]), "frames" (video frames predicted), "smooth" (the filter's settings).

    Raises:
        CunetError: unreadable model or box file, an output path holding a file predict did not write; with
            `strict`, also the first failing image.
    """
    from cunet.io import Output, WritePolicy, check_writable, writing
    from cunet.pipeline.video import collect_videos

    own = WritePolicy([Output(opts.out, "cunet predict", "--out", folder=True)],
                      [opts.model, *opts.inputs, *([opts.boxes] if opts.boxes else [])])
    with writing(own, default=True):
        videos, image_inputs = collect_videos(opts.inputs, opts.frames)
        images = collect_images(image_inputs) if image_inputs else []
        stems = output_stems(images + [ImageFile(v.path, v.name) for v in videos])
        check_writable(_planned_outputs(opts, stems, {v.name for v in videos}))
        return _predict(opts, images, stems, progress, videos, frame_progress)


def _predict(opts: PredictOptions, images: list[ImageFile], stems: dict[str, str], progress: Progress | None,
             videos: list[Any], frame_progress: Any) -> dict[str, Any]:
    import cv2

    from cunet.data.dataset import read_image
    from cunet.data.formats import PoseRecord, write_mpii_json, write_pts
    from cunet.data.preprocess import box_from_xyxy, box_problem
    from cunet.data.spec import get_spec
    from cunet.errors import OutputError
    from cunet.evaluate.draw import PRED_COLOUR, draw_landmarks
    from cunet.io import check_writable, write_bytes, write_json
    from cunet.pipeline.video import predict_videos
    from cunet.runtime import open_predictor, whole_image_box

    predictions: list[dict[str, Any]] = []
    mpii: list[tuple[int, Any]] = []  # (order key, PoseRecord)
    sources: dict[str, int] = {}
    skipped: list[str] = []
    failed = Skips(opts.strict)
    nonfinite: list[str] = []
    with open_predictor(opts.model, backend=opts.backend, threads=opts.threads, decode_method=opts.decode) as p:
        meta = p.meta
        if opts.format is OutputFormat.MPII and meta.task != "pose":
            raise CunetError(f"{opts.model}: --format mpii writes human pose; this is a {meta.task} model (use pts)")
        boxes = read_boxes(opts.boxes, meta.task, meta.box_margin) if opts.boxes is not None and images else None
        detector = _detector(opts, meta.task)
        skeleton = get_spec(meta.task).skeleton
        record_index = {id(r): i for i, r in enumerate(boxes.records)} if boxes and boxes.records else {}

        def _one(image_file: ImageFile) -> dict[str, Any] | None:
            image = read_image(image_file.path)
            found = detector.detect(image) if boxes is None and detector is not None else []
            if found:
                crop_boxes = [box_from_xyxy(*d.box, margin=meta.box_margin) for d in found]
                source, recs = f"detector {detector.name}", [None] * len(found)
            elif boxes is None:
                crop_boxes, source, recs = [whole_image_box(image)], "whole image", [None]
            else:
                key = _box_key(image_file, boxes)
                if key is None and boxes.records is not None:  # an MPII file lists people; this image has none
                    skipped.append(image_file.name)
                    return None
                if key is None:
                    raise CunetError(f"{image_file.path}: no box for this image in {boxes.source} (looked up as "
                                     f"{image_file.name!r})")
                if boxes.detector is not None and boxes.detector.problem(key) is not None:
                    raise CunetError(f"{image_file.path}: {boxes.detector.problem(key)}")
                crop_boxes, source = boxes.by_key[key], f"box file {boxes.source.name}"
                for b in crop_boxes:  # before cropping or drawing: a box outside the image is a skipped image
                    bad_box = box_problem(b, image.shape[1], image.shape[0])
                    if bad_box is not None:
                        raise CunetError(f"{image_file.path}: {bad_box} (from {boxes.source.name})")
                recs = ([r for r in boxes.records if Path(r.image).as_posix() == key] if boxes.records
                        else [None] * len(crop_boxes))
            with np.errstate(all="ignore"):
                points = p.predict([image] * len(crop_boxes), crop_boxes, flip=opts.flip)
            if not np.isfinite(points).all():  # a broken model's output is not a prediction: nothing is written
                nonfinite.append(image_file.name)
                bad = int((~np.isfinite(points)).any(axis=-1).sum())
                raise CunetError(f"{image_file.path}: the model's prediction is not finite (NaN or inf in {bad} of "
                                 f"{points.shape[0] * points.shape[1]} points); nothing written")
            sources[source] = sources.get(source, 0) + len(crop_boxes)
            doc = {
                "image": str(image_file.path),
                "name": image_file.name,
                "model": str(opts.model),
                "backend": p.backend,
                "provider": p.provider,
                "task": meta.task,
                "coordinates": "0-based pixels (x, y) of the original image",
                "landmark_names": list(meta.landmark_names),
                "instances": [{"box": _box_dict(b), "box_source": source, "points": pts.tolist()}
                              for b, pts in zip(crop_boxes, points)],
            }
            if opts.format is OutputFormat.PTS and len(points) != 1:
                raise CunetError(f"{image_file.path}: {len(points)} people in the box file, but a .pts file "
                                 "holds one set of points; use --format mpii")
            stem = opts.out / stems[image_file.name]
            write_json(stem.with_name(stem.name + ".json"), doc)
            if opts.format is OutputFormat.PTS:
                write_pts(stem.with_name(stem.name + ".pts"), points[0])
            if opts.format is OutputFormat.MPII:
                for i, (b, pts, rec) in enumerate(zip(crop_boxes, points, recs)):
                    scale = b.size / (200.0 * 1.25)  # the inverse of `box_from_center_scale`
                    center = np.array([b.cx, b.cy - 15.0 * scale])
                    new = PoseRecord(image=image_file.name, center=center, scale=scale, joints=pts,
                                     visible=np.ones(len(pts), dtype=bool), headbox=None)
                    if rec is not None:
                        new = dataclasses.replace(rec, joints=pts, visible=np.ones(len(pts), dtype=bool))
                    mpii.append((record_index.get(id(rec), len(record_index) + len(mpii)), new))
            if opts.draw:
                drawn = image
                for b, pts in zip(crop_boxes, points):
                    drawn = draw_landmarks(drawn, pts, PRED_COLOUR, skeleton=skeleton, radius=overlay_radius(b.size))
                ok, buf = cv2.imencode(".png", drawn)
                if not ok:
                    raise RuntimeError(f"OpenCV could not encode the overlay of {image_file.path}")
                write_bytes(stem.with_name(stem.name + ".overlay.png"), buf.tobytes())
            return doc

        for done, image_file in enumerate(images, 1):
            try:
                doc = _one(image_file)
            except OutputError:  # the output folder, not this image: every later image would fail the same way
                raise
            except CunetError as e:
                failed.add_error(image_file.path, e)
                doc = None
            if doc is not None:
                predictions.append(doc)
            if progress is not None:
                progress(done, len(images))
        if nonfinite and len(nonfinite) == len(images):
            raise CunetError(f"{opts.model}: every prediction is NaN or inf ({len(images)} image(s)); the model is "
                             "broken, nothing written")
        video_docs = predict_videos(opts, p, videos, stems, detector, failed, sources, frame_progress)
        ran = {"backend": p.backend, "provider": p.provider}
    mpii_file = None
    if opts.format is OutputFormat.MPII:
        mpii_file = opts.out / (boxes.source.name if boxes and boxes.records else "predictions.json")
        check_writable([mpii_file])
        write_mpii_json(mpii_file, [r for _, r in sorted(mpii, key=lambda t: t[0])])
    return {"model": str(opts.model), **ran, "task": meta.task, "out": str(opts.out), "format": opts.format.value,
            "images": len(predictions), "skipped": skipped, "failed": failed.to_json(), "box_sources": sources,
            "mpii_file": None if mpii_file is None else str(mpii_file), "predictions": predictions,
            "videos": video_docs, "frames": sum(v["predicted"] for v in video_docs), "smooth": opts.smooth.to_dict()}


def _detector(opts: PredictOptions, task: str) -> Any:
    """The face detector for inputs without a box file: None for poses, with `detect` off, or when the `detect`
    extra is not installed (the CLI then says what to install)."""
    from cunet.runtime.detector import detector_available, open_detector

    if task != "face" or not opts.detect or not detector_available():
        return None
    return open_detector()

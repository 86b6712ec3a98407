"""`cunet predict` on videos and frame folders: tracked landmarks per frame as JSON lines or CSV, and an overlay video.

Inputs: video files (`cunet.data.video.VIDEO_SUFFIXES`, any case; folders given to predict are searched for them
too) and, with `frames=True`, each folder given as one sequence of frames. Each video is tracked by
`cunet.pipeline.track.Tracker`; its first box comes from the box file (key: the video's name, value one
[x1, y1, x2, y2] for frame 0 or a list of one box per frame), else from the face detector when `cunet[detect]` is
installed (faces), else the whole frame.

Outputs under the output folder, at the video's relative name without its suffix (`<stem>`), through `cunet.io`
(the write rule of `cunet predict --out`) like every predict output:
- `<stem>.jsonl` (format json) — one JSON object per frame: {"frame", "time", "box": {x1, y1, x2, y2, cx, cy,
  size}, "box_source", "points" [[x, y] ×K] (smoothed when smoothing is on), "scores" [K], "score", "lost",
  "redetected"}; a frame that could not be decoded is {"frame", "time", "skipped": why}.
- `<stem>.csv` (format csv) — one row per frame: frame, time, box_x1 … box_y2, box_source, score, lost,
  redetected, skipped, then x_i, y_i, score_i per landmark.
- `<stem>.overlay.mp4` (with `overlay`) — the frames with the points and the crop box drawn, MPEG-4 Part 2
  (`mp4v`: the encoder every OpenCV FFmpeg build has) at the source's frame rate; OpenCV writes it into a temporary
  folder and its bytes are committed through `cunet.io`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cunet.data.preprocess import Box
from cunet.errors import CunetError, OutputError
from cunet.io import write_bytes
from cunet.pipeline.track import TrackConfig, TrackedFrame, Tracker, TrackSources
from cunet.tempdirs import temp_dir

__all__ = ["VideoInput", "collect_videos", "video_outputs", "read_video_boxes", "predict_video", "predict_videos",
           "frame_record"]

#: Called after each frame with (frames done, frames announced or None).
FrameProgress = Callable[[int, int | None], None]
OVERLAY_SUFFIX = ".overlay.mp4"
OVERLAY_FOURCC = "mp4v"


@dataclass(frozen=True)
class VideoInput:
    """A video file or frame folder and its name relative to the input given (POSIX, used for the outputs)."""

    path: Path
    name: str


def collect_videos(inputs: Sequence[str | os.PathLike], frames: bool) -> tuple[list[VideoInput], list[Path]]:
    """Split predict's inputs into videos and what is left for the image reader.

    Video files are videos; with `frames`, every folder given is one frame sequence; otherwise folders are
    searched (recursively) for video files, and go on to the image reader only when they also hold images.

    Returns:
        (videos, image inputs).
    """
    from cunet.data.layout import IMAGE_SUFFIXES
    from cunet.data.video import is_video_file

    videos: list[VideoInput] = []
    rest: list[Path] = []
    for item in (Path(p) for p in inputs):
        if item.is_dir():
            if frames:
                videos.append(VideoInput(item, item.resolve().name))
                continue
            inside = sorted(f for f in item.rglob("*") if f.is_file() and is_video_file(f)
                            and not any(part.startswith(".") for part in f.relative_to(item).parts))
            videos += [VideoInput(f, f.relative_to(item).as_posix()) for f in inside]
            if not inside or any(f.suffix.lower() in IMAGE_SUFFIXES for f in item.rglob("*") if f.is_file()):
                rest.append(item)
        elif is_video_file(item):
            videos.append(VideoInput(item, item.name))
        else:
            rest.append(item)
    return videos, rest


def video_outputs(stem: str, fmt: str, overlay: bool) -> list[str]:
    """The relative output paths of one video."""
    return [stem + (".csv" if fmt == "csv" else ".jsonl")] + [stem + OVERLAY_SUFFIX] * overlay


def read_video_boxes(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """A box file's entries for videos: `{name: [x1, y1, x2, y2]}` (frame 0) or `{name: [[x1, y1, x2, y2], ...]}`
    (one per frame), 0-based pixels.

    Raises:
        CunetError: an unreadable, empty or oversized file (`cunet.limits`), or a value that is neither (names the
            key). A box outside its frame is not an error here: the tracker skips that frame and says why.
    """
    from cunet.limits import read_limited_text

    path = Path(path)
    text = read_limited_text(path)  # missing, empty, oversized or not UTF-8: one line, as every reader says it
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CunetError(f"{path}: not a readable JSON box file ({e})") from None
    if not isinstance(data, dict):
        raise CunetError(f"{path}: expected a JSON object {{\"video.mp4\": [x1, y1, x2, y2]}}")
    out: dict[str, list[np.ndarray]] = {}
    for key, value in data.items():
        boxes = value if isinstance(value, list) and value and isinstance(value[0], list) else [value]
        checked = []
        for b in boxes:
            arr = np.asarray(b, dtype=np.float64) if isinstance(b, list) and len(b) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in b) else None
            if arr is None or not np.isfinite(arr).all() or arr[2] <= arr[0] or arr[3] <= arr[1]:
                raise CunetError(f"{path}: box of {key!r} must be [x1, y1, x2, y2] (x2 > x1, y2 > y1) or a list of "
                                 "them, one per frame")
            checked.append(arr)
        out[Path(key).as_posix()] = checked
    return out


def _box_dict(box: Box | None) -> dict[str, float] | None:
    if box is None:
        return None
    half = box.size / 2
    return {"x1": box.cx - half, "y1": box.cy - half, "x2": box.cx + half, "y2": box.cy + half, "cx": box.cx,
            "cy": box.cy, "size": box.size}


def frame_record(t: TrackedFrame) -> dict[str, Any]:
    """The JSON-lines object of one tracked frame (module docstring)."""
    if t.problem is not None:
        return {"frame": t.index, "time": round(t.time, 6), "skipped": t.problem}
    assert t.points is not None and t.scores is not None
    return {"frame": t.index, "time": round(t.time, 6), "box": _box_dict(t.box), "box_source": t.box_source,
            "points": np.round(t.points, 3).tolist(), "scores": np.round(t.scores, 4).tolist(),
            "score": None if t.score is None else round(t.score, 4), "lost": t.lost, "redetected": t.redetected}


def _csv_rows(frames: list[TrackedFrame], k: int) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["frame", "time", "box_x1", "box_y1", "box_x2", "box_y2", "box_source", "score", "lost",
                "redetected", "skipped"] + [f"{a}{i}" for i in range(k) for a in ("x", "y", "score")])
    for t in frames:
        if t.problem is not None or t.points is None or t.scores is None:
            w.writerow([t.index, round(t.time, 6)] + [""] * 8 + [t.problem] + [""] * (3 * k))
            continue
        b = _box_dict(t.box) or {}
        per_point = [v for p, s in zip(np.round(t.points, 3), np.round(t.scores, 4)) for v in (*p, s)]
        w.writerow([t.index, round(t.time, 6), *(round(b[c], 3) for c in ("x1", "y1", "x2", "y2")), t.box_source,
                    "" if t.score is None else round(t.score, 4), int(t.lost), int(t.redetected), ""] + per_point)
    return buf.getvalue()


class _Overlay:
    """An overlay video written by OpenCV into a temporary folder; `commit` hands its bytes to `cunet.io`."""

    def __init__(self, fps: float, size: tuple[int, int], skeleton: Any) -> None:
        import cv2

        self._dir = contextlib.ExitStack()  # closing it removes the folder
        self.path = self._dir.enter_context(temp_dir("overlay")) / f"overlay{OVERLAY_SUFFIX}"
        self.size, self.skeleton = size, skeleton
        self._writer = cv2.VideoWriter(str(self.path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*OVERLAY_FOURCC),
                                       fps, size)
        if not self._writer.isOpened():
            self._dir.close()
            raise CunetError(f"this OpenCV cannot write {OVERLAY_FOURCC} video for --overlay")

    def add(self, image: np.ndarray | None, t: TrackedFrame) -> None:
        import cv2

        from cunet.evaluate.draw import PRED_COLOUR, draw_landmarks, overlay_radius

        w, h = self.size
        if image is None:  # keep the timeline: an undecodable frame is a black one
            self._writer.write(np.zeros((h, w, 3), np.uint8))
            return
        drawn = image if image.shape[:2] == (h, w) else cv2.resize(image, (w, h))
        if t.points is not None and t.box is not None:
            drawn = draw_landmarks(drawn, t.points, PRED_COLOUR, skeleton=self.skeleton,
                                   radius=overlay_radius(t.box.size))
            half = t.box.size / 2
            colour = (0, 165, 255) if t.lost else (0, 200, 0)
            cv2.rectangle(drawn, (round(t.box.cx - half), round(t.box.cy - half)),
                          (round(t.box.cx + half), round(t.box.cy + half)), colour, 1)
        self._writer.write(drawn)

    def commit(self, target: Path) -> None:
        self._writer.release()
        try:
            write_bytes(target, self.path.read_bytes())
        finally:
            self._dir.close()

    def discard(self) -> None:
        self._writer.release()
        self._dir.close()


def predict_video(tracker_model: Any, video: VideoInput, stem: Path, *, fmt: str, overlay: bool,
                  sources: TrackSources, config: TrackConfig, fps: float | None, skeleton: Any,
                  progress: FrameProgress | None = None) -> dict[str, Any]:
    """Track one video and write its outputs (module docstring).

    Args:
        tracker_model: a `cunet.pipeline.track.Landmarker` (e.g. `PredictorLandmarker(predictor)`).
        video: the video; stem: its outputs' path without suffix, under the output folder.
        fmt: "json" (JSON lines) or "csv"; overlay: also write `<stem>.overlay.mp4`.
        sources, config: the tracker's box sources and settings; fps: a frame folder's frame rate.
        skeleton: limb pairs drawn on the overlay (pose), or ().
        progress: called after each frame.

    Returns:
        {"video", "name", "frames", "predicted", "lost", "redetections", "fps", "box_sources", "outputs",
        "problems" [frame problems and a truncation, each one line]}.

    Raises:
        CunetError: the video cannot be opened (empty, not a video, no frames).
    """
    from cunet.data.video import open_video

    tracker = Tracker(tracker_model, sources, config)
    frames: list[TrackedFrame] = []
    lines: list[str] = []
    problems: list[str] = []
    with open_video(video.path, fps) as reader:
        drawer = _Overlay(reader.fps, reader.size, skeleton) if overlay else None
        try:
            it = iter(reader)
            while True:
                t0 = time.perf_counter_ns()
                frame = next(it, None)
                if frame is None:
                    break
                tracked = tracker.step(frame, time.perf_counter_ns() - t0)
                frames.append(tracked)
                lines.append(json.dumps(frame_record(tracked)))
                if tracked.problem is not None:
                    problems.append(tracked.problem)
                if drawer is not None:
                    drawer.add(frame.image, tracked)
                if progress is not None:
                    progress(len(frames), reader.frame_count)
            if reader.ended_early:
                problems.append(reader.ended_early)
            outputs = video_outputs(stem.name, fmt, overlay)
            table = _csv_rows(frames, tracker_model.num_landmarks) if fmt == "csv" else "\n".join(lines) + "\n"
            write_bytes(stem.with_name(outputs[0]), table.encode("utf-8"))
            if drawer is not None:
                drawer.commit(stem.with_name(outputs[1]))
                drawer = None
        finally:
            if drawer is not None:
                drawer.discard()
        rate = reader.fps
    sources_count: dict[str, int] = {}
    for t in frames:
        if t.problem is None:
            sources_count[t.box_source] = sources_count.get(t.box_source, 0) + 1
    return {"video": str(video.path), "name": video.name, "frames": len(frames),
            "predicted": sum(t.problem is None for t in frames), "lost": sum(t.lost for t in frames),
            "redetections": tracker.redetections, "fps": rate, "box_sources": sources_count,
            "outputs": [str(stem.with_name(o)) for o in outputs], "problems": problems}


def predict_videos(opts: Any, p: Any, videos: list[Any], stems: dict[str, str], detector: Any, failed: Any,
                   sources: dict[str, int], frame_progress: Any) -> list[dict[str, Any]]:
    """Track every video with the open predictor `p` (`predict_files`'s video half: `opts` is its
    `PredictOptions`); failures go to `failed` (a `cunet.batch.Skips`, which raises at the first with `strict`), box
    sources are counted into `sources`.

    Returns:
        The per-video summaries of `predict_video`.
    """
    from cunet.data.preprocess import box_from_xyxy
    from cunet.data.spec import get_spec
    from cunet.pipeline.track import PredictorLandmarker

    if not videos:
        return []
    if opts.flip:
        raise CunetError("--flip is for still images; video frames are tracked without it")
    model = PredictorLandmarker(p)
    boxes = read_video_boxes(opts.boxes) if opts.boxes is not None else {}
    config = TrackConfig(min_score=opts.min_score, smooth=opts.smooth)
    label = f"box file {opts.boxes.name}" if opts.boxes is not None else "box file"
    docs = []
    for video in videos:
        key = next((k for k in (video.name, video.path.name, video.path.as_posix()) if k in boxes), None)
        given = [box_from_xyxy(*(float(v) for v in b), margin=model.box_margin) for b in boxes[key]] if key else []
        track_sources = TrackSources(first=given[0] if len(given) == 1 else None,
                                     per_frame=given if len(given) > 1 else None,
                                     detector=detector, label=label)
        try:
            doc = predict_video(model, video, opts.out / stems[video.name], fmt=opts.format.value,
                                overlay=opts.overlay, sources=track_sources, config=config, fps=opts.fps,
                                skeleton=get_spec(p.meta.task).skeleton,
                                progress=None if frame_progress is None else
                                (lambda done, total, name=video.name: frame_progress(name, done, total)))
        except OutputError:  # the output folder, not this video: every later one would meet it too
            raise
        except CunetError as e:
            failed.add_error(video.path, e)
            continue
        failed.extend((str(video.path), problem) for problem in doc["problems"])
        for source, n in doc["box_sources"].items():
            sources[source] = sources.get(source, 0) + n
        docs.append(doc)
    return docs

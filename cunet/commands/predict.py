"""`cunet predict`: landmarks of image files with any .pt / .onnx / .engine model, as JSON and drawn overlays."""

from __future__ import annotations

from pathlib import Path

import click

from cunet.commands._common import console, emit_json, json_option, output_option
from cunet.commands._video import smooth_config, smooth_options

__all__ = ["predict"]

_BACKENDS = ["auto", "torch", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt", "openvino"]


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@output_option("-o", "--out", folder=True, path_type=Path, default=Path("predictions"), show_default=True,
               help="Output folder; outputs mirror the input names.")
@click.option("--boxes", type=click.Path(exists=True, path_type=Path),
              help='Crop boxes: JSON {"relative/image.png": [x1, y1, x2, y2]} (0-based detector boxes), iBUG 300-W '
                   "bounding_boxes_*.mat (or their folder; bb_detector), or for pose an MPII JSON (one person per "
                   "record); enlarged by the model's own margin. Default: the whole image.")
@click.option("--format", "fmt", type=click.Choice(["json", "pts", "mpii", "csv"]), default="json", show_default=True,
              help="Also write predictions in a dataset format: pts = a 300-W .pts per image, mpii = one MPII JSON. "
                   "Videos: JSON lines (json) or csv, one record per frame.")
@click.option("--backend", type=click.Choice(_BACKENDS), default="auto", show_default=True,
              help="Runtime; auto picks by file type (ONNX: TensorRT EP > CUDA EP > CPU; .xml: openvino).")
@click.option("--threads", type=click.IntRange(min=1), help="CPU inference threads (default: the runtime's).")
@click.option("--flip", is_flag=True, help="Flip test: average with the mirrored crop (twice the inference).")
@click.option("--no-draw", is_flag=True, help="Skip the <name>.overlay.png pictures.")
@click.option("--decode", type=click.Choice(["dark", "quarter", "argmax", "original"]), default="dark",
              show_default=True,
              help="Heatmap decoder: dark (sub-pixel), quarter, argmax, or original: the original CU-Net code's "
                   "integer points, to reproduce its numbers.")
@click.option("--strict", is_flag=True,
              help="Stop at the first image that fails (default: skip it with one line, finish, exit 1 at the end).")
@click.option("--overlay", is_flag=True, help="Videos: also write NAME.overlay.mp4 with the landmarks drawn.")
@click.option("--frames", is_flag=True,
              help="Each folder given is one video: its images, in natural order, are the frames.")
@click.option("--fps", type=click.FloatRange(0.5, 1000), help="Frame rate of --frames folders (default 30).")
@click.option("--no-detect", is_flag=True,
              help="Faces without --boxes: do not use the face detector (cunet[detect]); the whole image or frame "
                   "is the first box.")
@click.option("--min-score", type=click.FloatRange(0.0, 1.0), default=None,
              help="Videos: mean heatmap peak below which the tracked face counts as lost and is re-detected "
                   "[0.3].")
@smooth_options
@json_option
def predict(model, images, out, boxes, fmt, backend, threads, flip, no_draw, decode, strict, overlay, frames, fps,
            no_detect, min_score, smooth, smooth_min_cutoff, smooth_beta, as_json):
    """Predict landmarks on IMAGES (files or folders) with MODEL (.pt, .onnx, .engine or OpenVINO .xml).

    \b
    For every image, under --out at the image's name (its path inside a folder given, or its file name):
      NAME.json          points (0-based pixels), the crop box and where it came from, model, backend
      NAME.overlay.png   the predictions drawn on the image (unless --no-draw)
      NAME.pts           with --format pts: a 300-W .pts file (1-based, like the dataset's)
      predictions.json   with --format mpii: one MPII JSON (named like the MPII box file when one is given)
    NAME is the image's name without its extension; two images that would share it (face.png and face.jpg)
    keep their extension instead (face.png.json, face.jpg.json), so no output overwrites another.
    \b
    Videos (.mp4 .avi .mov .mkv .webm, any case; folders are searched for them) and, with --frames,
    folders of frames are tracked frame by frame:
      NAME.jsonl         one JSON object per frame: frame, time, box, box_source, points, scores, lost
      NAME.csv           with --format csv instead: one row per frame
      NAME.overlay.mp4   with --overlay: the video with the landmarks and the crop box drawn
    The first box comes from --boxes ({"clip.mp4": [x1, y1, x2, y2]} for frame 0, or a list of one
    box per frame), else the face detector, else the whole frame; each next box from the landmarks;
    the face is re-detected when it is lost (low heatmap scores, or it leaves the frame).
    --smooth one-euro smooths the points over time (see docs/video.md for the defaults).
    --out keeps a list of the files predict wrote (.cunet-outputs): a rerun replaces those, and a run that
    would overwrite any other file stops before predicting, naming it.
    \b
    An image that fails (unreadable, truncated, no usable box in --boxes, a box (almost) wholly outside the
    image, a prediction that is not finite: nothing is written for it) is one `skipped FILE: why` line; the
    others are predicted and the exit status is 1 (the JSON lists them under "failed"). --strict stops at the
    first instead. A model whose every prediction is NaN is one error line.
    \b
    A face model needs a face box: give detector boxes with --boxes, or the face detector finds them
    (pip install 'cunet[detect]'), or the whole image is used (said on stderr) — fine for a cropped
    face, poor for a small face in a large photo.
    \b
    Examples:
      cunet predict face.onnx photo.jpg
      cunet predict face.int8.onnx data/test --boxes boxes.json --out preds/
      cunet predict face.onnx data/test --boxes boxes.json --format pts --out preds/
      cunet metrics --task face --gt data/test --pred preds/        # score them
      cunet predict pose.onnx data/ --boxes data/valid.json --format mpii --out preds/
      cunet metrics --task pose --gt data/valid.json --pred preds/valid.json
      cunet predict face.onnx clip.mp4 --overlay --smooth one-euro --out preds/
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from cunet.batch import finish, print_skipped
    from cunet.pipeline.predict import PredictOptions, predict_files
    from cunet.pipeline.track import DEFAULT_MIN_SCORE
    from cunet.runtime.detector import DETECT_HINT, detector_available

    opts = PredictOptions(model=model, inputs=tuple(images), out=out, boxes=boxes, format=fmt, backend=backend,
                          threads=threads, draw=not no_draw, flip=flip, strict=strict, overlay=overlay, frames=frames,
                          fps=fps, smooth=smooth_config(smooth, smooth_min_cutoff, smooth_beta),
                          detect=not no_detect, min_score=DEFAULT_MIN_SCORE if min_score is None else min_score,
                          decode=decode)
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               _frame_rate_column())
    with Progress(*columns, console=console(), transient=True) as bar:
        job = bar.add_task(f"predicting with {model.name}", total=None)
        clips: dict[str, object] = {}

        def frame_done(name: str, done: int, total: int | None) -> None:
            if name not in clips:
                clips[name] = bar.add_task(name, total=total, frames=True)
            bar.update(clips[name], completed=done)

        result = predict_files(opts, progress=lambda done, total: bar.update(job, completed=done, total=total),
                               frame_progress=frame_done)
    _box_notes(result, no_detect, detector_available(), DETECT_HINT)
    if result["skipped"]:
        click.echo(f"note: {len(result['skipped'])} image(s) have no person in {boxes}, skipped (e.g. "
                   f"{result['skipped'][0]})", err=True)
    print_skipped(result["failed"])
    if as_json:
        emit_json(result)
    else:
        extra = f", {result['mpii_file']}" if result["mpii_file"] else ""
        click.echo(f"{result['images']} image(s) → {result['out']}/ ({result['format']}{extra}) with "
                   f"{Path(result['model']).name} on {result['backend']} ({result['provider']})", err=True)
    for v in result["videos"]:
        click.echo(f"{v['name']}: {v['predicted']} of {v['frames']} frame(s), {v['redetections']} detection(s), "
                   f"{v['lost']} lost → {', '.join(v['outputs'])}", err=True)
    unit = f"image(s) and {result['frames']} video frame(s) predicted" if result["videos"] else "image(s) predicted"
    finish(result["failed"], result["images"], unit)


def _box_notes(result: dict, no_detect: bool, have_detector: bool, hint: str) -> None:
    """One line per kind of whole-picture box: why it was used and how to do better."""
    face = result["task"] == "face"
    what = "face" if face else "person"
    detecting = face and have_detector and not no_detect
    better = f"give boxes with --boxes for {what}s that do not fill the picture"
    if face and not have_detector and not no_detect:
        better = f"{hint} for a face detector, or give boxes with --boxes"
    whole = result["box_sources"].get("whole image", 0)
    if whole:
        why = "no face detected" if detecting else "no --boxes given"
        click.echo(f"note: {why}: the whole image is the {what} box for {whole} image(s); {better}", err=True)
    frames = result["box_sources"].get("whole frame", 0)
    if frames:
        click.echo(f"note: the whole frame is the {what} box for {frames} video frame(s); {better}", err=True)


def _frame_rate_column():
    """A rich progress column: frames per second of a video's task (blank for the image task)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class FrameRate(ProgressColumn):
        def render(self, task):
            speed = task.speed if task.fields.get("frames") else None
            return Text(f"{speed:.1f} frames/s" if speed else "")

    return FrameRate()

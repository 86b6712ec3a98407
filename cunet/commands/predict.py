"""`cunet predict`: landmarks of image files with any .pt / .onnx / .engine model, as JSON and drawn overlays."""

from __future__ import annotations

from pathlib import Path

import click

from cunet.commands._common import console, emit_json, json_option

__all__ = ["predict"]

_BACKENDS = ["auto", "torch", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt", "openvino"]


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("predictions"),
              show_default=True, help="Output folder; outputs mirror the input names.")
@click.option("--boxes", type=click.Path(exists=True, path_type=Path),
              help='Crop boxes: JSON {"relative/image.png": [x1, y1, x2, y2]} (0-based detector boxes), iBUG 300-W '
                   "bounding_boxes_*.mat (or their folder; bb_detector), or for pose an MPII JSON (one person per "
                   "record); enlarged by the model's own margin. Default: the whole image.")
@click.option("--format", "fmt", type=click.Choice(["json", "pts", "mpii"]), default="json", show_default=True,
              help="Also write predictions in a dataset format: pts = a 300-W .pts per image, mpii = one MPII JSON.")
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
@json_option
def predict(model, images, out, boxes, fmt, backend, threads, flip, no_draw, decode, strict, as_json):
    """Predict landmarks on IMAGES (files or folders) with MODEL (.pt, .onnx, .engine or OpenVINO .xml).

    \b
    For every image, under --out at the image's name (its path inside a folder given, or its file name):
      NAME.json          points (0-based pixels), the crop box and where it came from, model, backend
      NAME.overlay.png   the predictions drawn on the image (unless --no-draw)
      NAME.pts           with --format pts: a 300-W .pts file (1-based, like the dataset's)
      predictions.json   with --format mpii: one MPII JSON (named like the MPII box file when one is given)
    NAME is the image's name without its extension; two images that would share it (face.png and face.jpg)
    keep their extension instead (face.png.json, face.jpg.json), so no output overwrites another.
    --out keeps a list of the files predict wrote (.cunet-outputs): a rerun replaces those, and a run that
    would overwrite any other file stops before predicting, naming it.
    \b
    An image that fails (unreadable, truncated, no box in --boxes) is skipped with one line; the others are
    predicted and the exit status is 1. --strict stops at the first instead.
    \b
    A face model needs a face box: give detector boxes with --boxes, or the whole image is used (said on
    stderr) — fine for a cropped face, poor for a small face in a large photo.
    \b
    Examples:
      cunet predict face.onnx photo.jpg
      cunet predict face.int8.onnx data/test --boxes boxes.json --out preds/
      cunet predict face.onnx data/test --boxes boxes.json --format pts --out preds/
      cunet metrics --task face --gt data/test --pred preds/        # score them
      cunet predict pose.onnx data/ --boxes data/valid.json --format mpii --out preds/
      cunet metrics --task pose --gt data/valid.json --pred preds/valid.json
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from cunet.pipeline.predict import PredictOptions, predict_files

    opts = PredictOptions(model=model, inputs=tuple(images), out=out, boxes=boxes, format=fmt, backend=backend,
                          threads=threads, draw=not no_draw, flip=flip, strict=strict, decode=decode)
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console(), transient=True) as bar:
        job = bar.add_task(f"predicting with {model.name}", total=None)
        result = predict_files(opts, progress=lambda done, total: bar.update(job, completed=done, total=total))
    whole = result["box_sources"].get("whole image", 0)
    if whole:
        what = "face" if result["task"] == "face" else "person"
        click.echo(f"note: no --boxes given: the whole image is the {what} box for {whole} image(s); give "
                   f"detector boxes with --boxes for {what}s that do not fill the frame", err=True)
    if result["skipped"]:
        click.echo(f"note: {len(result['skipped'])} image(s) have no person in {boxes}, skipped (e.g. "
                   f"{result['skipped'][0]})", err=True)
    for f in result["failed"]:
        click.echo(f"skipped {f['file']}: {f['problem']}", err=True)
    if as_json:
        emit_json(result)
    else:
        extra = f", {result['mpii_file']}" if result["mpii_file"] else ""
        click.echo(f"{result['images']} image(s) → {result['out']}/ ({result['format']}{extra}) with "
                   f"{Path(result['model']).name} on {result['backend']} ({result['provider']})", err=True)
    if result["failed"]:
        click.echo(f"error: {len(result['failed'])} image(s) failed and were skipped (first: "
                   f"{result['failed'][0]['file']}); {result['images']} predicted", err=True)
        raise click.exceptions.Exit(1)

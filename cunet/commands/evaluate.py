"""`cunet evaluate`: accuracy of a `.pt`, `.onnx` or `.engine` model on a dataset split (NME / PCKh)."""

from __future__ import annotations

from pathlib import Path

import click

from cunet.commands._common import console, emit_json, json_option, output_option
from cunet.commands._video import smooth_config, smooth_options

__all__ = ["evaluate"]

_BACKENDS = ["auto", "torch", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt", "openvino"]


@click.command()
# No exists=True: a missing model or folder is reported by the library as "error: <path>: ..." with exit 1, like
# every other command, instead of click's three-line usage error with exit 2.
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", "data", type=click.Path(path_type=Path), required=True,
              help="Dataset: faces a 300-W folder, train/ + test/, a flat folder of images + .pts, a COCO "
                   "face .json or a 300-VW video folder (NNN/vid.avi + NNN/annot/*.pts); pose a folder with "
                   "train.json / valid.json, or one MPII .json with its images beside it.")
@click.option("--task", type=click.Choice(["face", "pose"]), help="Default: the model's own task.")
@click.option("--backend", type=click.Choice(_BACKENDS), default="auto", show_default=True,
              help="Runtime; auto picks by file type (ONNX: TensorRT EP > CUDA EP > CPU; .xml: openvino).")
@click.option("--split", type=click.Choice(["test", "valid", "train"]), default="test", show_default=True)
@click.option("--subset", help="Faces: one test subset (common, challenging, 300w-private, 300w-private/indoor, "
                                "...); default: full (common + challenging), or 300w-private when it is alone.")
@click.option("--headboxes", type=click.Path(dir_okay=False, path_type=Path),
              help="Pose: MPII's gt_valid.mat with the head boxes PCKh needs (default: the one beside valid.json).")
@click.option("--flip", is_flag=True, help="Flip test: average with the mirrored crop (twice the inference).")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True, help="Images per inference call.")
@click.option("--norm", type=click.Choice(["inter-ocular", "inter-pupil", "box"]), default="inter-ocular",
              show_default=True, help="Face NME normaliser.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU inference threads (default: the runtime's).")
@output_option("--save-predictions", folder=True, path_type=Path,
               help="Write predictions in the dataset format (faces: .pts per image; pose: an MPII JSON).")
@output_option("--plot-dir", folder=True, path_type=Path, help="Write ced.png (faces) or pckh.png (pose) here.")
@click.option("--boxes", type=click.Path(path_type=Path),
              help="Faces: crop from detector boxes instead of the landmark box: a box JSON {image: [x1, y1, x2, y2]}, "
                   "an iBUG bounding_boxes_*.mat or the folder holding them (bb_detector is used), enlarged by the "
                   "model's own margin (1.25 for cunet models, 1.1 for imported original ones).")
@click.option("--decode", type=click.Choice(["dark", "quarter", "argmax", "original"]), default="dark",
              show_default=True,
              help="Heatmap decoder: dark (sub-pixel), quarter, argmax, or original: the original CU-Net code's "
                   "integer points (its truncation and 1-based shift), to reproduce its logged NME/PCKh exactly.")
@click.option("--pckh-style", type=click.Choice(["mpii", "original"]), default="mpii", show_default=True,
              help="Pose: the headline PCKh: mpii (14 joints without pelvis and thorax, weighted by visible counts, "
                   "as the MPII tables) or original (the original CU-Net code's plain mean of ankles, knees, hips, "
                   "wrists and elbows, to compare with its logs).")
@click.option("--strict", is_flag=True,
              help="Stop at the first file that cannot be used (default: leave it out, say so, exit 1 at the end).")
@click.option("--min-score", type=click.FloatRange(0.0, 1.0), default=None,
              help="Videos: mean heatmap peak below which the tracked face is lost and re-found [0.3].")
@smooth_options
@json_option
def evaluate(model, data, task, backend, split, subset, headboxes, flip, batch, norm, threads, save_predictions,
             plot_dir, boxes, decode, pckh_style, strict, min_score, smooth, smooth_min_cutoff, smooth_beta,
             as_json):
    """Predict every sample of a dataset split with MODEL and score it.

    \b
    Faces: NME (%), AUC@0.08/0.10, failure rate (%), per 300-W subset. Pose: PCKh@0.5/0.1 (%).
      cunet evaluate runs/face/best.pt --data data/300w
      cunet evaluate model.int8.onnx --data data/300w --backend ort-cpu --subset challenging --json
      cunet evaluate model.onnx --data data/mpii --flip --plot-dir report/
      cunet evaluate face8.onnx --data 300W --boxes "300W/Bounding Boxes"     # 300-W detector crops
    \b
    --save-predictions DIR writes the predictions so any tool can score them again:
      cunet evaluate model.onnx --data data/300w --save-predictions preds/
      cunet metrics --task face --gt data/300w --pred preds/      # the same numbers
    \b
    A file that cannot be used (a truncated image, a .pts of 19 points, an image without annotation, no usable
    --boxes entry, a video frame that cannot be read) is left out with one `skipped FILE: why` line on stderr;
    the numbers are of the rest (their "n" says how many) and the exit status is 1. --strict stops at the first.
    \b
    A prediction that is not finite (NaN or inf) is the model's failure: the image stays in the count with an
    infinite error (faces: in FR and AUC; pose: the joint is incorrect), "nonfinite" counts such images, each
    gets a line on stderr, and the exit status is 1.
    \b
    A 300-VW video folder (cunet data synth --task face --video N writes one) is tracked video by video
    as `cunet predict` tracks: NME and jitter (velocity error, % of the inter-ocular distance) per video
    and overall; --smooth one-euro smooths the points first:
      cunet evaluate face.onnx --data videos/ --smooth one-euro
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from cunet.batch import finish, print_skipped
    from cunet.commands.metrics import print_result
    from cunet.data.video import is_video_dataset
    from cunet.evaluate.accuracy import evaluate as run

    if is_video_dataset(data):
        _evaluate_videos(model, data, backend, threads, norm, save_predictions, strict, min_score,
                         smooth_config(smooth, smooth_min_cutoff, smooth_beta), as_json)
        return

    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console(), transient=True) as bar:
        job = bar.add_task(f"evaluating {model.name}", total=None)
        result = run(model, data, task=task, backend=backend, split=split, subset=subset, flip=flip, batch=batch,
                     save_predictions=save_predictions, plot_dir=plot_dir, norm=norm, threads=threads, boxes=boxes,
                     progress=lambda done, total: bar.update(job, completed=done, total=total), headboxes=headboxes,
                     strict=strict, decode=decode, pckh_style=pckh_style)
    print_skipped(result["skipped"])
    for f in result["nonfinite_files"]:
        click.echo(f"{f}: the prediction is not finite (NaN or inf); counted as a failure", err=True)
    if as_json:
        emit_json(result)
    else:
        print_result(result["task"], result)
        console().print(f"{result['model']} on {result['backend']} ({result['provider']}, {result['device']}, "
                        f"{result['precision']}), flip={result['flip']}")
    if result["nonfinite"]:  # the model's failure: said, and exit 1 (after the batch rule's line, if any)
        click.echo(f"error: the model's prediction is not finite for {result['nonfinite']} of {result['n']} "
                   f"image(s) (first: {result['nonfinite_files'][0]}); they count as failures", err=True)
    finish(result["skipped"], result["n"], "image(s) scored" if result["task"] == "face" else "people scored")
    if result["nonfinite"]:
        raise click.exceptions.Exit(1)


def _evaluate_videos(model, data, backend, threads, norm, save_predictions, strict, min_score, smooth, as_json):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from cunet.batch import finish, print_skipped
    from cunet.commands.metrics import print_video_result
    from cunet.pipeline.track import DEFAULT_MIN_SCORE
    from cunet.pipeline.video_eval import evaluate_videos

    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console(), transient=True) as bar:
        job = bar.add_task(f"evaluating {model.name} on videos", total=None)
        result = evaluate_videos(model, data, backend=backend, threads=threads, smooth=smooth,
                                 min_score=DEFAULT_MIN_SCORE if min_score is None else min_score, norm=norm,
                                 save_predictions=save_predictions, strict=strict,
                                 progress=lambda done, total: bar.update(job, completed=done, total=total))
    print_skipped(result["skipped"])
    if as_json:
        emit_json(result)
    else:
        print_video_result(result)
        console().print(f"{result['model']} on {result['backend']} ({result['provider']}), smooth="
                        f"{result['smooth']['method']}")
    finish(result["skipped"], result["n"], "frame(s) scored")

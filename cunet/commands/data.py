"""`cunet data`: make a synthetic dataset (`synth`) and validate a dataset folder (`check`)."""

from __future__ import annotations

from pathlib import Path

import click

from cunet.commands._common import console, emit_json, json_option, output_option, print_table

__all__ = ["data"]

_TASK = click.Choice(["face", "pose"])


@click.group()
def data() -> None:
    """Datasets: write the built-in synthetic sets, validate a folder before training.

    \b
    Layouts cunet reads (every command reads the same ones; `synth` writes the second):
      faces  image (.png .jpg .ppm .pgm .bmp .tif .webp ..., any case) + .pts of the same stem:
             the 300-W download (lfpw/ helen/ afw/ ibug/, private set 300W/01_Indoor, 02_Outdoor),
             train/ and test/<subset>/ folders, or one flat folder (one split);
             or a COCO-keypoint .json (68 x, y, v keypoints + bbox, as MMPose ships 300-W)
      pose   MPII JSON: train.json and valid.json beside the images (or in annot/),
             or one MPII .json file with its images beside it (or in images/ there: one split);
             head boxes from the records or from gt_valid.mat beside valid.json
    """


@data.command()
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--task", type=_TASK, required=True, help="face (68-point .pts) or pose (16-joint MPII JSON).")
@click.option(
    "--no-images", is_flag=True, help="Check annotations and that images exist, without decoding the images (faster)."
)
@click.option("--split", type=click.Choice(["train", "test"]),
              help="The split a flat face folder, a COCO .json or an MPII .json is (default: from the file name, "
                   "else 'all').")
@click.option("--headboxes", type=click.Path(dir_okay=False, path_type=Path),
              help="Pose: MPII's gt_valid.mat to check against valid.json (default: the one beside it).")
@json_option
def check(root: Path, task: str, no_images: bool, split: str | None, headboxes: Path | None, as_json: bool) -> None:
    """Validate every split of the dataset ROOT (a folder, a COCO or an MPII .json), one line per bad file.

    \b
    Finds malformed .pts/JSON annotations, wrong landmark counts, images without
    annotations (and the reverse), unreadable or truncated images and landmarks
    lying far outside their image. Training skips such files; this lists them.

    \b
    Examples:
      cunet data check ~/data/300W --task face
      cunet data check ~/data/300W/ibug --task face           # a flat folder: one split
      cunet data check ~/mmpose/300w/face_landmarks_300w_test.json --task face
      cunet data check ~/data/mpii --task pose --json
      cunet data check ~/data/mpii/annot/valid.json --task pose     # one MPII file, images beside it
    \b
    Pose: says when PCKh will not be computable (records without "headbox" and
    no gt_valid.mat) and how to fix it; that note does not change the exit code.

    \b
    Output: one "file: problem" line per bad file and a table per split on stderr;
    with --json one object on stdout:
      {"layout", "notes", "valid": N, "invalid": M, "problems": [{"file", "problem"}], "splits": {...}}

    \b
    Exit code: 0 when every file is valid, 1 when any file is invalid
    (or ROOT is not a dataset of the task).
    """
    from cunet.data.check import check_dataset

    if task == "pose" and split and not root.is_file():
        raise click.UsageError("--split names a one-split dataset (a face folder, a COCO or MPII .json); a pose "
                               "folder's splits are train.json / valid.json")
    report = check_dataset(root, task, check_images=not no_images, split=split, headboxes=headboxes)
    for note in report.notes:
        console().print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    if as_json:
        emit_json(report.to_dict())
    else:
        out = console()
        for p in report.problems:
            out.print(f"{p.file}: {p.problem}", markup=False, highlight=False, soft_wrap=True)
        rows = [(name, p.valid, p.invalid) for name, p in report.parts.items()]
        rows.append(("total", report.valid, report.invalid))
        print_table(f"{task} dataset {root}", ["split", "valid", "invalid"], rows)
    if not report.ok:
        raise click.exceptions.Exit(1)


@data.command()
@click.option("--task", type=_TASK, required=True, help="face (300-W layout) or pose (MPII JSON layout).")
@output_option("--out", folder=True, path_type=Path, required=True,
               help="Destination folder (must be empty, unless --overwrite).")
@click.option("--n", "n", type=click.IntRange(min=1), default=600, show_default=True, help="Images to draw.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--difficulty",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="0..1: pose range, clutter, noise, blur, occlusion.",
)
@click.option("--image-size", type=click.IntRange(min=64), default=256, show_default=True, help="Square image side.")
@click.option("--video", "videos", type=click.IntRange(min=1), metavar="N",
              help="Faces: write N videos in the 300-VW layout (NNN/vid.avi + NNN/annot/000001.pts) instead of "
                   "still images: a face moving smoothly, with exact ground truth in every frame.")
@click.option("--frames", type=click.IntRange(min=2), default=75, show_default=True,
              help="With --video: frames per video (75 at 25 frames/s: 3 s).")
@click.option("--overwrite", is_flag=True,
              help="Allow a non-empty --out holding an earlier synth's files (listed in its .cunet-outputs): "
                   "those are replaced, other files kept. A folder with none of them is refused, naming a file.")
@json_option
def synth(task: str, out: Path, n: int, seed: int, difficulty: float, image_size: int, videos: int | None, frames: int,
          overwrite: bool, as_json: bool):
    """Write a synthetic face or pose dataset in the real on-disk formats.

    \b
    Every landmark sits on a drawn image feature, so a model can learn it: the
    whole pipeline runs on it with no download. About 80% of the images go to
    training; faces also get a harder test/challenging subset.

    \b
    Examples:
      cunet data synth --task face --out data/faces
      cunet data synth --task pose --out data/pose --n 200 --seed 1 --difficulty 0.2
      cunet data check data/faces --task face
      cunet data synth --task face --video 3 --out data/videos      # lossless FFV1 .avi, 300-VW layout
    """
    from cunet.data.synth import synthesize

    if videos is not None:
        if task != "face":
            raise click.UsageError("--video writes face videos (the 300-VW layout); use --task face")
        from cunet.data.synth_video import synthesize_videos

        summary = synthesize_videos(out, videos, seed=seed, frames=frames, image_size=image_size,
                                    difficulty=difficulty, overwrite=overwrite)
    else:
        summary = synthesize(out, task, n, seed, difficulty, image_size=image_size, overwrite=overwrite)
    if as_json:
        emit_json(summary)
        return
    rows = []
    for key, value in summary.items():
        if isinstance(value, dict):
            rows += [(f"{key}: {k}", v) for k, v in value.items()]
        else:
            rows.append((key, value))
    print_table(f"synthetic {task} dataset", ["", "value"], rows)

"""`cunet metrics`: score predictions stored in the dataset formats (300-W `.pts`, MPII JSON) against ground truth.

It follows cunet's batch rule (`cunet.batch`): what matches is scored, every missing or bad file is one
`skipped FILE: why` line on stderr, and the exit code is 1 when any ground-truth file lacks a prediction or is bad
(one bad file never fails the whole run); `--strict` stops at the first.
"""

from __future__ import annotations

from pathlib import Path

import click

from cunet.commands._common import console, emit_json, force_option, json_option, output_option, print_table
from cunet.commands._video import smooth_config, smooth_options

__all__ = ["metrics"]


@click.command()
@click.option("--task", type=click.Choice(["face", "pose"]), required=True, help="Faces (NME) or pose (PCKh).")
@click.option("--gt", "gt", type=click.Path(exists=True, path_type=Path), required=True,
              help="Faces: a dataset (any layout `cunet data check` reads, its test split is scored), a COCO face "
                   ".json or a folder of .pts. Pose: an MPII JSON or a dataset root (valid.json).")
@click.option("--pred", "pred", type=click.Path(exists=True, path_type=Path), required=True,
              help="Faces: a folder of .pts at the ground truth's relative paths. Pose: an MPII JSON (or its folder).")
@click.option("--norm", type=click.Choice(["inter-ocular", "inter-pupil", "box"]), default="inter-ocular",
              show_default=True, help="Face NME normaliser (box = sqrt(w*h) of the ground-truth landmark box).")
@click.option("--subset", help="Faces: score one test subset only (common, challenging, 300w-private, "
                               "300w-private/indoor, ...; full = common + challenging).")
@click.option("--headboxes", type=click.Path(dir_okay=False, path_type=Path),
              help="Pose: MPII's gt_valid.mat with the head boxes (default: the one beside the ground-truth JSON).")
@click.option("--pckh-style", type=click.Choice(["mpii", "original"]), default="mpii", show_default=True,
              help="Pose: the headline PCKh: mpii (the MPII tables' 14-joint mean) or original (the original CU-Net "
                   "code's plain mean of ankles, knees, hips, wrists and elbows).")
@output_option("--plot", path_type=Path, help="Write a PNG: the CED curve (faces) or PCKh@0.5 per joint (pose).")
@force_option
@smooth_options
@click.option("--strict", is_flag=True,
              help="Stop at the first file that cannot be scored (default: leave it out, say so, exit 1 at the end).")
@json_option
def metrics(task, gt, pred, norm, subset, headboxes, pckh_style, plot, force, smooth, smooth_min_cutoff, smooth_beta,
            strict, as_json):
    """Score any model's predictions, stored in the dataset formats, against ground truth.

    \b
    Faces (300-W): NME (%), AUC@0.08/0.10 (fractions), failure rate @0.08/0.10 (%), per test subset.
    Each ground-truth .pts is matched by the prediction at the same relative path; with a dataset
    root only its test split is scored (predictions for other splits are counted as ignored):
      cunet metrics --task face --gt data/300w --pred preds/ --plot ced.png
      cunet metrics --task face --gt gt_pts/ --pred preds/ --norm inter-pupil --json
    \b
    Pose (MPII): PCKh@0.5 and @0.1 (%), the official mean over 14 joints (no pelvis, thorax)
    weighted by visible-joint counts (--pckh-style original: the original CU-Net code's 10-joint
    mean); body-part columns average left and right, Head is the head top, as the published
    tables; the prediction JSON lists the same records in the same order:
      cunet metrics --task pose --gt data/mpii/valid.json --pred preds/valid.json
    PCKh measures errors in head sizes: head boxes come from the records' "headbox" or from
    MPII's gt_valid.mat (beside the JSON, or --headboxes FILE).
    \b
    What matches is scored; each ground-truth file without a prediction and each bad file
    (unreadable, wrong point count) is one "skipped FILE: why" line. Exit code 1 when any
    ground-truth file lacks a prediction or is bad (--strict: stop at the first); --json adds
    "skipped" [{file, problem}] (all of them), "missing", "bad" and "ignored".
    \b
    Videos (a 300-VW folder: NNN/vid.avi + NNN/annot/000001.pts; predictions at the same
    relative paths, as `cunet evaluate --save-predictions` writes them): NME and jitter per
    video and overall; --smooth one-euro filters each video's predictions first:
      cunet metrics --task face --gt videos/ --pred preds/ --smooth one-euro
    """
    from cunet.data.video import is_video_dataset
    from cunet.evaluate import scoring

    if task == "face" and is_video_dataset(gt):
        from cunet.evaluate.video_scoring import score_videos

        if subset or headboxes or plot:
            raise click.UsageError("--subset, --headboxes and --plot apply to still-image datasets")
        result = score_videos(gt, pred, norm, smooth_config(smooth, smooth_min_cutoff, smooth_beta))
        _report(task, result, _skips(result, strict), as_json, print_video_result, "frame(s) scored")
        return
    if smooth != "none":
        raise click.UsageError("--smooth applies to videos (a 300-VW --gt folder)")
    if task == "face":
        if headboxes:
            raise click.UsageError("--headboxes applies to pose only")
        fe = scoring.face_errors(gt, pred, norm, subset)
        result = fe.summary()
    else:
        if subset:
            raise click.UsageError("--subset applies to faces only")
        result = scoring.score_pose(gt, pred, headboxes, pckh_style)
    skips = _skips(result, strict)  # --strict: the first file left out stops here, before any output
    if plot and task == "face":
        from cunet.evaluate.plots import plot_ced

        plot_ced({pred.name or str(pred): fe.errors}, plot, max_error=0.10, title=f"CED ({norm} NME)")
    elif plot:
        from cunet.evaluate.plots import plot_pckh

        plot_pckh({pred.stem: {k: v / 100 for k, v in result["per_joint"].items()}}, plot)
    _report(task, result, skips, as_json, lambda r: print_result(task, r),
            "image(s) scored" if task == "face" else "people scored")


def _skips(result: dict, strict: bool):
    """The batch rule's list of a metric JSON ("skipped": its bad files, then those without a prediction)."""
    from cunet.batch import Skips

    skips = Skips(strict)
    skips.extend((s["file"], s["problem"]) for s in result["skipped"])
    return skips


def _report(task: str, result: dict, skips, as_json: bool, show, unit: str) -> None:
    from cunet.batch import finish, print_skipped

    out = console()
    print_skipped(skips)
    if as_json:
        emit_json(result)
    else:
        show(result)
    if result["ignored"]:
        what = "outside the scored ground truth" if task == "face" else "beyond the ground truth's records"
        out.print(f"{result['ignored']} prediction {'file(s)' if task == 'face' else 'record(s)'} {what} ignored",
                  markup=False, highlight=False)
    if result.get("nonfinite"):  # the model's failure: said, and exit 1 (after the batch rule's line, if any)
        out.print(f"error: {result['nonfinite']} of {result['n']} scored prediction(s) hold a point that was not "
                  "predicted (NaN, or [-1, -1] for an annotated joint); they count as failures", markup=False,
                  highlight=False)
    finish(skips, result["n"], unit)
    if result.get("nonfinite"):
        raise click.exceptions.Exit(1)


def print_result(task: str, result: dict) -> None:
    """Print a metric JSON (as `cunet metrics` and `cunet evaluate` produce it) as a table on stderr."""
    if task == "face":
        keys = ["nme", "auc@0.08", "auc@0.10", "fr@0.08", "fr@0.10", "n", "nonfinite"]
        header = ["subset", "NME %", "AUC@0.08", "AUC@0.10", "FR@0.08 %", "FR@0.10 %", "images", "non-finite"]
        groups = result.get("subsets") or {result.get("subset", "full"): result}
        rows = [[name, *(g[k] for k in keys)] for name, g in groups.items()]
        print_table(f"faces ({result.get('norm', 'inter-ocular')} NME)", header, rows)
    else:
        style = result.get("pckh_style", "mpii")
        mean = "mean, 14 joints" if style == "mpii" else "original: 10-joint mean"
        rows = [[f"PCKh@0.5 ({mean})", result["pckh@0.5"]], [f"PCKh@0.1 ({mean})", result["pckh@0.1"]],
                ["PCKh AUC (0, 0.5]", result["pckh_auc"]]]
        rows += [[f"  {name}", v] for name, v in result["per_group"].items()]
        rows += [["people", result["n"]], ["non-finite", result["nonfinite"]]]
        print_table("pose (%)", ["", "value"], rows)


def print_video_result(result: dict) -> None:
    """Print a video metric JSON (`cunet evaluate` / `cunet metrics` on a 300-VW folder) as a table on stderr."""
    rows = [[name, v["nme"], v["jitter"], v["n"]] for name, v in result["videos"].items()]
    rows.append(["all", result["nme"], result["jitter"], result["n"]])
    smooth = result.get("smooth", {}).get("method", "none")
    print_table(f"videos ({result.get('norm', 'inter-ocular')} NME; jitter: velocity error; smooth {smooth})",
                ["video", "NME %", "jitter %", "frames"], rows)

"""`cunet metrics`: score predictions stored in the dataset formats (300-W `.pts`, MPII JSON) against ground truth."""

from __future__ import annotations

from pathlib import Path

import click

from cunet.commands._common import emit_json, json_option, print_table

__all__ = ["metrics"]


@click.command()
@click.option("--task", type=click.Choice(["face", "pose"]), required=True, help="Faces (NME) or pose (PCKh).")
@click.option("--gt", "gt", type=click.Path(exists=True, path_type=Path), required=True,
              help="Faces: a dataset root or a folder of .pts. Pose: an MPII JSON or a dataset root (valid.json).")
@click.option("--pred", "pred", type=click.Path(exists=True, path_type=Path), required=True,
              help="Faces: a folder of .pts at the ground truth's relative paths. Pose: an MPII JSON (or its folder).")
@click.option("--norm", type=click.Choice(["inter-ocular", "inter-pupil", "box"]), default="inter-ocular",
              show_default=True, help="Face NME normaliser (box = sqrt(w*h) of the ground-truth landmark box).")
@click.option("--subset", help="Faces: score one test subset only (e.g. common, challenging; full = all).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a PNG: the CED curve (faces) or PCKh@0.5 per joint (pose).")
@json_option
def metrics(task, gt, pred, norm, subset, plot, as_json):
    """Score any model's predictions, stored in the dataset formats, against ground truth.

    \b
    Faces (300-W): NME (%), AUC@0.08/0.10 (fractions), failure rate @0.08/0.10 (%), per test subset.
    Every ground-truth .pts needs a prediction at the same relative path:
      cunet metrics --task face --gt data/300w --pred preds/ --plot ced.png
      cunet metrics --task face --gt gt_pts/ --pred preds/ --norm inter-pupil --json
    \b
    Pose (MPII): PCKh@0.5 and @0.1 (%), the official mean over 14 joints (no pelvis, thorax)
    weighted by visible-joint counts; the prediction JSON lists the same records in the same order:
      cunet metrics --task pose --gt data/mpii/valid.json --pred preds/valid.json
    Ground-truth records need a "headbox": PCKh measures errors in head sizes.
    """
    from cunet.evaluate import scoring

    if task == "face":
        fe = scoring.face_errors(gt, pred, norm, subset)
        result = scoring.summarize_face(fe.errors, fe.subsets if subset in (None, "full") else None, fe.norm)
        if plot:
            from cunet.evaluate.plots import plot_ced

            plot_ced({pred.name or str(pred): fe.errors}, plot, max_error=0.10, title=f"CED ({norm} NME)")
    else:
        if subset:
            raise click.UsageError("--subset applies to faces only")
        result = scoring.score_pose(gt, pred)
        if plot:
            from cunet.evaluate.plots import plot_pckh

            plot_pckh({pred.stem: {k: v / 100 for k, v in result["per_joint"].items()}}, plot)
    if as_json:
        emit_json(result)
    else:
        print_result(task, result)


def print_result(task: str, result: dict) -> None:
    """Print a metric JSON (as `cunet metrics` and `cunet evaluate` produce it) as a table on stderr."""
    if task == "face":
        keys = ["nme", "auc@0.08", "auc@0.10", "fr@0.08", "fr@0.10", "n"]
        header = ["subset", "NME %", "AUC@0.08", "AUC@0.10", "FR@0.08 %", "FR@0.10 %", "images"]
        groups = result.get("subsets") or {"full": result}
        rows = [[name, *(g[k] for k in keys)] for name, g in groups.items()]
        print_table(f"faces ({result.get('norm', 'inter-ocular')} NME)", header, rows)
    else:
        rows = [["PCKh@0.5 (mean)", result["pckh@0.5"]], ["PCKh@0.1 (mean)", result["pckh@0.1"]],
                ["PCKh AUC 0–0.5", result["pckh_auc"]]]
        rows += [[f"  {name}", v] for name, v in result["per_group"].items()]
        rows += [["people", result["n"]]]
        print_table("pose (%)", ["", "value"], rows)

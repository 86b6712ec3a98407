"""The demo's report folder: a Markdown page a person reads, the same facts as JSON, and the pictures.

- `predict_examples`: a grid of predicted-vs-true overlays (`cunet.evaluate.draw`) of one model on test images.
- `plot_accuracy`: CED curves of every artifact on one axis (faces) or PCKh@0.5 per joint (pose), from the
  per-image / per-joint arrays `cunet.pipeline.bench` returns.
- `write_report`: `report.json` (everything, machine-readable) and `report.md` (bench table, accuracy budget, settings,
  environment, time per stage, training curve, links to the pictures), both written atomically.

Nothing here trains, exports or times a model: the demo (`cunet.pipeline.demo`) gathers the numbers and this module only
presents them, so a report can be rebuilt from `report.json` alone.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cunet.data.spec import Task
from cunet.evaluate.draw import example_grid, example_tile
from cunet.io import write_bytes, write_json, write_text

__all__ = [
    "Example",
    "ReportInputs",
    "predict_examples",
    "plot_accuracy",
    "ced_range",
    "markdown_table",
    "write_report",
]


@dataclass
class Example:
    """A picture of test predictions: which artifact, the PNG written, and each tile's error."""

    artifact: str
    model: str
    png: str
    errors: list[float]
    error_name: str


def predict_examples(
    model_path: str | os.PathLike,
    samples: Sequence[Any],
    out_png: str | os.PathLike,
    title: str,
    threads: int | None = None,
    artifact: str | None = None,
) -> Example:
    """Predict `samples` (`cunet.data.dataset.Sample`) with one model and write a grid of overlays.

    Each tile is captioned with the sample's error: NME in % of the inter-ocular distance (faces), or the
    fraction of visible joints within 0.5 head sizes (pose, PCKh@0.5 of that person).

    Args:
        model_path: a `.pt`, `.onnx` or `.engine` file.
        samples: test samples (their boxes are the crops, as in evaluation).
        out_png: the picture to write.
        title: the banner text.
        threads: CPU inference threads.
        artifact: the name the report uses for the model (default: the file name).

    Returns:
        The `Example` record (tile errors in the same order as `samples`).
    """
    import cv2

    from cunet.data.dataset import read_image
    from cunet.data.spec import get_spec
    from cunet.evaluate import metrics, scoring
    from cunet.runtime import open_predictor

    images = [read_image(s.image) for s in samples]
    with open_predictor(model_path, backend="auto", threads=threads) as p:
        pred = p.predict(images, [s.box for s in samples])
        task = p.meta.task
    skeleton = get_spec(task).skeleton if task == "pose" else ()
    gt = np.stack([s.points for s in samples])
    mask = np.stack([s.visible for s in samples])
    if task == "face":
        errors = 100 * scoring.per_image_nme(pred, gt, mask, "inter-ocular")
        captions = [f"NME {e:.2f}%" for e in errors]
        error_name = "nme %"
    else:
        headboxes = np.stack([np.asarray(s.headbox, dtype=np.float64) if s.headbox is not None
                              else np.full(4, np.nan) for s in samples])
        scaled = metrics.point_errors(pred, gt, mask) / metrics.head_size(headboxes)[:, None]
        with warnings.catch_warnings():  # a person without visible joints gets NaN, captioned as such
            warnings.simplefilter("ignore", RuntimeWarning)
            errors = 100 * np.nanmean(np.where(np.isnan(scaled), np.nan, scaled <= 0.5), axis=1)
        captions = [f"PCKh {e:.0f}%" if math.isfinite(e) else "no head box" for e in errors]
        error_name = "pckh@0.5 %"
    tiles = [example_tile(img, s.box, pr, s.points, s.visible, skeleton, cap)
             for img, s, pr, cap in zip(images, samples, pred, captions)]
    ok, buf = cv2.imencode(".png", example_grid(tiles, title))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {out_png}")
    write_bytes(out_png, buf.tobytes())
    name = artifact or Path(model_path).name
    return Example(name, str(model_path), str(out_png), [float(e) for e in errors], error_name)


def ced_range(curves: dict[str, np.ndarray]) -> float:
    """The CED axis end: 300-W's 0.10, widened in steps of 0.05 until 90 % of every model's images fit on it.

    A short demo training run can leave errors above 10 %; a fixed 0.10 axis would then show empty curves.
    """
    finite = [e[np.isfinite(e)] for e in curves.values()]
    p90 = max((float(np.percentile(e, 90)) for e in finite if len(e)), default=0.0)
    return max(0.10, math.ceil(p90 / 0.05) * 0.05)


def plot_accuracy(task: str, per_image: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Faces: CED of every artifact on one axis. Pose: PCKh@0.5 per joint, one bar colour per artifact.

    Args:
        task: "face" or "pose".
        per_image: artifact → faces: per-image NME [N] (fractions); pose: per-joint correctness [N, 16]
            (1 correct, 0 wrong, NaN not visible).
        path: the PNG to write.
    """
    from cunet.evaluate.plots import plot_ced, plot_pckh

    if task == "face":
        curves = {k: np.asarray(v, dtype=np.float64) for k, v in per_image.items()}
        plot_ced(curves, path, max_error=ced_range(curves), title="CED of every artifact (inter-ocular NME)")
        return
    from cunet.evaluate.scoring import MPII_JOINTS

    bars = {}
    for name, correct in per_image.items():
        c = np.asarray(correct, dtype=np.float64)
        with warnings.catch_warnings():  # a joint never visible is NaN ("mean of empty slice"), drawn as no bar
            warnings.simplefilter("ignore", RuntimeWarning)
            bars[name] = dict(zip(MPII_JOINTS, np.nanmean(c, axis=0).tolist()))
    plot_pckh(bars, path, title="PCKh@0.5 per joint, every artifact")


# ---------------------------------------------------------------------------------------------------- the page
@dataclass
class ReportInputs:
    """Everything the report shows; `write_report` turns it into report.json and report.md.

    Attributes:
        title: the page title.
        task: "face" or "pose".
        metric_name: "nme" or "pckh@0.5" (bench rows' `metric`).
        rows: the bench rows (`cunet.pipeline.bench` JSON rows).
        budget: {"metric", "max_drop", "within", "worst", "worst_drop", "rows": [artifact]} of the INT8 rows.
        settings: the demo's settings (dataset size, variant, epochs ...).
        environment: `cunet.evaluate.profile.environment()`.
        stages: [{"stage", "seconds", "reused", "built_seconds", "detail"}] in order.
        training: {"best_metric", "metric_name", "epochs", "history": [...]} or None.
        pictures: picture role → file name inside the report folder.
        examples: the overlay pictures.
    """

    title: str
    task: str
    metric_name: str
    rows: list[dict]
    budget: dict[str, Any]
    settings: dict[str, Any]
    environment: dict[str, Any]
    stages: list[dict[str, Any]]
    training: dict[str, Any] | None = None
    pictures: dict[str, str] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)


_BENCH_COLUMNS = (
    ("artifact", "artifact"), ("format", "format"), ("precision", "precision"), ("backend", "backend"),
    ("device", "device"), ("status", "status"), ("size_mb", "MB"), ("value", "{metric}"), ("delta", "Δ vs FP32"),
    ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("throughput", "img/s"), ("load_peak_mb", "load MB"),
    ("run_peak_mb", "run MB"),
)


def _cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "—"
        return f"{v:.3g}" if abs(v) < 1 else f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], signed: Sequence[int] = ()) -> str:
    """A GitHub-flavoured Markdown table: numeric columns right-aligned, None/NaN as —.

    Columns whose index is in `signed` are differences, written with a sign and three decimals (+0.012).
    """
    def numeric(i: int) -> bool:
        values = [r[i] for r in rows if r[i] is not None]
        return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)

    align = ["--:" if numeric(i) else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for r in rows:
        cells = [f"{v:+.3f}" if i in signed and isinstance(v, (int, float)) and math.isfinite(v) else _cell(v)
                 for i, v in enumerate(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _bench_section(inp: ReportInputs) -> list[str]:
    metric = {"nme": "NME %", "pckh@0.5": "PCKh@0.5 %"}.get(inp.metric_name, inp.metric_name)
    header = [title.format(metric=metric) for _, title in _BENCH_COLUMNS]
    rows = [[r.get(key) for key, _ in _BENCH_COLUMNS] for r in inp.rows]
    delta = [i for i, (key, _) in enumerate(_BENCH_COLUMNS) if key == "delta"]
    out = ["## Every artifact, side by side", "", markdown_table(header, rows, signed=delta), ""]
    notes = [f"- **{r['artifact']}** {r['status']}: {r['reason']}" for r in inp.rows if r.get("reason")]
    if notes:
        out += notes + [""]
    better = "higher" if Task.of_metric(inp.metric_name).higher_is_better else "lower"
    out += [f"{metric}: {better} is better; Δ is the difference to the ONNX FP32 model in metric points. Latency is "
            "one image per call (crop, inference, decode) on the row's device; compare ratios within this table, "
            "not with other machines or runs. Memory: load MB is the process's peak up to its first inference "
            "(imports, model load, compile), run MB the peak during the timed runs; each artifact runs in a process "
            "of its own.", ""]
    return out


def _budget_section(inp: ReportInputs) -> list[str]:
    b = inp.budget
    if b.get("max_drop") is None:
        return ["## Accuracy budget", "", f"Not checked: {b.get('why', 'no budget was set')}.", ""]
    if not b.get("rows"):
        return ["## Accuracy budget", "", "No INT8 artifact was built, so there is nothing to hold to a budget.", ""]
    verdict = "**within the budget**" if b["within"] else "**over the budget**"
    unit = "PCKh points" if Task.of_metric(b["metric"]).higher_is_better else "NME points"
    return [
        "## Accuracy budget",
        "",
        f"INT8 artifacts may lose at most **{b['max_drop']:.1f} {unit}** against FP32. The worst INT8 row "
        f"({b['worst']}) loses {b['worst_drop']:.3g}: {verdict}.",
        "",
    ]


def _pictures_section(inp: ReportInputs) -> list[str]:
    captions = {
        "ced": "Cumulative error distribution of every artifact (the curves of faithful INT8 models lie on FP32's)",
        "pckh": "PCKh@0.5 per joint of every artifact",
        "accuracy_latency": "Accuracy against latency of every artifact",
    }
    out = ["## Pictures", ""]
    for role, name in inp.pictures.items():
        out += [f"**{captions.get(role, role)}** — [{name}]({name})", "", f"![{role}]({name})", ""]
    for ex in inp.examples:
        name = Path(ex.png).name
        mean = float(np.nanmean(ex.errors)) if ex.errors else float("nan")
        out += [f"**Test images, {ex.artifact}** (green: true, red: predicted; mean {ex.error_name} of these "
                f"{len(ex.errors)}: {mean:.2f}) — [{name}]({name})", "", f"![{ex.artifact}]({name})", ""]
    return out


def _training_section(inp: ReportInputs) -> list[str]:
    t = inp.training
    if not t:
        return []
    out = ["## Training", "", f"Best validation {t['metric_name']}: **{t['best_metric']:.3f}** after "
           f"{len(t.get('history') or [])} epoch(s).", ""]
    history = t.get("history") or []
    if history:
        keys = [k for k in history[0] if k != "epoch"]
        out += [markdown_table(["epoch", *keys], [[h.get("epoch"), *(h.get(k) for k in keys)] for h in history]), ""]
    return out


def _stages_section(inp: ReportInputs) -> list[str]:
    rows = []
    for s in inp.stages:
        built = s.get("built_seconds")
        rows.append([s["stage"], "reused" if s["reused"] else "built", s["seconds"], built, s.get("detail", "")])
    total = sum(s["seconds"] for s in inp.stages)
    return ["## Time per stage", "", markdown_table(["stage", "this run", "seconds", "seconds to build", "detail"],
                                                     rows), "", f"This run took {total:.1f} s in total.", ""]


def _mapping_section(title: str, mapping: dict[str, Any]) -> list[str]:
    return [f"## {title}", "", markdown_table(["", "value"], [[k, _flat(v)] for k, v in mapping.items()]), ""]


def _flat(v: Any) -> Any:
    if isinstance(v, dict):
        return ", ".join(f"{k}={_cell(x)}" for k, x in v.items()) or "—"
    if isinstance(v, (list, tuple)):
        return ", ".join(_cell(x) for x in v) or "—"
    return v


def write_report(report_dir: str | os.PathLike, inp: ReportInputs) -> dict[str, Any]:
    """Write `report.json` and `report.md` into `report_dir` (atomically) and return the JSON document.

    The pictures named in `inp.pictures` and `inp.examples` must already be in `report_dir`; they are linked
    by relative name, so the folder can be moved or published as it is.
    """
    report_dir = Path(report_dir)
    doc = {
        "title": inp.title,
        "task": inp.task,
        "metric": inp.metric_name,
        "rows": inp.rows,
        "budget": inp.budget,
        "settings": inp.settings,
        "environment": inp.environment,
        "stages": inp.stages,
        "training": inp.training,
        "pictures": inp.pictures,
        "examples": [vars(e) | {"png": Path(e.png).name} for e in inp.examples],
    }
    write_json(report_dir / "report.json", doc)
    lines = [f"# {inp.title}", ""]
    lines += _bench_section(inp) + _budget_section(inp) + _pictures_section(inp) + _training_section(inp)
    lines += _mapping_section("Settings", inp.settings) + _mapping_section("Environment", inp.environment)
    lines += _stages_section(inp)
    lines += ["Machine-readable: [report.json](report.json); the bench's own files: [bench.json](bench.json), "
              "[bench.csv](bench.csv).", ""]
    write_text(report_dir / "report.md", "\n".join(lines))
    return doc


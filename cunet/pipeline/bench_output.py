"""How `cunet bench` shows its rows: the table on stderr, `bench.csv` and the accuracy-vs-latency plot.

Kept apart from `cunet.pipeline.bench`, which builds, validates, scores and times the artifacts: this module only
reads finished rows (dicts with the `ROW_KEYS` keys).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from cunet.data.spec import Task
from cunet.io import write_bytes, write_text

__all__ = ["ROW_KEYS", "OK", "FAILED_VALIDATION", "FAILED", "SKIPPED", "write_csv", "plot_rows", "accuracy_latency_figure",
           "print_rows"]

#: The keys of every row, in CSV order: "provider" and "device" say what really ran ("cpu", "cuda:0"), "nonfinite"
#: how many predictions were not finite, the memory keys are defined in `cunet.evaluate.memory.DEFINITIONS`
#: ("peak_mb" equals "run_peak_mb"), "skip_kind" why a skipped row was not measured (`bench_plan.SkipKind`).
ROW_KEYS = ("artifact", "format", "precision", "backend", "status", "reason", "path", "size_mb", "metric", "value",
            "delta", "p50_ms", "p99_ms", "throughput", "peak_mb", "reused", "jitter", "video_nme", "provider", "device",
            "nonfinite", "load_peak_mb", "run_peak_mb", "device_peak_mb", "skip_kind")
OK, FAILED_VALIDATION, FAILED, SKIPPED = "ok", "failed validation", "failed", "skipped"


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """bench.csv: one line per row, the `ROW_KEYS` columns, empty cells for None."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(ROW_KEYS), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in ROW_KEYS} for r in rows)
    write_text(path, buf.getvalue())


def plot_rows(path: Path, rows: list[dict[str, Any]], metric: str, batch: int, threads: int | None) -> None:
    """accuracy_latency.png: every row with a value and a latency, x marking a failed validation."""
    fig = accuracy_latency_figure(rows, metric, batch, threads)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    write_bytes(path, buf.getvalue())


#: Marker colour per precision: the one distinction a reader looks for first.
_COLOURS = {"fp32": "tab:blue", "fp16": "tab:green", "int8": "tab:red"}


def accuracy_latency_figure(rows: list[dict[str, Any]], metric: str, batch: int, threads: int | None) -> Any:
    """The figure of `plot_rows`: latency on a log axis when it spans a wide range, every label placed where it
    overlaps no other label and no marker (`cunet.evaluate.plots.place_labels`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cunet.evaluate.plots import latency_axis, place_labels

    shown = [r for r in rows if r["value"] is not None and r["p50_ms"] is not None]
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    for r in shown:
        ax.scatter([r["p50_ms"]], [r["value"]], marker="o" if r["status"] == OK else "x", s=36, zorder=3,
                   color=_COLOURS.get(str(r.get("precision")), "tab:gray"))
    precisions = sorted({str(r.get("precision")) for r in shown} & set(_COLOURS), key=list(_COLOURS).index)
    if precisions:
        ax.legend(handles=[plt.Line2D([], [], marker="o", linestyle="", color=_COLOURS[p], label=p.upper())
                           for p in precisions], fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # never on a label
    better = "higher" if Task.of_metric(metric).higher_is_better else "lower"
    latency_axis(ax, [r["p50_ms"] for r in shown], f"p50 latency per call (ms, batch {batch}, {threads} threads)")
    ax.set_ylabel(f"{'NME' if metric == 'nme' else 'PCKh@0.5'} (%, {better} is better)")
    ax.set_title("accuracy vs latency of every artifact (x: failed validation)")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.12, y=0.25)  # room for labels beside the outermost points
    place_labels(ax, [(r["p50_ms"], r["value"], r["artifact"]) for r in shown])
    return fig


def print_rows(rows: list[dict[str, Any]], metric: str, ref: str | None, calib: tuple[int, int] | None = None,
               scored: int | None = None, left_out: int = 0) -> None:
    """The bench table on stderr, then one line per distinct skip/failure reason, the calibration count and what Δ
    was measured on (`scored` images, `left_out` calibration images removed from a split that serves both)."""
    from rich.table import Table

    from cunet.console import console

    out = console(width=150)  # logs and CI: full rows rather than the 80-column default
    label = Task.of_metric(metric).metric_label
    table = Table(title=f"cunet bench — {label}, Δ vs {ref or 'no reference'}", title_justify="left")
    gpu = any(r.get("device_peak_mb") is not None for r in rows)
    video = any(r.get("jitter") is not None for r in rows)  # bench --video: the stability columns
    extra = ("jitter %", "video NME %") if video else ()
    columns = ("artifact", "status", "precision", "runs on", "MB", label, "Δ", *extra, "p50 ms", "p99 ms", "img/s",
               "load MB", "run MB") + (("GPU MB",) if gpu else ())
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i < 4 else "right", no_wrap=True)
    memory = ("load_peak_mb", "run_peak_mb") + (("device_peak_mb",) if gpu else ())
    for r in rows:
        runs_on = f"{r.get('backend') or '—'} · {r.get('device') or '—'}"
        stability = [_cell(r.get("jitter")), _cell(r.get("video_nme"))] if video else []
        table.add_row(r["artifact"], r["status"], r.get("precision") or "—", runs_on, _cell(r["size_mb"]),
                      _cell(r["value"]), _cell(r["delta"], True), *stability,
                      *[_cell(r[k]) for k in ("p50_ms", "p99_ms", "throughput")], *[_cell(r.get(k)) for k in memory])
    out.print(table)
    # One line per distinct reason: three TensorRT rows skipped for the same missing GPU are one line, not three.
    reasons: dict[str, list[str]] = {}
    for r in rows:
        if r["reason"]:
            reasons.setdefault(r["reason"], []).append(r["artifact"])
    for reason, names in reasons.items():
        out.print(f"{', '.join(names)}: {reason}", highlight=False)
    if calib is not None and calib[0] < calib[1]:
        out.print(f"warning: the INT8 rows are calibrated on {calib[0]} image(s), {calib[1]} requested (the "
                  "training split has no more); their accuracy is less certain", highlight=False)
    if scored is not None:
        why = (f", the {left_out} calibration image(s) left out (the dataset's one split serves both)"
               if left_out else "")
        out.print(f"{label} and Δ measured on {scored} test image(s){why}; memory: load = the process up to its "
                  "first inference, run = the timed runs (bench.json: memory_definitions)", highlight=False)


def _cell(v: Any, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if signed:
        return f"{v:+.3f}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:,.1f}"

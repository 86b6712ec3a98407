"""Bench and profile reports from several machines side by side: one row per artifact, one column per machine.

A column is one report file (`cunet bench`'s bench.json or `cunet profile --json`'s output), named by its label:
the `label` of its environment block (`--label` of bench/profile), else its `host`, else the file's name; a name
that two reports share gets " (2)", " (3)" ... so two reports never collapse into one column. A row is a bench
artifact ("onnx-int8-cpu") or a profiled model at one batch size ("face.onnx · ort-cpu · batch 1"). Each cell holds
one measured value (p50 latency by default) and its ratio to the baseline row of the same column: ratios within one
machine's run are what survive a noisy machine, and they compare across machines.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cunet.errors import CunetError
from cunet.io import write_bytes, write_text
from cunet.limits import read_limited_bytes

__all__ = ["VALUES", "Report", "Comparison", "load_report", "compare", "write_csv", "plot_comparison",
           "comparison_figure"]

#: What a cell can show: name → (unit, True when higher is better).
VALUES = {"p50_ms": ("ms", False), "p99_ms": ("ms", False), "throughput": ("img/s", True), "peak_mb": ("MB", False),
          "load_peak_mb": ("MB", False), "run_peak_mb": ("MB", False)}


@dataclass(frozen=True)
class Report:
    """One report file read: its column label, kind ("bench" or "profile") and {row name: {value name: number}}."""

    path: str
    label: str
    kind: str
    host: str | None
    rows: dict[str, dict[str, float | None]]
    environment: dict[str, Any]


@dataclass
class Comparison:
    """The side-by-side table: `values[row][column]` and `ratios[row][column]` (None where a report lacks it)."""

    value: str
    baseline: str | None
    columns: list[Report]
    rows: list[str]
    values: dict[str, dict[str, float | None]] = field(default_factory=dict)
    ratios: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        unit, higher = VALUES[self.value]
        return {
            "value": self.value, "unit": unit, "higher_is_better": higher, "baseline": self.baseline,
            "columns": [{"label": c.label, "file": c.path, "kind": c.kind, "host": c.host,
                         "cpu": c.environment.get("cpu"), "device": c.environment.get("device")} for c in self.columns],
            "rows": [{"artifact": r, "values": self.values[r], "ratios": self.ratios[r]} for r in self.rows],
        }


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _bench_rows(obj: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    return {str(r["artifact"]): {k: _number(r.get(k)) for k in VALUES} for r in obj["rows"]}


def _profile_rows(obj: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    name = f"{Path(str(obj.get('model', 'model'))).name} · {obj.get('backend', '?')}"
    rows = {}
    for r in obj["results"]:
        total = r["latency_ms"]["total"]
        rows[f"{name} · batch {r['batch']}"] = {"p50_ms": _number(total.get("p50")), "p99_ms": _number(total.get("p99")),
                                               "throughput": _number(r.get("throughput_ips")),
                                               "peak_mb": _number(r.get("peak_rss_mb")),
                                               "load_peak_mb": _number(obj.get("load_peak_mb")),
                                               "run_peak_mb": _number(r.get("run_peak_mb"))}
    return rows


def _kind(obj: Any) -> str | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("environment"), dict):
        return None
    if isinstance(obj.get("rows"), list) and all(isinstance(r, dict) and "artifact" in r for r in obj["rows"]):
        return "bench"
    if isinstance(obj.get("results"), list) and all(isinstance(r, dict) and "latency_ms" in r and "batch" in r
                                                    for r in obj["results"]):
        return "profile"
    return None


def load_report(path: str | os.PathLike, label: str | None = None) -> Report:
    """Read one bench or profile JSON report; anything else is a one-line `CunetError`."""
    path = Path(path)
    if not path.exists():
        raise CunetError(f"{path}: no such report file")
    data = read_limited_bytes(path)  # empty and oversized files: one line, as every reader says it
    try:
        obj = json.loads(data.decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CunetError(f"{path}: not a cunet report (not readable JSON: {type(e).__name__})") from None
    kind = _kind(obj)
    if kind is None:
        raise CunetError(f"{path}: not a cunet report (expected the JSON of `cunet bench` or `cunet profile --json`)")
    try:
        rows = _bench_rows(obj) if kind == "bench" else _profile_rows(obj)
    except (KeyError, TypeError, AttributeError) as e:
        raise CunetError(f"{path}: a damaged cunet {kind} report (missing {e})") from None
    env = obj["environment"]
    host = env.get("host") if isinstance(env.get("host"), str) else None
    name = label or env.get("label") or host or path.name
    return Report(str(path), str(name), kind, host, rows, env)


def compare(reports: list[Report], value: str = "p50_ms", baseline: str | None = None) -> Comparison:
    """Lay `reports` side by side on `value`, with each cell's ratio to the `baseline` row of its column.

    Args:
        reports: one per column, in column order (labels are made unique here).
        value: a key of `VALUES`.
        baseline: the row every ratio is relative to (default: "onnx-fp32" when a bench report has it, else the
            first row).

    Raises:
        CunetError: no reports, an unknown `value`, or a `baseline` that is no row.
    """
    if not reports:
        raise CunetError("no reports to compare")
    if value not in VALUES:
        raise CunetError(f"unknown value {value!r}; choose one of {', '.join(VALUES)}")
    seen: dict[str, int] = {}
    columns = []
    for r in reports:
        n = seen[r.label] = seen.get(r.label, 0) + 1
        columns.append(r if n == 1 else Report(r.path, f"{r.label} ({n})", r.kind, r.host, r.rows, r.environment))
    rows: list[str] = []
    for r in columns:
        rows += [name for name in r.rows if name not in rows]
    if baseline is None:
        baseline = "onnx-fp32" if "onnx-fp32" in rows else rows[0] if rows else None
    elif baseline not in rows:
        raise CunetError(f"baseline {baseline!r} is no row of these reports; rows: {', '.join(rows)}")
    out = Comparison(value, baseline, columns, rows)
    for name in rows:
        out.values[name] = {c.label: c.rows.get(name, {}).get(value) for c in columns}
        out.ratios[name] = {}
        for c in columns:
            v, b = out.values[name][c.label], c.rows.get(baseline, {}).get(value) if baseline else None
            out.ratios[name][c.label] = v / b if v is not None and b else None
    return out


def write_csv(cmp: Comparison, path: str | os.PathLike) -> None:
    """One line per row: the artifact, then each column's value, then each column's ratio to the baseline."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    labels = [c.label for c in cmp.columns]
    w.writerow(["artifact", *[f"{lab} {cmp.value}" for lab in labels], *[f"{lab} ratio" for lab in labels]])
    for name in cmp.rows:
        vals = [cmp.values[name][lab] for lab in labels] + [cmp.ratios[name][lab] for lab in labels]
        w.writerow([name, *["" if v is None else f"{v:.6g}" for v in vals]])
    write_text(path, buf.getvalue())


def plot_comparison(cmp: Comparison, path: str | os.PathLike) -> None:
    """Write `comparison_figure` as a PNG."""
    fig = comparison_figure(cmp)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    write_bytes(path, buf.getvalue())


def comparison_figure(cmp: Comparison) -> Any:
    """Grouped horizontal bars: one group per row (its name on the y axis, one line each, so long names never
    overlap), one bar per column (machine); the value on a log axis when it spans a wide range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cunet.evaluate.plots import log_if_wide

    unit, higher = VALUES[cmp.value]
    n = max(1, len(cmp.columns))
    height = 0.8 / n
    fig, ax = plt.subplots(figsize=(7.2, max(3.0, 0.22 * len(cmp.rows) * n + 1.6)))
    for j, c in enumerate(cmp.columns):
        ys = [i + (j - (n - 1) / 2) * height for i in range(len(cmp.rows))]
        vs = [cmp.values[r][c.label] for r in cmp.rows]
        ax.barh([y for y, v in zip(ys, vs) if v is not None], [v for v in vs if v is not None], height, label=c.label)
    ax.set_yticks(range(len(cmp.rows)), cmp.rows, fontsize=8)
    ax.invert_yaxis()  # the first row on top, as in the table
    values = [v for r in cmp.rows for v in cmp.values[r].values()]
    log = log_if_wide(ax, "x", values)
    ax.set_xlabel(f"{cmp.value} ({unit}, {'higher' if higher else 'lower'} is better{', log scale' if log else ''})")
    ax.set_title(f"{cmp.value} per artifact and machine (no bar: not measured there)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside the axes: never covers a bar
    ax.grid(True, axis="x", alpha=0.3)
    return fig

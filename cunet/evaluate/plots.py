"""Accuracy plots: CED curves of several face models on one axis and PCKh bar charts per joint or per group, and
the two helpers every scatter of artifacts uses: labels placed where they overlap nothing (`place_labels`) and a
value axis that turns logarithmic when the values span a wide range (`log_if_wide`, `latency_axis`).

matplotlib is imported inside the functions with the Agg backend, so importing this module costs nothing and works
on headless machines. PNGs are rendered into memory and written atomically through `cunet.io`.
"""

from __future__ import annotations

import io
import os
from typing import Any, Mapping, Sequence

import numpy as np

from cunet.evaluate.metrics import auc, ced
from cunet.io import write_bytes

__all__ = ["plot_ced", "plot_pckh", "place_labels", "latency_axis", "log_if_wide"]

_DPI = 120


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    _pyplot().close(fig)
    write_bytes(path, buf.getvalue())


def plot_ced(
    curves: Mapping[str, np.ndarray], path: str | os.PathLike, max_error: float = 0.10, title: str = "CED"
) -> None:
    """Draw the cumulative error distribution of one or more models, with AUC@max_error in the legend.

    Args:
        curves: model name → per-image errors [N] as fractions (e.g. `nme_per_image`); NaN entries are left out.
        path: the PNG to write.
        max_error: right end of the x axis and the AUC threshold.
        title: plot title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for name, errors in curves.items():
        thresholds, fraction = ced(errors, max_error=max_error, steps=1001)
        label = f"{name} (AUC@{max_error:g} = {auc(errors, max_error):.4f})"
        ax.plot(thresholds * 100, fraction * 100, label=label, linewidth=1.8)
    ax.set(xlim=(0, max_error * 100), ylim=(0, 100), title=title)
    ax.set_xlabel("NME (%)")
    ax.set_ylabel("images with NME ≤ x (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    _save(fig, path)


def plot_pckh(
    results: Mapping[str, Mapping[str, float]], path: str | os.PathLike, title: str = "PCKh@0.5"
) -> None:
    """Bar chart of PCKh per joint or per group, one bar colour per model.

    Args:
        results: model name → (joint or group name → PCKh as a fraction, NaN where nothing was visible).
            Every model should have the same names; bars follow the first model's order.
        path: the PNG to write.
        title: plot title.
    """
    plt = _pyplot()
    names = list(next(iter(results.values()), {}))
    x = np.arange(len(names))
    width = 0.8 / max(len(results), 1)
    fig, ax = plt.subplots(figsize=(max(6.4, 0.3 * len(names) * max(len(results), 1) + 2), 4.8))
    for i, (model, values) in enumerate(results.items()):
        heights = [100 * values.get(n, float("nan")) for n in names]
        ax.bar(x + (i - (len(results) - 1) / 2) * width, heights, width, label=model)
    ax.set_xticks(x, names, rotation=45 if len(names) > 8 else 0, ha="right" if len(names) > 8 else "center")
    ax.set(ylim=(0, 100), title=title)
    ax.set_ylabel("PCKh (%)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside the axes: never covers a bar
    _save(fig, path)


#: Label offsets tried around a point, in points: nearest first, and at each distance right, left, up, down, then the
#: diagonals and the directions between them. Farther than the first ring, a thin leader line joins label and point.
_RADII = (7.0, 14.0, 22.0, 32.0, 44.0, 58.0, 74.0, 92.0)
_ANGLES = (0, 180, 90, 270, 45, 135, 315, 225, 22.5, 157.5, 337.5, 202.5, 67.5, 112.5, 292.5, 247.5)
_LEADER = dict(arrowstyle="-", color="0.55", linewidth=0.6, shrinkA=0, shrinkB=3)


def log_if_wide(ax: Any, which: str, values: Sequence[float | None]) -> bool:
    """Make the `which` axis ("x" or "y") logarithmic, with plain-number ticks at 1, 2, 5 × 10^k, when its largest
    value is more than 3× its smallest (a linear axis then squeezes the small ones into one spot); True if it did."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    v = [x for x in values if x is not None and x > 0]
    if not v or max(v) <= 3 * min(v):
        return False
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axis.set_minor_formatter(NullFormatter())
    return True


def latency_axis(ax: Any, latencies: Sequence[float], label: str) -> None:
    """The x axis of latencies: `log_if_wide`, and the label says when it is a log scale."""
    ax.set_xlabel(label + (", log scale" if log_if_wide(ax, "x", latencies) else ""))


def place_labels(ax: Any, points: Sequence[tuple[float, float, str]], fontsize: float = 8) -> list[Any]:
    """Write each point's label where its box overlaps no other label, no marker and stays inside the axes.

    Greedy, crowded points first: each label takes the nearest free spot of `_RADII` x `_ANGLES` (text extents come
    from the figure's renderer); when every spot collides, the one overlapping least. Call it after everything that
    changes the axes' limits or scale.

    Args:
        ax: the matplotlib axes holding the points.
        points: (x, y, label) in data coordinates.
        fontsize: label size in points.

    Returns:
        The annotations, in the order of `points`.
    """
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    ax.autoscale_view()
    px = fig.dpi / 72.0
    at = [ax.transData.transform((x, y)) for x, y, _ in points]
    markers = [Bbox.from_bounds(u - 4 * px, v - 4 * px, 8 * px, 8 * px) for u, v in at]  # the markers (6 pt)
    frame = ax.get_window_extent(renderer)
    crowd = [sum(1 for (u2, v2) in at if abs(u2 - u) < 60 * px and abs(v2 - v) < 20 * px) for u, v in at]
    placed: list[Any] = [None] * len(points)
    boxes: list[Any] = []
    for i in sorted(range(len(points)), key=lambda k: -crowd[k]):
        x, y, label = points[i]
        best = None
        for r in _RADII:
            for a in _ANGLES:
                dx, dy = r * np.cos(np.radians(a)), r * np.sin(np.radians(a))
                ann = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                                  ha="left" if dx > 0.5 else "right" if dx < -0.5 else "center",
                                  va="bottom" if dy > 0.5 else "top" if dy < -0.5 else "center")
                box = ann.get_window_extent(renderer).expanded(1.0, 1.0).padded(1.5 * px)
                cost = sum(_overlap(box, b) for b in boxes + markers) + _outside(box, frame)
                ann.remove()
                if best is None or cost < best[0]:
                    best = (cost, dx, dy, ann, box, r)
                if cost == 0:
                    break
            if best[0] == 0:
                break
        _, dx, dy, ann, box, r = best
        placed[i] = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                                ha=ann.get_ha(), va=ann.get_va(), arrowprops=_LEADER if r > _RADII[0] else None)
        boxes.append(box)
    return placed


def _overlap(a: Any, b: Any) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box: Any, frame: Any) -> float:
    return box.width * box.height - _overlap(box, frame)

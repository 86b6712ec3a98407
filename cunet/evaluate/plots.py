"""Accuracy plots: CED curves of several face models on one axis and PCKh bar charts per joint or per group.

matplotlib is imported inside the functions with the Agg backend, so importing this module costs nothing and works
on headless machines. PNGs are rendered into memory and written atomically through `cunet.io`.
"""

from __future__ import annotations

import io
import os
from typing import Mapping

import numpy as np

from cunet.evaluate.metrics import auc, ced
from cunet.io import write_bytes

__all__ = ["plot_ced", "plot_pckh"]

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

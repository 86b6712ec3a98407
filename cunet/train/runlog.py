"""What a training run prints and writes besides checkpoints: the console, the progress bar, the start line's
counts and description, and `history.json` / `log.csv`."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["write_logs", "log_files", "fmt_metric", "count", "describe", "console", "progress_bar"]


def log_files(out: Path) -> list[Path]:
    """The files `write_logs` writes into the run folder `out`."""
    return [out / "history.json", out / "log.csv"]


def write_logs(out: Path, history: list[dict], metric_name: str) -> None:
    from cunet.io import write_json, write_text

    history_json, log_csv = log_files(out)
    write_json(history_json, history)
    cols = ["epoch", "train_loss", metric_name, "lr", "seconds", "elapsed", "best"]
    lines = [",".join(cols)] + [",".join(_csv(h.get(c)) for c in cols) for h in history]
    write_text(log_csv, "\n".join(lines) + "\n")


def _csv(v: Any) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return "" if v is None else str(v)


def fmt_metric(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}%"


def count(samples: list, task: str) -> str:
    """"21 people in 19 images" for poses (one sample per person), "19 faces" for faces (one per image)."""
    if task == "pose":
        return f"{len(samples)} people in {len({s.image for s in samples})} images"
    return f"{len(samples)} faces"


def describe(cfg) -> str:
    return (f"{cfg.layers} U-Nets order {cfg.order}, {cfg.channels} ch, {cfg.input_size}² input"
            + (", memory-efficient" if cfg.memory_efficient else ""))


def console():
    from rich.console import Console

    return Console(stderr=True, file=sys.stderr, markup=False)


def progress_bar(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                 TimeRemainingColumn(), console=console, transient=True)
    p.start()
    return p

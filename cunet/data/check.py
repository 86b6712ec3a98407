"""Validate a whole dataset folder: every split, every annotation, every image, one line per bad file.

Training and evaluation skip bad files (`load_samples` reports them as problems); `check_dataset` is the way to see
them all before a long run. It loads every (split, subset) part of the folder with `check_images=True`, so it also
finds unreadable or truncated images and landmarks far outside their image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cunet.data.dataset import Problem, dataset_parts, load_samples

__all__ = ["PartReport", "CheckReport", "check_dataset"]


@dataclass
class PartReport:
    """Counts of one (split, subset) part: usable samples and left-out files (or records)."""

    valid: int
    invalid: int


@dataclass
class CheckReport:
    """The result of `check_dataset`.

    Attributes:
        root: the folder checked.
        task: "face" or "pose".
        parts: part name ("train", "test", "test/common", ...) → counts.
        problems: every left-out file (or record), in load order.
    """

    root: str
    task: str
    parts: dict[str, PartReport] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def valid(self) -> int:
        """Usable samples over all parts."""
        return sum(p.valid for p in self.parts.values())

    @property
    def invalid(self) -> int:
        """Left-out files (or records) over all parts."""
        return sum(p.invalid for p in self.parts.values())

    @property
    def ok(self) -> bool:
        """True when nothing was left out."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """The `cunet data check --json` object: valid, invalid, problems [{file, problem}] and per-part counts."""
        return {
            "valid": self.valid,
            "invalid": self.invalid,
            "problems": [{"file": p.file, "problem": p.problem} for p in self.problems],
            "splits": {name: {"valid": p.valid, "invalid": p.invalid} for name, p in self.parts.items()},
        }


def check_dataset(root: str | os.PathLike, task: str, check_images: bool = True) -> CheckReport:
    """Load every part of a dataset folder and collect its problems.

    Args:
        root: the dataset folder (layouts in `cunet.data.dataset`).
        task: "face" or "pose".
        check_images: decode every image and check the landmarks lie near it (slower; off checks only existence).

    Returns:
        A `CheckReport`; `report.ok` is False when any file was left out.

    Raises:
        CunetError: unknown task, missing folder, or a folder that is not a dataset of `task` at all.
    """
    report = CheckReport(str(root), task)
    for split, subset in dataset_parts(root, task):
        result = load_samples(Path(root), task, split, subset, check_images=check_images, allow_empty=True)
        name = split if subset is None else f"{split}/{subset}"
        report.parts[name] = PartReport(len(result.samples), len(result.problems))
        report.problems.extend(result.problems)
    return report

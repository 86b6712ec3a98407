"""Validate a whole dataset folder: every split, every annotation, every image, one line per bad file.

Training and evaluation skip bad files (`load_samples` reports them as problems); `check_dataset` is the way to see
them all before a long run. It loads every (split, subset) part of the folder with `check_images=True`, so it also
finds unreadable or truncated images and landmarks far outside their image. The parts and their names come from
`cunet.data.layout.detect_layout`, the detector every other command uses, so what passes here is what they read.
For pose it also says when PCKh will not be computable (records without a head box and no `gt_valid.mat`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cunet.batch import Skips
from cunet.data.dataset import Problem, load_samples, pose_json
from cunet.data.layout import detect_layout
from cunet.errors import CunetError

__all__ = ["PartReport", "CheckReport", "check_dataset", "check_splits"]


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
        layout: the detected layout ("300w", "splits", "flat", "coco", "mpii").
        notes: what will not work although no file is bad (pose: PCKh without head boxes), one line each.
    """

    root: str
    task: str
    parts: dict[str, PartReport] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    layout: str = ""
    notes: list[str] = field(default_factory=list)

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
        """The `cunet data check --json` object: valid, invalid, problems [{file, problem}], per-part counts,
        the layout and the notes."""
        return {
            "layout": self.layout,
            "notes": list(self.notes),
            "valid": self.valid,
            "invalid": self.invalid,
            "problems": [{"file": p.file, "problem": p.problem} for p in self.problems],
            "splits": {name: {"valid": p.valid, "invalid": p.invalid} for name, p in self.parts.items()},
        }


def check_dataset(root: str | os.PathLike, task: str, check_images: bool = True, split: str | None = None,
                  headboxes: str | os.PathLike | None = None) -> CheckReport:
    """Load every part of a dataset and collect its problems.

    Args:
        root: the dataset folder, or a COCO-keypoint face JSON or an MPII JSON (layouts in `cunet.data.layout`).
        task: "face" or "pose".
        check_images: decode every image and check the landmarks lie near it (slower; off checks only existence).
        split: the split a one-split dataset is named by ("train"/"test"; default: from a COCO or MPII file's
            name, or "all").
        headboxes: pose: the `gt_valid.mat` to check against `valid.json` (default: the one beside it, if any).

    Returns:
        A `CheckReport`; `report.ok` is False when any file was left out.

    Raises:
        CunetError: unknown task, missing folder, a path that is not a dataset of `task` at all, or a head-box
            file that does not describe `valid.json`.
    """
    layout = detect_layout(root, task, split)
    report = CheckReport(str(root), task, layout=layout.kind)
    for part_split, subset in layout.parts:
        result = load_samples(Path(root), task, part_split, subset, check_images=check_images, allow_empty=True,
                              layout=layout, headboxes=headboxes if part_split in ("test", "all") else None)
        report.parts[layout.part_name(part_split, subset)] = PartReport(len(result.samples), len(result.problems))
        report.problems.extend(result.problems)
        if task == "pose" and part_split in ("test", "all"):
            report.notes.extend(_pckh_note(Path(root), result, headboxes))
    if task == "pose" and not layout.one_split and not any(sp == "test" for sp, _ in layout.parts):
        report.notes.append(f"{root}: no valid.json: evaluate, metrics and training's validation need one")
    return report


def _pckh_note(root: Path, result, headboxes) -> list[str]:
    without = sum(s.headbox is None for s in result.samples)
    if not without:
        return []
    where = root if root.is_file() else pose_json(root, "test")
    return [f"{where}: PCKh will not be computable: {without} of {len(result.samples)} record(s) have no "
            f"headbox and no gt_valid.mat is beside it; put MPII's gt_valid.mat (common PyTorch MPII code ships it "
            f"in annot/) beside {where.name if where else 'valid.json'}, or pass --headboxes FILE"]


def check_splits(root: str | os.PathLike, task: str, splits: Sequence[str], skips: Skips) -> dict[str, int]:
    """Check the splits a batch command is about to read, before it starts: every annotation parsed and every image
    decoded once, each file that cannot be used added to `skips` (`cunet.batch`: the first raises when strict).

    A one-split dataset (a flat folder, a COCO or MPII file) serves every split and is checked once.

    Returns:
        Split → its usable samples.

    Raises:
        CunetError: a path that is not a dataset of `task`, a split without one usable sample, or (strict) the
            first file that cannot be used.
    """
    layout = detect_layout(root, task)
    counts: dict[str, int] = {}
    for split in dict.fromkeys(splits):
        if layout.one_split and counts:
            counts[split] = next(iter(counts.values()))
            continue
        result = load_samples(Path(root), task, split, check_images=True, allow_empty=True, layout=layout)
        skips.extend(result.problems)
        if not result.samples:
            first = f" (first: {result.problems[0].file}: {result.problems[0].problem})" if result.problems else ""
            raise CunetError(f"{root}: no usable {task} samples in split {split!r}{first}")
        counts[split] = len(result.samples)
    return counts

"""MPII head boxes from `gt_valid.mat`, the ground-truth file common PyTorch MPII code ships beside `valid.json`.

The common `valid.json` has no head boxes; PCKh needs them. That code keeps them in a MATLAB file with
`jnt_missing` (16 × N, 1 = not annotated), `pos_gt_src` (16 × 2 × N joint x, y) and `headboxes_src`
(2 × 2 × N: top-left and bottom-right corner, x and y), one column per person in `valid.json`'s record order, in
MATLAB's 1-based pixels. Records are matched by index, so the count must equal the JSON's and every record's
annotated joints must agree with the file's (a different order or another split is refused, never mis-scored).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cunet.data.formats import FormatError
from cunet.limits import file_problem

__all__ = ["HEADBOX_FILE", "MatGroundTruth", "read_gt_mat", "find_headbox_file", "attach_headboxes"]

#: The file name looked for beside `valid.json` when no `--headboxes` is given.
HEADBOX_FILE = "gt_valid.mat"
#: A record whose annotated joints lie further than this (mean, px) from the .mat's is another person.
_SAME_PERSON_PX = 10.0


@dataclass(frozen=True)
class MatGroundTruth:
    """The contents of a `gt_valid.mat`, 0-based.

    Attributes:
        headboxes: [N, 4] x1, y1, x2, y2.
        joints: [N, 16, 2] joint positions, NaN where `jnt_missing` is 1.
    """

    headboxes: np.ndarray
    joints: np.ndarray

    def __len__(self) -> int:
        return len(self.headboxes)


def read_gt_mat(path: str | os.PathLike, num_joints: int = 16) -> MatGroundTruth:
    """Read `jnt_missing`, `pos_gt_src` and `headboxes_src` from an MPII ground-truth `.mat` (see module docstring).

    Raises:
        FormatError: a missing, empty or oversized file (`cunet.limits`), not a readable MATLAB file, a missing
            field, shapes that disagree, or a degenerate head box.
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    path = Path(path)
    problem = file_problem(path)  # missing, empty, or over the size limit of every file read whole
    if problem is not None:
        raise FormatError(path, problem)
    try:
        mat = loadmat(str(path))
    except NotImplementedError:  # scipy reads MATLAB v4-v7.2; v7.3 files are HDF5
        raise FormatError(path, "a MATLAB v7.3 (HDF5) file; save it as v7 (the format MPII's file has)") from None
    except (MatReadError, ValueError, TypeError, OSError, IndexError, KeyError, EOFError) as e:
        # scipy's header parser raises IndexError/ValueError on a short or foreign file
        raise FormatError(path, f"not a readable MATLAB .mat file ({type(e).__name__})") from None
    missing = [k for k in ("jnt_missing", "pos_gt_src", "headboxes_src") if k not in mat]
    if missing:
        raise FormatError(path, f"no {', '.join(missing)} (expected the gt_valid.mat of MPII's validation set)")
    jnt_missing = np.asarray(mat["jnt_missing"])
    pos = np.asarray(mat["pos_gt_src"], dtype=np.float64)
    boxes = np.asarray(mat["headboxes_src"], dtype=np.float64)
    n = boxes.shape[-1] if boxes.ndim == 3 else -1
    if boxes.shape[:2] != (2, 2) or boxes.ndim != 3:
        raise FormatError(path, f"headboxes_src must be 2x2xN, got {'x'.join(map(str, boxes.shape))}")
    if pos.shape != (num_joints, 2, n):
        raise FormatError(path, f"pos_gt_src must be {num_joints}x2x{n}, got {'x'.join(map(str, pos.shape))}")
    if jnt_missing.shape != (num_joints, n):
        raise FormatError(path, f"jnt_missing must be {num_joints}x{n}, got {'x'.join(map(str, jnt_missing.shape))}")
    xyxy = np.concatenate([boxes[0], boxes[1]], axis=0).T - 1.0  # [N, 4]: (x1, y1) then (x2, y2)
    bad = ~np.isfinite(xyxy).all(axis=1) | (xyxy[:, 2] <= xyxy[:, 0]) | (xyxy[:, 3] <= xyxy[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FormatError(path, f"head box {i} is not a box with x2 > x1 and y2 > y1: {(xyxy[i] + 1).tolist()}")
    joints = np.transpose(pos, (2, 0, 1)) - 1.0
    joints[np.asarray(jnt_missing).T.astype(bool)] = np.nan
    return MatGroundTruth(xyxy, joints)


def find_headbox_file(json_path: Path) -> Path | None:
    """`gt_valid.mat` beside the split's JSON, or None."""
    candidate = json_path.parent / HEADBOX_FILE
    return candidate if candidate.is_file() else None


def attach_headboxes(joints: list[np.ndarray | None], mat: MatGroundTruth, json_path: Path,
                     mat_path: Path) -> np.ndarray:
    """Check that the `.mat` describes the JSON's records, in order, and return their head boxes [N, 4].

    Args:
        joints: per JSON record its [16, 2] joints (NaN where not annotated), None for a record that did not parse.
        mat: the `.mat`'s contents.
        json_path, mat_path: named in the error messages.

    Raises:
        FormatError: different record counts, or a record whose joints are not the `.mat`'s (another order/split).
    """
    if len(joints) != len(mat):
        raise FormatError(mat_path, f"{len(mat)} head boxes but {json_path.name} has {len(joints)} records; "
                                    "records are matched by index, so the counts must agree")
    for i, j in enumerate(joints):
        if j is None:
            continue
        both = np.isfinite(j).all(axis=1) & np.isfinite(mat.joints[i]).all(axis=1)
        if both.any() and float(np.linalg.norm(j[both] - mat.joints[i][both], axis=1).mean()) > _SAME_PERSON_PX:
            raise FormatError(mat_path, f"person {i}'s joints differ from record {i} of {json_path.name}: not the "
                                        "same records in the same order")
    return mat.headboxes

"""Landmark specifications: names, left/right flip pairs, skeletons and metric groups of each task.

A `LandmarkSpec` is the single source of "which point is which" for training (horizontal flip must swap left and
right points), evaluation (face NME normalises by the outer eye corners; MPII results are reported per joint group),
drawing (skeletons) and export metadata. Indices are 0-based.

Names follow one convention so left/right partners can be checked mechanically: a subject-right point has an `r_`
prefix, its subject-left partner the same name with `l_`; points on the midline have neither.

Faces use the iBUG 68-point markup of 300-W (jaw 0–16, brows 17–26, nose 27–35, eyes 36–47 with the subject's right
eye 36–41, mouth 48–67); the flip table is derived from that layout (the original CU-Net code had one wrong pair).
Poses use the MPII joint order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from cunet.errors import CunetError

__all__ = ["TASKS", "Task", "LandmarkSpec", "FACE_68", "POSE_MPII_16", "get_spec"]

TASKS = ("face", "pose")


class Task(str, Enum):
    """A task and what follows from it: its headline metric and which direction of that metric is better.

    A `str` enum, so `Task.FACE == "face"` and JSON writes it as "face": the rest of cunet may keep passing the
    plain names, and call `Task(name)` (or `Task.of_metric`) where it needs to decide something.
    """

    FACE = "face"
    POSE = "pose"

    @property
    def metric(self) -> str:
        """The metric name of results and reports: "nme" (faces, percent) or "pckh@0.5" (pose, percent)."""
        return "nme" if self is Task.FACE else "pckh@0.5"

    @property
    def metric_label(self) -> str:
        return "NME %" if self is Task.FACE else "PCKh@0.5 %"

    @property
    def higher_is_better(self) -> bool:
        """NME is an error (lower is better); PCKh a fraction of correct joints (higher is better)."""
        return self is Task.POSE

    def better(self, value: float, than: float) -> bool:
        """Whether metric `value` is strictly better than `than`."""
        return value > than if self.higher_is_better else value < than

    def loss(self, delta: float) -> float:
        """The accuracy lost by a change of `delta` metric points (NME rises when worse, PCKh falls)."""
        return -delta if self.higher_is_better else delta

    @classmethod
    def of_metric(cls, metric: str) -> "Task":
        """The task whose headline metric is `metric` ("nme" or "pckh@0.5")."""
        for task in cls:
            if task.metric == metric:
                return task
        raise CunetError(f"unknown metric {metric!r}: expected one of {', '.join(t.metric for t in cls)}")


@dataclass(frozen=True)
class LandmarkSpec:
    """What the K landmarks of a task are.

    Attributes:
        task: "face" or "pose".
        names: K landmark names.
        flip_pairs: (left, right) index pairs swapped by a horizontal flip; midline points appear in none.
        norm_points: indices whose distance normalises errors (faces: outer eye corners); empty when the
            normaliser comes from elsewhere (pose: PCKh uses the head box).
        skeleton: index pairs joined when drawing.
        groups: group name → indices, in reporting order.
    """

    task: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    norm_points: tuple[int, ...]
    skeleton: tuple[tuple[int, int], ...]
    groups: dict[str, tuple[int, ...]] = field(hash=False)

    def __post_init__(self) -> None:
        k = len(self.names)
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}")
        if len(set(self.names)) != k:
            raise ValueError("landmark names must be unique")
        flat = [i for pair in self.flip_pairs for i in pair]
        if len(set(flat)) != len(flat):
            raise ValueError("a landmark appears in more than one flip pair")
        used = flat + list(self.norm_points) + [i for p in self.skeleton for i in p]
        used += [i for g in self.groups.values() for i in g]
        if any(not 0 <= i < k for i in used):
            raise ValueError(f"landmark index out of range 0..{k - 1}")

    @property
    def num_landmarks(self) -> int:
        """K, the number of landmarks."""
        return len(self.names)

    @property
    def flip_permutation(self) -> np.ndarray:
        """[K] int64 index array: `points[perm]` are the points of the horizontally flipped subject.

        Apply it after mirroring the x coordinates, so the point called "r_eye_outer" is the subject's right eye
        again. It is an involution: `perm[perm]` is the identity.
        """
        perm = np.arange(self.num_landmarks, dtype=np.int64)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


def _face_68() -> LandmarkSpec:
    names: list[str] = []
    # Jaw 0..16: subject's right ear to chin (8) to left ear; point i pairs with 16 - i.
    names += [f"r_jaw_{8 - i}" for i in range(8)] + ["chin"] + [f"l_jaw_{i}" for i in range(1, 9)]
    # Brows 17..21 right (outer → inner), 22..26 left (inner → outer); 17 + j pairs with 26 - j.
    names += [f"r_brow_{j}" for j in range(1, 6)] + [f"l_brow_{j}" for j in range(5, 0, -1)]
    # Nose bridge 27..30 (top → tip), lower nose 31..35 (right → left).
    names += [f"nose_bridge_{j}" for j in range(1, 5)]
    names += ["r_nostril_outer", "r_nostril_inner", "nose_bottom", "l_nostril_inner", "l_nostril_outer"]
    # Eyes, clockwise in the image from the image-left corner: right eye 36..41, left eye 42..47.
    names += ["r_eye_outer", "r_eye_upper_outer", "r_eye_upper_inner", "r_eye_inner", "r_eye_lower_inner",
              "r_eye_lower_outer"]  # fmt: skip
    names += ["l_eye_inner", "l_eye_upper_inner", "l_eye_upper_outer", "l_eye_outer", "l_eye_lower_outer",
              "l_eye_lower_inner"]  # fmt: skip
    # Outer lip 48..59 and inner lip 60..67, clockwise from the right mouth corner.
    names += ["r_mouth_corner", "r_upper_lip_outer", "r_upper_lip_inner", "upper_lip_top", "l_upper_lip_inner",
              "l_upper_lip_outer", "l_mouth_corner", "l_lower_lip_outer", "l_lower_lip_inner", "lower_lip_bottom",
              "r_lower_lip_inner", "r_lower_lip_outer"]  # fmt: skip
    names += ["r_inner_lip_corner", "r_inner_upper_lip", "inner_upper_lip", "l_inner_upper_lip",
              "l_inner_lip_corner", "l_inner_lower_lip", "inner_lower_lip", "r_inner_lower_lip"]  # fmt: skip
    flip_pairs = (
        [(i, 16 - i) for i in range(8)]
        + [(17 + j, 26 - j) for j in range(5)]
        + [(31, 35), (32, 34)]
        + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
        + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
    )

    def chain(lo: int, hi: int, closed: bool = False) -> list[tuple[int, int]]:
        edges = [(i, i + 1) for i in range(lo, hi)]
        return edges + [(hi, lo)] if closed else edges

    skeleton = (
        chain(0, 16) + chain(17, 21) + chain(22, 26) + chain(27, 30) + chain(31, 35) + [(30, 33)]
        + chain(36, 41, True) + chain(42, 47, True) + chain(48, 59, True) + chain(60, 67, True)
    )  # fmt: skip
    groups = {
        "jaw": tuple(range(0, 17)),
        "brows": tuple(range(17, 27)),
        "nose": tuple(range(27, 36)),
        "eyes": tuple(range(36, 48)),
        "mouth": tuple(range(48, 68)),
    }
    return LandmarkSpec("face", tuple(names), tuple(flip_pairs), (36, 45), tuple(skeleton), groups)


def _pose_mpii_16() -> LandmarkSpec:
    names = (
        "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
        "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
    )  # fmt: skip
    flip_pairs = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
    skeleton = (
        (0, 1), (1, 2), (2, 6), (3, 6), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
        (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15),
    )  # fmt: skip
    # The columns of the published MPII table (the official MATLAB script, HRNet): "head" is the head top, every
    # other column averages its right and left joint (`cunet.evaluate.scoring.MPII_GROUPS`).
    groups = {
        "head": (9,),
        "shoulder": (12, 13),
        "elbow": (11, 14),
        "wrist": (10, 15),
        "hip": (2, 3),
        "knee": (1, 4),
        "ankle": (0, 5),
    }
    return LandmarkSpec("pose", names, flip_pairs, (), skeleton, groups)


#: The 68-point iBUG / 300-W face markup.
FACE_68 = _face_68()
#: The 16 MPII Human Pose joints.
POSE_MPII_16 = _pose_mpii_16()

_SPECS = {"face": FACE_68, "pose": POSE_MPII_16}


def get_spec(task: str) -> LandmarkSpec:
    """The landmark spec of `task` ("face" or "pose"); a `CunetError` for any other task."""
    try:
        return _SPECS[task]
    except (KeyError, TypeError):
        raise CunetError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}") from None

"""Landmark specs: flip tables are involutions that swap left/right names, groups and norm points are right."""

import json

import numpy as np
import pytest

from cunet.data.spec import FACE_68, POSE_MPII_16, Task, get_spec
from cunet.errors import CunetError


def _mirror_name(name: str) -> str:
    if name.startswith("r_"):
        return "l_" + name[2:]
    if name.startswith("l_"):
        return "r_" + name[2:]
    return name


@pytest.mark.parametrize("spec", [FACE_68, POSE_MPII_16], ids=lambda s: s.task)
def test_flip_permutation_is_an_involution_swapping_left_and_right(spec):
    perm = spec.flip_permutation
    assert sorted(perm.tolist()) == list(range(spec.num_landmarks))
    np.testing.assert_array_equal(perm[perm], np.arange(spec.num_landmarks))
    for i, j in enumerate(perm):
        assert spec.names[j] == _mirror_name(spec.names[i]), (i, spec.names[i], spec.names[j])


def test_face_flip_pairs_follow_the_ibug_layout():
    perm = FACE_68.flip_permutation
    expected = {0: 16, 7: 9, 17: 26, 21: 22, 31: 35, 32: 34, 36: 45, 37: 44, 38: 43, 39: 42, 40: 47, 41: 46,
                48: 54, 49: 53, 50: 52, 55: 59, 56: 58, 60: 64, 61: 63, 65: 67}
    for a, b in expected.items():
        assert perm[a] == b and perm[b] == a
    midline = [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]
    assert [int(perm[i]) for i in midline] == midline
    assert FACE_68.norm_points == (36, 45)
    assert FACE_68.num_landmarks == 68
    assert sorted(i for g in FACE_68.groups.values() for i in g) == list(range(68))


def test_flipping_a_face_twice_gives_it_back_and_once_keeps_eyes_on_their_side():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 100, (68, 2))
    pts[36], pts[45] = (20.0, 40.0), (80.0, 40.0)  # subject's right eye outer corner is on the image left
    flipped = np.column_stack([99 - pts[:, 0], pts[:, 1]])[FACE_68.flip_permutation]
    assert flipped[36, 0] < flipped[45, 0]
    again = np.column_stack([99 - flipped[:, 0], flipped[:, 1]])[FACE_68.flip_permutation]
    np.testing.assert_allclose(again, pts)


def test_pose_spec_uses_mpii_joint_order():
    assert POSE_MPII_16.names[:6] == ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle")
    assert POSE_MPII_16.names[9] == "head_top" and POSE_MPII_16.names[15] == "l_wrist"
    assert POSE_MPII_16.norm_points == ()
    assert set(POSE_MPII_16.groups) == {"head", "shoulder", "elbow", "wrist", "hip", "knee", "ankle"}
    assert int(POSE_MPII_16.flip_permutation[6]) == 6 and int(POSE_MPII_16.flip_permutation[12]) == 13


def test_get_spec():
    assert get_spec("face") is FACE_68 and get_spec("pose") is POSE_MPII_16
    with pytest.raises(CunetError, match="unknown task 'hand'"):
        get_spec("hand")


def test_task_knows_its_metric_and_which_way_is_better() -> None:
    assert (Task("face").metric, Task("pose").metric) == ("nme", "pckh@0.5")
    assert Task.FACE == "face" and json.dumps([Task.POSE]) == '["pose"]'
    assert Task.FACE.better(3.0, 4.0) and not Task.FACE.better(4.0, 3.0)  # NME: an error, lower wins
    assert Task.POSE.better(80.0, 70.0) and not Task.POSE.better(70.0, 80.0)  # PCKh: correct joints, higher wins
    assert (Task.FACE.loss(0.5), Task.POSE.loss(0.5)) == (0.5, -0.5)  # NME +0.5 is worse, PCKh +0.5 is better
    assert Task.of_metric("pckh@0.5") is Task.POSE
    with pytest.raises(CunetError, match="unknown metric 'auc'"):
        Task.of_metric("auc")

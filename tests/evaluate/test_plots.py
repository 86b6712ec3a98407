"""The plots are real, readable PNGs written atomically (no stray temporary files)."""

from __future__ import annotations

import cv2
import numpy as np

from cunet.evaluate.scoring import MPII_GROUPS, MPII_JOINTS
from cunet.evaluate.plots import plot_ced, plot_pckh


def _png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 300
    assert image.std() > 10  # something was drawn
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_plot_ced_several_models(tmp_path):
    rng = np.random.default_rng(0)
    curves = {"fp32": rng.gamma(4, 0.009, 200), "int8": rng.gamma(4, 0.011, 200)}
    curves["int8"][:3] = np.nan
    plot_ced(curves, tmp_path / "ced.png")
    _png(tmp_path / "ced.png")


def test_plot_pckh_per_joint_and_per_group(tmp_path):
    per_joint = {"fp32": dict.fromkeys(MPII_JOINTS, 0.9), "int8": dict.fromkeys(MPII_JOINTS, 0.85)}
    per_joint["int8"]["pelvis"] = float("nan")
    plot_pckh(per_joint, tmp_path / "joints" / "pckh.png")
    _png(tmp_path / "joints" / "pckh.png")
    plot_pckh({"fp32": dict.fromkeys(MPII_GROUPS, 0.7)}, tmp_path / "groups" / "pckh.png")
    _png(tmp_path / "groups" / "pckh.png")

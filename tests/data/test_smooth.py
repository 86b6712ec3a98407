"""The One-Euro filter against values worked out by hand from Casiez et al.'s equations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cunet.data.smooth import D_CUTOFF, OneEuroFilter, SmoothConfig, make_filter


def _alpha(cutoff: float, dt: float) -> float:
    return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff) / dt)


def test_first_sample_passes_through_and_reset_forgets() -> None:
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    x = np.array([[3.0, 4.0]])
    assert np.array_equal(f(x, 0.0), x)
    f(np.array([[13.0, 4.0]]), 0.1)
    f.reset()
    assert np.array_equal(f(np.array([[7.0, 7.0]]), 5.0), [[7.0, 7.0]])


def test_second_sample_by_hand_without_beta() -> None:
    # beta 0: a plain low-pass at min_cutoff. dt = 0.04 s, fc = 1 Hz: alpha = 1 / (1 + (1 / 2π) / 0.04)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    f(np.array([0.0]), 0.0)
    a = 1.0 / (1.0 + 1.0 / (2 * math.pi) / 0.04)
    assert a == pytest.approx(0.200849, abs=1e-6)
    assert f(np.array([10.0]), 0.04)[0] == pytest.approx(10.0 * a)


def test_beta_opens_the_cutoff_with_speed() -> None:
    # x: 0 → 10 in dt = 0.1 s; speed 100/s, its estimate alpha_d * 100; in object sizes (scale 50): / 50
    f = OneEuroFilter(min_cutoff=1.0, beta=2.0)
    f(np.array([0.0]), 0.0, scale=50.0)
    dt = 0.1
    speed = _alpha(D_CUTOFF, dt) * 100.0 / 50.0
    expected = 10.0 * _alpha(1.0 + 2.0 * speed, dt)
    assert f(np.array([10.0]), dt, scale=50.0)[0] == pytest.approx(expected, rel=1e-12)
    # the same step at a larger scale is a slower move for the filter: smoothed more
    g = OneEuroFilter(min_cutoff=1.0, beta=2.0)
    g(np.array([0.0]), 0.0, scale=500.0)
    assert g(np.array([10.0]), dt, scale=500.0)[0] < expected


def test_each_coordinate_has_its_own_state() -> None:
    f = OneEuroFilter(min_cutoff=1.0, beta=1.0)
    f(np.zeros((2, 2)), 0.0)
    out = f(np.array([[10.0, 0.0], [0.0, 0.0]]), 0.1)
    assert out[0, 0] > 0 and np.all(out.ravel()[1:] == 0.0)


def test_still_input_stays_still_and_non_finite_frames_pass() -> None:
    f = OneEuroFilter()
    x = np.array([[1.5, 2.5]])
    for i in range(5):
        assert np.array_equal(f(x, i / 25), x)
    bad = np.array([[np.nan, 1.0]])
    assert np.isnan(f(bad, 0.3)[0, 0])
    assert np.array_equal(f(x, 0.4), x)  # the NaN frame left the state alone


def test_time_must_increase_and_settings_are_checked() -> None:
    f = OneEuroFilter()
    f(np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="time must increase"):
        f(np.zeros(2), 1.0)
    with pytest.raises(ValueError):
        SmoothConfig("one-euro", min_cutoff=0.0)
    with pytest.raises(ValueError):
        SmoothConfig("one-euro", beta=-1.0)
    assert make_filter(SmoothConfig()) is None
    assert SmoothConfig("one-euro", 2.0, 3.0).to_dict() == {"method": "one-euro", "min_cutoff": 2.0, "beta": 3.0,
                                                            "d_cutoff": D_CUTOFF}

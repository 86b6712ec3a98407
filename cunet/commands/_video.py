"""The options every video-aware command shares: `--smooth`, `--smooth-min-cutoff`, `--smooth-beta`."""

from __future__ import annotations

from typing import Any, Callable

import click

__all__ = ["smooth_options", "smooth_config"]


def smooth_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the three smoothing options (parameters `smooth`, `smooth_min_cutoff`, `smooth_beta`)."""
    from cunet.data.smooth import DEFAULT_BETA, DEFAULT_MIN_CUTOFF, D_CUTOFF

    f = click.option("--smooth-beta", type=click.FloatRange(min=0.0), default=DEFAULT_BETA, show_default=True,
                     help="One-Euro speed coefficient, per face size per second: higher follows fast moves "
                          "with less lag.")(f)
    f = click.option("--smooth-min-cutoff", type=click.FloatRange(min=0.0, min_open=True),
                     default=DEFAULT_MIN_CUTOFF, show_default=True,
                     help="One-Euro cutoff in Hz when the face holds still: lower removes more jitter, "
                          f"and lags more (the speed's cutoff is fixed at {D_CUTOFF:g} Hz).")(f)
    f = click.option("--smooth", type=click.Choice(["none", "one-euro"]), default="none", show_default=True,
                     help="Videos: smooth landmarks over time with the One-Euro filter (Casiez et al. 2012). "
                          "Still images are never smoothed.")(f)
    return f


def smooth_config(smooth: str, min_cutoff: float, beta: float) -> Any:
    """The `cunet.data.smooth.SmoothConfig` of the three options."""
    from cunet.data.smooth import SmoothConfig

    return SmoothConfig(smooth, min_cutoff, beta)

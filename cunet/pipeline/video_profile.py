"""`cunet profile MODEL --video V`: where a video frame's time goes, stage by stage, and end-to-end frames/s.

The video is run through the same `Tracker` as `cunet predict` (detector on the first frame and when the face is
lost, when `cunet[detect]` is installed; else the whole frame), and every frame's time is split into the
`cunet.pipeline.track.STAGES`: decode (reading the frame), detect/track (the detector, or the next box from the
landmarks), crop (warp + normalise), inference, landmarks (heatmaps → points), smooth. The first `warmup` frames
are run but not timed (allocations, the first detection). End-to-end frames/s is timed frames / their summed
wall time. Machines are noisy: compare ratios measured in one run.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

from cunet.data.smooth import SmoothConfig
from cunet.errors import CunetError
from cunet.pipeline.track import STAGES, PredictorLandmarker, TrackConfig, Tracker, TrackSources

__all__ = ["profile_video", "stage_rows"]


def profile_video(model_path: str | Path, video: str | Path, backend: str = "auto", threads: int | None = None,
                  warmup: int = 5, smooth: SmoothConfig | None = None, detect: bool = True,
                  fps: float | None = None) -> dict[str, Any]:
    """Track `video` with the model and time each stage per frame (module docstring).

    Returns:
        {"model", "video", "backend", "provider", "frames" (timed), "warmup", "detector", "smooth",
        "redetections", "stages": {stage: latency stats in ms (p50, p90, p99, mean, std, min, max)},
        "share_pct": {stage: % of the summed time}, "total_ms": stats, "fps", "environment"}.

    Raises:
        CunetError: an unreadable model or video, fewer frames than `warmup` + 1.
    """
    from cunet.data.video import open_video
    from cunet.evaluate.profile import environment, latency_stats
    from cunet.runtime import open_predictor
    from cunet.runtime.detector import detector_available, open_detector

    smooth = smooth or SmoothConfig(method="one-euro")
    with open_predictor(model_path, backend=backend, threads=threads) as p:
        use_detector = detect and p.meta.task == "face" and detector_available()
        detector = open_detector() if use_detector else None
        tracker = Tracker(PredictorLandmarker(p), TrackSources(detector=detector), TrackConfig(smooth=smooth))
        gc.collect()
        gc.disable()
        try:
            with open_video(video, fps) as reader:
                it = iter(reader)
                while True:
                    t0 = time.perf_counter_ns()
                    frame = next(it, None)
                    if frame is None:
                        break
                    tracker.step(frame, time.perf_counter_ns() - t0)
        finally:
            gc.enable()
        ran = {"backend": p.backend, "provider": p.provider}
    times = tracker.times.array()[warmup:]
    if len(times) == 0:
        raise CunetError(f"{video}: {len(tracker.times.frames)} frame(s), but {warmup} are for warm-up; give a "
                         "longer video or a smaller --warmup")
    total = times.sum(axis=1)
    summed = max(int(times.sum()), 1)
    return {
        "model": str(model_path), "video": str(video), **ran, "frames": int(len(times)), "warmup": warmup,
        "detector": None if detector is None else detector.name, "smooth": smooth.to_dict(),
        "redetections": tracker.redetections,
        "stages": {s: latency_stats(times[:, i]) for i, s in enumerate(STAGES)},
        "share_pct": {s: 100.0 * float(times[:, i].sum()) / summed for i, s in enumerate(STAGES)},
        "total_ms": latency_stats(total), "fps": float(len(times) / (total.sum() / 1e9)),
        "environment": environment(),
    }


def stage_rows(report: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    """(stage, p50 ms, mean ms, share %) rows of a `profile_video` report, then the total."""
    rows = [(s, report["stages"][s]["p50"], report["stages"][s]["mean"], report["share_pct"][s]) for s in STAGES]
    rows.append(("total", report["total_ms"]["p50"], report["total_ms"]["mean"], 100.0))
    return rows


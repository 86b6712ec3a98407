"""Interleaved CPU latency of ONNX models, opened exactly as cunet opens them (`cunet.runtime.ort_backend`).

Shared by the bench scripts. Runs alternate between the models call by call, so load changes on a shared machine
hit every model alike: compare ratios from one call of `interleaved_latency`, never absolute times across runs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def interleaved_latency(models: dict[str, Path], size: int, threads: int, iters: int,
                        warmup: int = 3) -> dict[str, dict]:
    """{name: {"p50_ms", "p90_ms"}} of batch-1 `size`² inputs on the ONNX Runtime CPU provider."""
    from cunet.runtime.meta import read_onnx_meta
    from cunet.runtime.ort_backend import OrtBackend

    backends = {}
    for k, p in models.items():
        meta = read_onnx_meta(p)  # a low-bit model gets cunet's low-bit session settings, as the Predictor does
        backends[k] = OrtBackend(Path(p), "ort-cpu", threads, precision=meta.precision, lowbit=meta.quant is not None)
        backends[k].open()
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    for b in backends.values():  # allocations and kernel selection happen on the first runs
        for _ in range(warmup):
            b.infer(x)
    times: dict[str, list[float]] = {k: [] for k in backends}
    for _ in range(iters):
        for k, b in backends.items():
            t = time.perf_counter_ns()
            b.infer(x)
            times[k].append((time.perf_counter_ns() - t) / 1e6)
    return {k: {"p50_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90))} for k, v in times.items()}

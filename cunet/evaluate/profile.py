"""Latency, throughput and memory of one model on one backend, as a JSON-ready dict two machines can compare.

The timed path is the Predictor's own (`preprocess` → `predict_heatmaps` → `postprocess`), so the numbers are what
an application sees, split by stage to show where time goes. Inputs are fixed-seed random 640x480 BGR frames
(preprocessing cost depends on the frame size, inference and decoding do not depend on content). Timing uses
`time.perf_counter_ns` with the garbage collector paused; on CUDA backends the device time of inference comes from
CUDA events (summed over the chunks a batch larger than an engine's profile is split into). Memory is reported as
the figures `cunet.evaluate.memory` defines (their definitions travel in the report): `load_peak_mb` (the process up
to the first inference), `run_peak_mb` per batch size (the timed runs only) and `device_peak_mb` (this process's GPU
memory, None where it cannot be attributed). The older keys stay: `peak_rss_mb` is VmHWM after the timed runs (equal
to `run_peak_mb` where the reset worked, `peak_rss_reset` says), `device_memory_mb` NVML's figure or else the change
of the device's used memory since open (`device_memory_scope` says which).
A CPU run never probes for CUDA (that probe can import PyTorch, whose memory would then be counted).
These machines are noisy: compare ratios measured in one run, never absolute times across runs.
"""

from __future__ import annotations

import gc
import os
import platform
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cunet.errors import CunetError
from cunet.evaluate.memory import DEFINITIONS, device_process_mb, peak_rss_mb, reset_peak_rss

__all__ = ["profile", "latency_stats", "environment", "peak_rss_mb"]

#: A VGA frame: a typical camera/detector input the crop is taken from.
DEFAULT_IMAGE_SIZE = (480, 640)
STAGES = ("total", "preprocess", "inference", "decode")


def latency_stats(samples_ns: Sequence[int] | np.ndarray) -> dict[str, float]:
    """p50 / p90 / p99 / mean / std / min / max in milliseconds of durations given in nanoseconds."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(ms.mean()),
        "std": float(ms.std()),
        "min": float(ms.min()),
        "max": float(ms.max()),
    }


def _version(*dists: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for d in dists:
        try:
            return version(d)
        except PackageNotFoundError:
            continue
    return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str = "cpu") -> dict[str, Any]:
    """What two reports need in common to be comparable: the machine, its hardware and library versions.

    `host` (the network name, no user) names the report's column in `cunet compare`; bench and profile's `--label`
    adds a `label` that replaces it there. Versions come from package metadata, so TensorRT is never imported here.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "host": platform.node() or None,
        "device": device,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cunet": _version("cunet"),
        "numpy": _version("numpy"),
        "opencv": _version("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
        "onnxruntime": _version("onnxruntime", "onnxruntime-gpu"),
        "torch": _version("torch"),
        "tensorrt": _version("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
    }


def _cuda_index(path: Path, backend: str, device: str | None) -> int | None:
    """The CUDA device a run may use (None: a CPU run, or no CUDA device visible). Runs that cannot use CUDA never
    probe for it: the probe falls back to PyTorch, whose import alone would be counted in the run's memory."""
    from cunet.runtime import cuda
    from cunet.runtime.ort_backend import CUDA, TRT, ort_available_providers

    cpu_only = (device == "cpu" or backend in ("ort-cpu", "openvino") or path.suffix.lower() == ".xml"
                or (backend == "auto" and path.suffix.lower() == ".onnx"
                    and not {CUDA, TRT} & set(ort_available_providers())))
    if cpu_only or not cuda.available():
        return None
    return cuda.device_index(device)


def _cuda_info(provider: str | None, index: int | None) -> tuple[str, bool]:
    on_cuda = provider is not None and ("cuda" in provider.lower() or "tensorrt" in provider.lower())
    if not on_cuda or index is None:
        return "cpu", False
    from cunet.runtime import cuda

    return f"cuda:{index} ({cuda.properties(index).name})", True


def _device_used(index: int) -> int:
    from cunet.runtime import cuda

    free, total = cuda.memory_info(index)
    return total - free


def _device_memory(index: int, baseline_used: int) -> tuple[float, str]:
    """This process's device memory in MB and how it was measured: NVML's per-process figure where available, else
    the change of the device's used memory since before the model was opened (other processes' changes included)."""
    from cunet.runtime import cuda

    own = cuda.process_memory(index)
    if own is not None:
        return own / 1e6, "this process (NVML)"
    return (_device_used(index) - baseline_used) / 1e6, "change of the device's used memory since open"


def profile(
    model_path: str | os.PathLike,
    backend: str = "auto",
    batch_sizes: Sequence[int] = (1,),
    warmup: int = 10,
    iters: int = 50,
    threads: int | None = None,
    device: str | None = None,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
) -> dict[str, Any]:
    """Time the whole predict path and its stages for each batch size.

    Args:
        model_path: `.pt`, `.onnx` or `.engine`.
        backend: as `cunet.runtime.open_predictor`.
        batch_sizes: images per `predict` call, each profiled separately.
        warmup: untimed calls per batch size (allocations, kernel selection, TensorRT EP engine builds).
        iters: timed calls per batch size.
        threads: CPU inference threads (None: the runtime's default).
        device: as `open_predictor`.
        image_size: (H, W) of the random BGR frames.
        seed: seed of the random frames.

    Returns:
        {"model", "model_bytes", "format", "task", "precision", "input_size", "num_landmarks", "backend",
        "provider", "device" (where it ran: "cpu", "cuda:N", an OpenVINO device), "provider_note", "threads",
        "warmup", "iters", "image_size", "load_peak_mb", "memory_definitions", "results": [{"batch",
        "latency_ms": {stage: stats}, "device_inference_ms": stats | None, "throughput_ips", "run_peak_mb",
        "device_peak_mb", "peak_rss_mb", "peak_rss_reset", "device_memory_mb", "device_memory_scope"}],
        "environment"}, where stage is total / preprocess / inference / decode and stats has p50, p90, p99, mean,
        std, min, max in milliseconds; the memory keys are defined in `memory_definitions`.
    """
    from cunet.runtime import open_predictor
    from cunet.runtime.ov_backend import ir_files_bytes

    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise CunetError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    if iters < 1 or warmup < 0:
        raise CunetError(f"need iters >= 1 and warmup >= 0, got iters={iters}, warmup={warmup}")
    path = Path(model_path)
    rng = np.random.default_rng(seed)
    results = []
    index = _cuda_index(path, backend, device)
    baseline = _device_used(index) if index is not None else 0
    load_peak: float | None = None
    device_load: float | None = None
    with open_predictor(path, backend=backend, threads=threads, device=device) as p:
        device_name, on_cuda = _cuda_info(p.provider, index)
        for b in (int(v) for v in batch_sizes):
            images = [rng.integers(0, 256, (*image_size, 3), dtype=np.uint8) for _ in range(b)]
            for _ in range(warmup if load_peak is not None else max(warmup, 1)):
                p.predict(images)
                if load_peak is None:  # the first inference returned: everything up to here is "load"
                    load_peak = peak_rss_mb()
                    device_load = device_process_mb(index) if on_cuda and index is not None else None
            reset = reset_peak_rss()
            times = np.zeros((iters, 4), dtype=np.int64)
            device_ms: list[float] = []
            gc.collect()
            gc.disable()
            try:
                for i in range(iters):
                    t0 = time.perf_counter_ns()
                    x, affines = p.preprocess(images)
                    t1 = time.perf_counter_ns()
                    heatmaps = p.predict_heatmaps(x)
                    t2 = time.perf_counter_ns()
                    p.postprocess(heatmaps, affines)
                    t3 = time.perf_counter_ns()
                    times[i] = (t3 - t0, t1 - t0, t2 - t1, t3 - t2)
                    if p.device_ms is not None:
                        device_ms.append(p.device_ms)
            finally:
                gc.enable()
            latency = {stage: latency_stats(times[:, j]) for j, stage in enumerate(STAGES)}
            run_peak = peak_rss_mb()
            memory, scope = _device_memory(index, baseline) if on_cuda and index is not None else (None, None)
            device_run = device_process_mb(index) if on_cuda and index is not None else None
            samples = [m for m in (device_load, device_run) if m is not None]
            results.append(
                {
                    "batch": b,
                    "latency_ms": latency,
                    "device_inference_ms": latency_stats(np.asarray(device_ms) * 1e6) if device_ms else None,
                    "throughput_ips": b * 1000.0 / latency["total"]["mean"],
                    "run_peak_mb": run_peak if reset else None,
                    "device_peak_mb": max(samples) if samples else None,
                    "peak_rss_mb": run_peak,
                    "peak_rss_reset": reset,
                    "device_memory_mb": memory,
                    "device_memory_scope": scope,
                }
            )
        return {
            "model": str(path),
            "model_bytes": ir_files_bytes(path),
            "format": path.suffix.lstrip(".").lower(),
            "task": p.meta.task,
            "precision": p.meta.precision,
            "input_size": p.meta.input_size,
            "num_landmarks": p.meta.num_landmarks,
            "backend": p.backend,
            "provider": p.provider,
            "device": p.device,
            "provider_note": p.note,
            "threads": threads,
            "warmup": warmup,
            "iters": iters,
            "image_size": list(image_size),
            "load_peak_mb": load_peak,
            "memory_definitions": {k: v for k, v in DEFINITIONS.items() if k != "peak_mb"},
            "results": results,
            "environment": environment(device_name),
        }

"""Where inference time goes, by operator type: `cunet profile --ops`.

An INT8 model is faster only if its integer convolutions dominate and the float work around them (BatchNorm, Q/DQ
pairs, layout reorders, concatenations) stays small; this breakdown shows which. Two sources, one shape of result:

- ONNX Runtime (`.onnx`): the session's own profiler (`SessionOptions.enable_profiling`), whose JSON trace holds
  one "Node" event per kernel run with its operator type and duration; `end_profiling` closes the trace, which is
  read and deleted (it is written into a temporary folder, never beside the model).
- OpenVINO (`.xml` IR, or any model with `--backend openvino`): the compiled model's per-layer performance
  counters (`PERF_COUNT`, `InferRequest.get_profiling_info`), read after every timed request; layers the plugin
  fused away report status NOT_RUN and no time. Operator types are OpenVINO's (Convolution, FakeQuantize ...).

Warm-up runs are left out (ONNX Runtime: node events before the end of the last warm-up run). Shares are of the
summed kernel time, so they add up to 100 % (up to rounding); `kernel_ms` beside the engine's own per-run time
(`run_ms`) shows how much of a run the kernels cover (the rest is the engine's scheduling and copies). Kernel times
are per run (the mean over the timed runs). The input is fixed-seed random: inference time does not depend on it.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from cunet.errors import CunetError
from cunet.tempdirs import temp_dir

__all__ = ["ops_profile", "OPENVINO_HINT"]

#: What a user without OpenVINO is told.
OPENVINO_HINT = "pip install 'cunet[openvino]'"


def ops_profile(
    model_path: str | os.PathLike,
    engine: str = "onnxruntime",
    batch: int = 1,
    warmup: int = 5,
    iters: int = 20,
    threads: int | None = None,
    device: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Time per operator type of one model at one batch size.

    Args:
        model_path: `.onnx` (either engine) or OpenVINO `.xml` (engine "openvino").
        engine: "onnxruntime" (CPU provider) or "openvino".
        batch: images per run.
        warmup: untimed runs first.
        iters: timed runs.
        threads: CPU inference threads (None: the engine's default).
        device: OpenVINO device ("CPU" by default); ignored by ONNX Runtime.
        seed: seed of the random input.

    Returns:
        {"engine", "batch", "iters", "source", "run_ms" (the engine's mean time per run), "kernel_ms" (summed kernel
        time per run), "op_types": [{"op_type", "ms" (per run), "share_pct", "nodes" (distinct nodes/layers)}]
        (largest first)}.

    Raises:
        CunetError: missing file, an engine that is not installed (one line naming the extra), a model it cannot
            load, or bad counts.
    """
    path = Path(model_path)
    if not path.is_file():
        raise CunetError(f"{path}: no such model file")
    if batch < 1 or iters < 1 or warmup < 0:
        raise CunetError(f"need batch >= 1, iters >= 1 and warmup >= 0, got {batch}, {iters}, {warmup}")
    if engine == "onnxruntime":
        if path.suffix.lower() != ".onnx":
            raise CunetError(f"{path}: ONNX Runtime profiles .onnx models; use --backend openvino for OpenVINO IR")
        per_op, run_ms = _ort_ops(path, batch, warmup, iters, threads, seed)
        source = "onnxruntime profiler"
    elif engine == "openvino":
        per_op, run_ms = _openvino_ops(path, batch, warmup, iters, threads, device or "CPU", seed)
        source = "openvino PERF_COUNT"
    else:
        raise CunetError(f"unknown op-profiling engine {engine!r}; choose onnxruntime or openvino")
    kernel_us = sum(us for us, _ in per_op.values())
    if kernel_us <= 0:
        raise CunetError(f"{path}: {source} recorded no kernel time")
    rows = [
        {"op_type": op, "ms": us / iters / 1000.0, "share_pct": 100.0 * us / kernel_us, "nodes": len(nodes)}
        for op, (us, nodes) in per_op.items()
    ]
    rows.sort(key=lambda r: -r["ms"])
    return {
        "engine": engine,
        "batch": batch,
        "iters": iters,
        "source": source,
        "run_ms": run_ms,
        "kernel_ms": kernel_us / iters / 1000.0,
        "op_types": rows,
    }


def _input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _ort_ops(
    path: Path, batch: int, warmup: int, iters: int, threads: int | None, seed: int
) -> tuple[dict[str, tuple[float, set[str]]], float]:
    import onnxruntime as ort

    from cunet.runtime.meta import read_onnx_meta
    from cunet.runtime.ort_backend import LOWBIT_CPU_CONFIG

    meta = read_onnx_meta(path)
    with temp_dir("ops") as tmp:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.inter_op_num_threads = 1  # as the Predictor opens it (cunet.runtime.ort_backend)
        if threads is not None:
            opts.intra_op_num_threads = threads
        if meta.quant is not None:
            for key, value in LOWBIT_CPU_CONFIG.items():
                opts.add_session_config_entry(key, value)
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own Fail/InvalidGraph types for unusable files
            detail = str(e).splitlines()[0][:160] if str(e) else ""
            raise CunetError(f"{path}: ONNX Runtime cannot load it ({type(e).__name__}: {detail})") from e
        inp = session.get_inputs()[0]
        dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        x = _input((batch, 3, meta.input_size, meta.input_size), seed).astype(dtype)
        for _ in range(warmup + iters):
            session.run(None, {inp.name: x})
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text(encoding="utf-8"))
    return _parse_ort_trace(events, warmup, iters)


def _parse_ort_trace(
    events: list[dict[str, Any]], warmup: int, iters: int
) -> tuple[dict[str, tuple[float, set[str]]], float]:
    """({op type: (kernel µs over the timed runs, node names)}, mean ms per timed run) from an ORT trace."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    if len(runs) != warmup + iters:
        raise CunetError(f"the ONNX Runtime trace holds {len(runs)} runs, expected {warmup + iters}")
    start = runs[warmup - 1]["ts"] + runs[warmup - 1]["dur"] if warmup else -1
    per_op: dict[str, list] = defaultdict(lambda: [0.0, set()])
    for e in events:
        if e.get("cat") != "Node" or e["ts"] < start or not e.get("name", "").endswith("_kernel_time"):
            continue
        op = e.get("args", {}).get("op_name", "?")
        per_op[op][0] += float(e["dur"])
        per_op[op][1].add(e["name"][: -len("_kernel_time")])
    run_ms = float(np.mean([r["dur"] for r in runs[warmup:]])) / 1000.0
    return {k: (v[0], v[1]) for k, v in per_op.items()}, run_ms


def _openvino_ops(
    path: Path, batch: int, warmup: int, iters: int, threads: int | None, device: str, seed: int
) -> tuple[dict[str, tuple[float, set[str]]], float]:
    try:
        import openvino as ov
    except ImportError:
        raise CunetError(f"{path}: OpenVINO is not installed ({OPENVINO_HINT})") from None
    import time

    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except RuntimeError as e:
        raise CunetError(f"{path}: OpenVINO cannot read it ({str(e).splitlines()[0][:160]})") from None
    shape = model.input(0).get_partial_shape()
    dims = [batch if i == 0 else (d.get_length() if d.is_static else -1) for i, d in enumerate(shape)]
    if len(dims) != 4 or min(dims) < 1:
        raise CunetError(f"{path}: expected a [N, 3, S, S] input with a static size, got {shape}")
    config: dict[str, Any] = {"PERF_COUNT": "YES", "PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        compiled = core.compile_model(model, device, config)
    except RuntimeError as e:
        raise CunetError(f"{path}: OpenVINO cannot compile it for {device} ({str(e).splitlines()[0][:160]})") from None
    request = compiled.create_infer_request()
    x = _input(tuple(dims), seed)
    for _ in range(warmup):
        request.infer({0: x})
    per_op: dict[str, list] = defaultdict(lambda: [0.0, set()])
    total_ns = 0
    for _ in range(iters):
        t = time.perf_counter_ns()
        request.infer({0: x})
        total_ns += time.perf_counter_ns() - t
        for info in request.get_profiling_info():
            if info.status != info.Status.EXECUTED:
                continue
            per_op[info.node_type][0] += info.real_time.total_seconds() * 1e6
            per_op[info.node_type][1].add(info.node_name)
    return {k: (v[0], v[1]) for k, v in per_op.items()}, total_ns / iters / 1e6

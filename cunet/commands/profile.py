"""`cunet profile`: latency percentiles, throughput and memory of a .pt, .onnx or .engine model on one backend."""

from __future__ import annotations

from pathlib import Path

import click

from cunet.commands._common import console, emit_json, json_option, print_table

__all__ = ["profile"]

BACKEND_CHOICES = ("auto", "torch", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt", "openvino")


def _batches(ctx, param, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 1,8, got {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"batch sizes must be positive, got {value!r}")
    return sizes


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True,
              help="Runtime (auto: by file type; ONNX prefers TensorRT EP > CUDA EP > CPU; .xml: openvino).")
@click.option("--batch", "batch", default="1", show_default=True, callback=_batches,
              help="Comma-separated batch sizes, each profiled separately.")
@click.option("--warmup", default=10, show_default=True, type=int, help="Untimed calls per batch size.")
@click.option("--iters", default=50, show_default=True, type=int, help="Timed calls per batch size.")
@click.option("--threads", type=int, help="CPU inference threads (default: the runtime's own).")
@click.option("--device", help="cpu, cuda or cuda:N (torch default: CUDA when available); openvino: CPU, GPU, NPU ...")
@click.option("--label", help="Name this machine in the report (`cunet compare` column; default: the host name).")
@click.option("--ops", is_flag=True,
              help="Also time inference per operator type (share of kernel time): ONNX Runtime's profiler for "
                   ".onnx, OpenVINO's per-layer counters for .xml or --backend openvino.")
@click.option("--video", type=click.Path(exists=True, path_type=Path),
              help="Profile the video pipeline on this video (or frame folder) instead: per-stage time per frame "
                   "(decode, detect/track, crop, inference, landmarks, smooth) and end-to-end frames/s.")
@json_option
def profile(model, backend, batch, warmup, iters, threads, device, label, ops, video, as_json):
    """Time MODEL's whole predict path (crop → inference → decode) on random 640x480 frames.

    \b
    Reports p50/p90/p99/mean/std latency in ms (total and per stage), images/s, memory (load peak: the
    process up to the first inference; run peak: the timed runs; on CUDA the process's device memory, or
    none where it cannot be attributed) and CUDA-event inference time, plus an environment block (CPU,
    library versions) so reports from two machines or backends can be compared. The JSON carries the memory
    definitions. Machines are noisy: compare ratios within a run.

    \b
    --ops adds, per batch size, the time of each operator type (Conv, QuantizeLinear, Concat ...) per run and its
    share of the summed kernel time, from ONNX Runtime's profiler (CPU provider) or OpenVINO's performance
    counters: the breakdown that shows why an INT8 model is or is not faster than FP32 (JSON key "ops").

    \b
    Examples:
      cunet profile face.onnx
      cunet profile face.onnx --backend ort-cpu --batch 1,8 --threads 2 --json
      cunet profile runs/face/best.pt --iters 20
      cunet profile face.int8.onnx --ops --threads 2
      cunet profile face.onnx --video clip.mp4 --threads 2      # the video pipeline, stage by stage
    """
    from cunet.evaluate.profile import profile as run_profile

    if video is not None:
        _profile_video(model, video, backend, threads, warmup, label, as_json)
        return

    report = run_profile(model, backend=backend, batch_sizes=batch, warmup=warmup, iters=iters, threads=threads,
                         device=device)
    if label:
        report["environment"]["label"] = label
    if ops:
        report["ops"] = _op_profiles(model, backend, batch, warmup, iters, threads, device)
    if as_json:
        emit_json(report)
        return
    results = report["results"]
    total = [r["latency_ms"]["total"] for r in results]
    rows = [(f"total {k} (ms)", *[t[k] for t in total]) for k in ("p50", "p90", "p99", "mean", "std")]
    rows += [(f"{stage} p50 (ms)", *[r["latency_ms"][stage]["p50"] for r in results])
             for stage in ("preprocess", "inference", "decode")]
    rows.append(("images / s", *[r["throughput_ips"] for r in results]))
    rows.append(("load peak (MB)", *[report["load_peak_mb"] for _ in results]))
    rows.append(("run peak (MB)", *[r["run_peak_mb"] for r in results]))
    if any(r["device_inference_ms"] for r in results):
        rows.append(("device inference p50 (ms)", *[(r["device_inference_ms"] or {}).get("p50") for r in results]))
        rows.append(("device peak (MB)", *[r["device_peak_mb"] for r in results]))
    env = report["environment"]
    print_table(
        f"{report['model']} · {report['precision']} · {report['backend']} ({report['provider']}) on "
        f"{report['device']}",
        ["", *[f"batch {r['batch']}" for r in results]],
        rows,
    )
    threads = report["threads"] or "default"
    console().print(f"{env['device']} · {env['cpu']} · {env['cpus_usable']} CPUs usable · threads {threads}")
    for r in report.get("ops", []):
        print_table(
            f"per op type · {r['source']} · batch {r['batch']} · "
            f"kernels {r['kernel_ms']:.3g} of {r['run_ms']:.3g} ms",
            ["op type", "nodes", "ms / run", "share %"],
            [(o["op_type"], o["nodes"], o["ms"], o["share_pct"]) for o in r["op_types"]],
        )


def _op_profiles(model, backend, batch, warmup, iters, threads, device) -> list[dict]:
    from pathlib import Path

    from cunet.errors import CunetError
    from cunet.evaluate.ops_profile import ops_profile

    suffix = Path(model).suffix.lower()
    if backend == "openvino" or suffix == ".xml":
        engine = "openvino"
        device = None if device in (None, "cpu") else device.upper()
    elif suffix == ".onnx":
        engine = "onnxruntime"
    else:
        raise CunetError(f"{model}: --ops profiles .onnx models (ONNX Runtime) and OpenVINO .xml models, not {suffix}")
    return [ops_profile(model, engine, b, warmup=warmup, iters=iters, threads=threads, device=device) for b in batch]


def _profile_video(model, video, backend, threads, warmup, label, as_json) -> None:
    from cunet.pipeline.video_profile import profile_video, stage_rows

    report = profile_video(model, video, backend=backend, threads=threads, warmup=min(warmup, 5))
    if label:
        report["environment"]["label"] = label
    if as_json:
        emit_json(report)
        return
    print_table(f"{report['model']} on {report['video']} · {report['backend']} ({report['provider']}) · "
                f"{report['frames']} frames timed", ["stage", "p50 ms", "mean ms", "share %"], stage_rows(report))
    console().print(f"end to end: {report['fps']:.1f} frames/s · detector {report['detector'] or 'none'} · "
                    f"{report['redetections']} detection(s) · smooth {report['smooth']['method']}")

"""The paper's comparison at equal depth: stacked U-Nets (order 0) against CU-Net order 1, 2 and full coupling.

Usage:
    .venv/bin/python bench/peers.py [--layers 4] [--size 128] [--orders 0,1,2,3] [--iters 20] [--batch 8]

Every model has the paper's widths (C = 128, growth 32, bottleneck 4, 68 heatmaps) and `--layers` U-Nets; only the
coupling order differs (order 0 = plain stacked U-Nets, order layers-1 = every U-Net coupled to every earlier one).
Per model it reports:
- parameters and multiply-accumulates per image (`cunet.model.summary`, counted on the meta device);
- ONNX Runtime latency of the FP32 export and of the INT8 `cpu` recipe (calibrated on a few synthetic faces),
  batch 1, `--threads` intra-op threads, all sessions timed interleaved (A B C ... A B C) because the machine is
  shared and noisy: compare ratios within one run, not absolute times across runs;
- the peak memory of one training step (forward, backward, RMSprop step on a batch of `--batch`) as the rise of the
  peak resident set over the resident set just before the step, each model in its own fresh subprocess so one
  model's allocations never hide another's. It includes activations, gradients and the optimiser state.

Weights are random: accuracy is not compared here (see the demo for trained models). Writes
bench/results/peers.json and prints a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _latency import interleaved_latency  # bench/_latency.py (the script's own folder is on sys.path)

_RESULTS = Path(__file__).resolve().parent / "results" / "peers.json"


def _config(layers: int, order: int, size: int):
    from cunet.model import CUNetConfig

    return CUNetConfig(layers=layers, order=order, num_landmarks=68, input_size=size)


def _rss_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def train_step_child(layers: int, order: int, size: int, batch: int, threads: int, steps: int) -> dict:
    """Runs in a fresh subprocess: peak RSS rise of one training step, then the mean time of `steps` more."""
    import gc

    import torch

    from cunet.model import CUNet

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = CUNet(_config(layers, order, size)).train()
    opt = torch.optim.RMSprop(model.parameters(), lr=2.5e-4)
    x = torch.randn(batch, 3, size, size)
    target = torch.rand(batch, 68, size // 4, size // 4) * 0.01

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = sum(torch.nn.functional.mse_loss(h, target) for h in model(x))
        loss.backward()
        opt.step()

    gc.collect()
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # VmHWM := current RSS, so the peak below belongs to the step alone
    before = _rss_kb("VmRSS")
    step()
    peak = _rss_kb("VmHWM")
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"train_peak_mb": (peak - before) * 1024 / 1e6, "train_step_s": float(np.median(times))}


def _measure_training(args, order: int) -> dict:
    cmd = [sys.executable, __file__, "--_child", str(order), "--layers", str(args.layers), "--size", str(args.size),
           "--batch", str(args.batch), "--threads", str(args.threads), "--steps", str(args.steps)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"training-step child for order {order} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _export_models(args, work: Path, data: Path) -> dict[str, Path]:
    import torch

    from cunet.compile.export import export_onnx
    from cunet.compile.quantize import quantize
    from cunet.model import CUNet

    models: dict[str, Path] = {}
    for order in args.orders:
        torch.manual_seed(0)
        fp32 = work / f"order{order}.onnx"
        print(f"exporting order {order} ...", file=sys.stderr, flush=True)
        export_onnx(CUNet(_config(args.layers, order, args.size)).eval(), fp32, task="face")
        int8 = work / f"order{order}.int8-cpu.onnx"
        print(f"quantizing order {order} (cpu recipe) ...", file=sys.stderr, flush=True)
        quantize(fp32, int8, "cpu", data, samples=args.calib, cache_dir=work / "calib-cache")
        models[f"{order}/fp32"], models[f"{order}/int8"] = fp32, int8
    return models


def _print_table(title: str, columns: list[str], rows: list[tuple]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i == 0 else "right", no_wrap=True)
    for r in rows:
        table.add_row(r[0], *[f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}" for v in r[1:]])
    console = Console(stderr=True)
    if not console.is_terminal:  # logs: whole rows, not the 80-column default
        console = Console(stderr=True, width=160)
    console.print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4, help="U-Nets in every model (equal depth)")
    ap.add_argument("--size", type=int, default=128, help="input side in pixels (128 or 256)")
    ap.add_argument("--orders", default=None, help="comma-separated coupling orders (default 0,1,2,layers-1)")
    ap.add_argument("--iters", type=int, default=20, help="timed ONNX Runtime runs per model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8, help="training-step batch")
    ap.add_argument("--steps", type=int, default=2, help="timed training steps after the measured one")
    ap.add_argument("--calib", type=int, default=16, help="calibration images of the INT8 models")
    ap.add_argument("--out", type=Path, default=_RESULTS)
    ap.add_argument("--_child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child is not None:
        print(json.dumps(train_step_child(args.layers, args._child, args.size, args.batch, args.threads, args.steps)))
        return
    full = args.layers - 1
    default = {o for o in (0, 1, 2, full) if o <= full}
    args.orders = sorted({int(v) for v in args.orders.split(",")} if args.orders else default)

    from cunet.data.synth import synthesize
    from cunet.evaluate.profile import environment
    from cunet.io import write_json
    from cunet.model.summary import summarize
    from cunet.tempdirs import temp_dir

    start = time.perf_counter()
    with temp_dir("peers") as work:
        synthesize(work / "faces", "face", n=args.calib, seed=0, image_size=args.size)
        models = _export_models(args, work, work / "faces")
        print(f"timing {len(models)} ONNX Runtime sessions, {args.iters} interleaved runs each ...", file=sys.stderr)
        latency = interleaved_latency(models, args.size, args.threads, args.iters)
    results = []
    for order in args.orders:
        print(f"training step, order {order} (subprocess) ...", file=sys.stderr, flush=True)
        s = summarize(_config(args.layers, order, args.size))
        name = "stacked U-Nets" if order == 0 else ("CU-Net full coupling" if order == full else "CU-Net")
        results.append({
            "model": name, "order": order, "layers": args.layers, "params": s["params"], "gmacs": s["gmacs"],
            "fp32_p50_ms": latency[f"{order}/fp32"]["p50_ms"], "int8_cpu_p50_ms": latency[f"{order}/int8"]["p50_ms"],
            "fp32_p90_ms": latency[f"{order}/fp32"]["p90_ms"], "int8_cpu_p90_ms": latency[f"{order}/int8"]["p90_ms"],
            **_measure_training(args, order),
        })
    doc = {
        "layers": args.layers, "input_size": args.size, "channels": 128, "growth": 32, "num_landmarks": 68,
        "threads": args.threads, "iters": args.iters, "train_batch": args.batch, "calibration_images": args.calib,
        "seconds": time.perf_counter() - start, "environment": environment(), "results": results,
    }
    write_json(args.out, doc)
    base = results[0]
    rows = [(f"{r['model']} (order {r['order']})", r["params"] / 1e6, r["gmacs"], r["fp32_p50_ms"],
             r["int8_cpu_p50_ms"], r["train_peak_mb"], r["train_step_s"], r["params"] / base["params"])
            for r in results]
    _print_table(f"{args.layers} U-Nets at {args.size}², C=128 g=32 — ONNX Runtime {args.threads} threads, batch 1; "
                 f"training batch {args.batch}",
                 ["model", "params (M)", "GMACs", "FP32 p50 ms", "INT8 cpu p50 ms", "train peak MB", "train step s",
                  "params × order 0"], rows)
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()

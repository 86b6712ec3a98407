"""Training-step memory and time: plain CU-Net vs the memory-efficient variant (each dense layer recomputed in backward).

Usage:
    .venv/bin/python bench/train_memory.py [--layers 8] [--order 1] [--size 256] [--batch 8] [--steps 3]
                                           [--threads 2] [--rounds 1] [--out bench/results/train_memory.json]

Each measurement runs in its own subprocess, because a process's peak RSS (`ru_maxrss`) can only grow: the child
builds the model, the Adam optimiser and a random batch, records its RSS, runs one warm-up step and `--steps` timed
training steps (forward over every supervised head, the trainer's masked heatmap loss, backward, optimiser step), and
reports the peak RSS minus the RSS before the first step. That delta is activation memory plus gradients, Adam state
and allocator slack; the last three are the same in both modes, so the difference between modes is all activations.
With --rounds > 1 the modes alternate (plain, efficient, plain, ...) and the median step time is reported, because
the machine is shared and noisy: compare the ratio from one run, never absolute times across runs.

The issue's goal: at least 60 % less activation memory for at most 1.3x the step time.
Writes JSON (default bench/results/train_memory.json) and prints a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = ("plain", "efficient")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KiB on Linux


class _SavedBytes:
    """Bytes autograd keeps for backward during a forward pass (distinct storages), independent of the allocator.

    Inside a checkpointed (memory-efficient) region autograd keeps only a recipe to recompute, so the hooks see
    what each mode really stores. One gap: a checkpointed region also keeps its inputs alive, which are counted only
    where some other op saves them too, so the efficient figure can be a little low; the RSS delta has no such gap.
    """

    def __init__(self) -> None:
        self.bytes = 0
        self._seen: set[int] = set()

    def _pack(self, t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in self._seen:
            self._seen.add(storage.data_ptr())
            self.bytes += storage.nbytes()
        return t

    def __enter__(self) -> "_SavedBytes":
        import torch

        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)


def child(args: argparse.Namespace) -> dict:
    """One mode in this process: the RSS delta of a training step and the step time."""
    import torch

    from cunet.model import CUNet, CUNetConfig
    from cunet.train.trainer import heatmap_loss

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = CUNetConfig(layers=args.layers, order=args.order, num_landmarks=args.landmarks, input_size=args.size,
                      memory_efficient=args.child == "efficient")
    model = CUNet(cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
    target = torch.rand(args.batch, args.landmarks, cfg.heatmap_size, cfg.heatmap_size, generator=gen)
    mask = torch.ones(args.batch, args.landmarks)
    before = _rss_mb()
    times, losses = [], []
    for i in range(args.steps + 1):
        t0 = time.perf_counter()
        if i == 0:
            with _SavedBytes() as saved:
                outputs = model(images)
        else:
            outputs = model(images)
        loss = heatmap_loss(outputs, target, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if i:  # the first step allocates the optimiser state and warms the kernels up
            times.append(time.perf_counter() - t0)
    peak = _peak_mb()
    return {"mode": args.child, "rss_before_mb": before, "peak_mb": peak, "delta_mb": peak - before,
            "saved_mb": saved.bytes / 1e6,
            "step_s": statistics.median(times), "steps_s": times, "loss_step1": losses[0],
            "params": sum(p.numel() for p in model.parameters())}


def _run_child(mode: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--_child", mode, "--layers", str(args.layers), "--order", str(args.order),
           "--landmarks", str(args.landmarks), "--size", str(args.size), "--batch", str(args.batch),
           "--steps", str(args.steps), "--threads", str(args.threads)]
    # Sleeping OpenMP waits: spinning threads on a shared machine make step times 3x noisier (see cunet train).
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--order", type=int, default=1)
    ap.add_argument("--landmarks", type=int, default=68)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="Alternate the modes this many times (median times).")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "train_memory.json")
    ap.add_argument("--_child", dest="child", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            runs[mode].append(_run_child(mode, args))
            print(f"{mode}: peak +{runs[mode][-1]['delta_mb']:.0f} MB, {runs[mode][-1]['step_s']:.2f} s/step",
                  file=sys.stderr)
    rows = {}
    for mode, rs in runs.items():
        rows[mode] = {
            "delta_mb": statistics.median(r["delta_mb"] for r in rs),
            "saved_mb": rs[0]["saved_mb"],
            "peak_mb": statistics.median(r["peak_mb"] for r in rs),
            "rss_before_mb": statistics.median(r["rss_before_mb"] for r in rs),
            "step_s": statistics.median(r["step_s"] for r in rs),
            "loss_step1": rs[0]["loss_step1"],
            "params": rs[0]["params"],
        }
    plain, eff = rows["plain"], rows["efficient"]
    saving = 1.0 - eff["delta_mb"] / plain["delta_mb"]
    saved_saving = 1.0 - eff["saved_mb"] / plain["saved_mb"]
    slowdown = eff["step_s"] / plain["step_s"]
    result = {
        "config": {"layers": args.layers, "order": args.order, "landmarks": args.landmarks, "input_size": args.size,
                   "batch": args.batch, "steps": args.steps, "threads": args.threads, "rounds": args.rounds},
        "modes": rows,
        "runs": runs,
        "memory_saving": saving,
        "saved_for_backward_saving": saved_saving,
        "time_ratio": slowdown,
        "goal": {"memory_saving_at_least": 0.60, "time_ratio_at_most": 1.3,
                 "met": bool(saving >= 0.60 and slowdown <= 1.3)},
        "same_loss": abs(plain["loss_step1"] - eff["loss_step1"]) <= 1e-6 * abs(plain["loss_step1"]),
        "environment": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                        "torch": __import__("torch").__version__,
                        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from cunet.io import write_json

    write_json(args.out, result)

    from cunet.commands._common import print_table

    table = [(m, round(r["delta_mb"]), round(r["saved_mb"]), round(r["peak_mb"]), round(r["step_s"], 2),
              f"{r['loss_step1']:.6g}") for m, r in rows.items()]
    table.append(("efficient vs plain", f"{100 * saving:.0f}% less", f"{100 * saved_saving:.0f}% less", "",
                  f"{slowdown:.2f}x", ""))
    print_table(
        f"training step, CU-Net L={args.layers} K={args.order} J={args.landmarks} {args.size}² batch {args.batch}, "
        f"{args.threads} threads (load {load_before[0]:.1f})",
        ["mode", "peak RSS delta (MB)", "saved for backward (MB)", "peak RSS (MB)", "s/step", "loss step 1"],
        table,
    )
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

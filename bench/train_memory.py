"""Training-step memory and time: plain CU-Net vs memory-efficient training (every U-Net recomputed in backward).

Usage:
    .venv/bin/python bench/train_memory.py [--layers 8] [--order 1] [--size 256] [--batch 8] [--steps 3]
                                           [--threads 2] [--rounds 1] [--device auto|cpu|cuda]
                                           [--out bench/results/train_memory.json]

What "memory" means (the issue's definition, printed with the table): each mode runs in its own process, because
a process's peak RSS can only grow. The child builds the model, the Adam optimiser and a random batch, records its
RSS, runs one warm-up step and `--steps` timed training steps (forward over every supervised head, the trainer's
masked heatmap loss, backward, optimiser step) and reports the peak RSS over all of them minus the RSS before the
first. Nothing is subtracted: the growth holds the activations kept for backward, the gradients and the Adam state
(both allocated in the first step; `fixed_mb` says how much they are), allocator slack (glibc keeps freed pages,
so later steps can peak higher than the first: `step_peaks_mb` has each step's) and one-off library buffers.

Each child runs as `cunet train` runs that mode: OMP_WAIT_POLICY=PASSIVE, and for the efficient mode
THP_MEM_ALLOC_ENABLE=1 (PyTorch's huge pages for CPU tensors of 2 MB and more: its page faults are cheaper; they
would make the plain step slower and bigger). Values set in the environment win for both; the JSON records them.

With --rounds > 1 the modes alternate (plain, efficient, plain, ...) and medians are reported, because the machine
is shared and noisy: compare the ratio from one run, never absolute times across runs.

GPU (the papers' figure is GPU memory): with --device auto (the default) and a CUDA device present, or with
--device cuda, every mode also runs once more on the GPU, where memory is `torch.cuda.max_memory_allocated` over the
same steps minus `torch.cuda.memory_allocated` before the first (model, optimiser and batch already on the GPU).
Without CUDA, auto skips that part and the JSON says why; --device cuda is then an error.

The issue's goal: at least 75 % less memory at most 1.3x the step time (cunet-face-8, batch 8; and batch 24).
Writes JSON (default bench/results/train_memory.json) and prints a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = ("plain", "efficient")
GOAL_SAVING, GOAL_TIME_RATIO = 0.75, 1.3
DEFINITION = ("peak RSS over the warm-up and timed steps minus RSS before the first step, each mode in its own "
              "process (activations + gradients + Adam state + allocator slack)")
CUDA_DEFINITION = "torch.cuda.max_memory_allocated over the steps minus memory_allocated before the first"


def _status_mb(key: str) -> float:
    """A `VmRSS` / `VmHWM` line of /proc/self/status in MB."""
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024 / 1e6


def _reset_peak_rss() -> None:
    """Start a new peak: Linux resets VmHWM to the current RSS when "5" is written to clear_refs."""
    with open("/proc/self/clear_refs", "w") as f:  # a kernel control file, not an output
        f.write("5")


def child(args: argparse.Namespace) -> dict:
    """One mode on one device in this process: the memory growth of the training steps and the step time."""
    import torch

    from cunet.model import CUNet, CUNetConfig
    from cunet.train.trainer import heatmap_loss

    cuda = args.device == "cuda"
    device = torch.device("cuda" if cuda else "cpu")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = CUNetConfig(layers=args.layers, order=args.order, num_landmarks=args.landmarks, input_size=args.size,
                      memory_efficient=args.child == "efficient")
    model = CUNet(cfg).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=gen).to(device)
    target = torch.rand(args.batch, args.landmarks, cfg.heatmap_size, cfg.heatmap_size, generator=gen).to(device)
    mask = torch.ones(args.batch, args.landmarks, device=device)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    sync()
    before = torch.cuda.memory_allocated() if cuda else _status_mb("VmRSS")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, losses, step_peaks = [], [], []
    for i in range(args.steps + 1):
        if not cuda:
            _reset_peak_rss()
        t0 = time.perf_counter()
        outputs = model(images)
        loss = heatmap_loss(outputs, target, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())  # synchronises on CUDA
        if i:  # the first step allocates the optimiser state and warms the kernels up
            times.append(time.perf_counter() - t0)
        del outputs, loss
        step_peaks.append((torch.cuda.max_memory_allocated() / 1e6 if cuda else _status_mb("VmHWM"))
                          - (before / 1e6 if cuda else before))
    n_params = sum(p.numel() for p in model.parameters())
    return {"mode": args.child, "device": args.device,
            "before_mb": before / 1e6 if cuda else before,
            "delta_mb": max(step_peaks), "step_peaks_mb": step_peaks,
            # gradients (1x) and Adam's two moments (2x), float32
            "fixed_mb": 3 * 4 * n_params / 1e6,
            "step_s": statistics.median(times), "steps_s": times, "losses": losses, "params": n_params}


def _run_child(mode: str, device: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--_child", mode, "--device", device, "--layers", str(args.layers),
           "--order", str(args.order), "--landmarks", str(args.landmarks), "--size", str(args.size),
           "--batch", str(args.batch), "--steps", str(args.steps), "--threads", str(args.threads)]
    # Sleeping OpenMP waits: spinning threads on a shared machine make step times 3x noisier (see cunet train).
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    if mode == "efficient":  # huge pages for large CPU tensors, as `cunet train --memory-efficient` sets them
        env.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} child on {device} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _measure(device: str, rounds: int, args: argparse.Namespace) -> dict:
    """Both modes on `device` (alternating, `rounds` times): medians per mode, the saving and the time ratio."""
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode in MODES:
            r = _run_child(mode, device, args)
            runs[mode].append(r)
            print(f"{device} {mode}: +{r['delta_mb']:.0f} MB, {r['step_s']:.2f} s/step", file=sys.stderr)
    rows = {}
    for mode, rs in runs.items():
        rows[mode] = {
            "delta_mb": statistics.median(r["delta_mb"] for r in rs),
            "before_mb": statistics.median(r["before_mb"] for r in rs),
            "fixed_mb": rs[0]["fixed_mb"],
            "step_s": statistics.median(r["step_s"] for r in rs),
            "losses": rs[0]["losses"],
            "params": rs[0]["params"],
        }
    plain, eff = rows["plain"], rows["efficient"]
    saving = 1.0 - eff["delta_mb"] / plain["delta_mb"]
    ratio = eff["step_s"] / plain["step_s"]
    loss_diff = max(abs(a - b) / abs(a) for a, b in zip(plain["losses"], eff["losses"]))
    return {"modes": rows, "runs": runs, "memory_saving": saving, "time_ratio": ratio,
            "loss_max_relative_difference": loss_diff,
            "goal_met": bool(saving >= GOAL_SAVING and ratio <= GOAL_TIME_RATIO)}


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _table(title: str, unit: str, m: dict) -> None:
    from cunet.commands._common import print_table

    rows = [(mode, round(r["delta_mb"]), round(r["fixed_mb"]), round(r["step_s"], 3), f"{r['losses'][0]:.6g}")
            for mode, r in m["modes"].items()]
    rows.append(("efficient vs plain", f"{100 * m['memory_saving']:.1f}% less", "",
                 f"{m['time_ratio']:.2f}x", f"max rel. diff {m['loss_max_relative_difference']:.1e}"))
    print_table(title, ["mode", f"{unit} growth (MB)", "of it grads+Adam (MB)", "s/step", "loss step 1"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--order", type=int, default=1)
    ap.add_argument("--landmarks", type=int, default=68)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="Alternate the modes this many times (medians).")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: CPU RSS, plus GPU memory when CUDA is present; cpu: CPU only; cuda: both, and an "
                         "error without CUDA.")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "train_memory.json")
    ap.add_argument("--_child", dest="child", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    has_cuda = args.device != "cpu" and _cuda_available()
    if args.device == "cuda" and not has_cuda:
        raise SystemExit("error: --device cuda, but torch sees no CUDA device here")
    load_before = os.getloadavg()
    cpu = _measure("cpu", args.rounds, args)
    if has_cuda:
        import torch

        cuda = {**_measure("cuda", 1, args), "definition": CUDA_DEFINITION, "name": torch.cuda.get_device_name()}
    else:
        cuda = {"skipped": "--device cpu" if args.device == "cpu" else "no CUDA device"}
    result = {
        "config": {"layers": args.layers, "order": args.order, "landmarks": args.landmarks, "input_size": args.size,
                   "batch": args.batch, "steps": args.steps, "threads": args.threads, "rounds": args.rounds},
        "definition": DEFINITION,
        **cpu,
        "goal": {"memory_saving_at_least": GOAL_SAVING, "time_ratio_at_most": GOAL_TIME_RATIO, "met": cpu["goal_met"]},
        "cuda": cuda,
        "environment": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                        "torch": __import__("torch").__version__,
                        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
                        "thp_mem_alloc_enable": os.environ.get("THP_MEM_ALLOC_ENABLE", "efficient mode only")},
    }
    from cunet.io import write_json

    write_json(args.out, result)
    shape = f"CU-Net L={args.layers} K={args.order} J={args.landmarks} {args.size}² batch {args.batch}"
    _table(f"training step, {shape}, {args.threads} threads (load {load_before[0]:.1f})", "peak RSS", cpu)
    print(f"memory: {DEFINITION}", file=sys.stderr)
    if "modes" in cuda:
        _table(f"training step on {cuda['name']}, {shape}", "peak allocated", cuda)
        print(f"GPU memory: {CUDA_DEFINITION}", file=sys.stderr)
    else:
        print(f"GPU: skipped ({cuda['skipped']})", file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Iterative refinement (ECCV) at an equal training budget: L U-Nets run twice with shared weights vs 2L U-Nets.

Usage:
    .venv/bin/python bench/refine.py [--data DIR] [--work DIR] [--epochs 10] [--seeds 0,1] [--jobs 2]
                                     [--out bench/results/refine.json]

Every row trains cunet-tiny's shape (order 1, 64 channels, growth 16, 128² input) with `cunet train` (a real
subprocess, one torch thread, --jobs at a time) on the same synthetic faces for the same epochs, once per seed
(the default data is `cunet data synth --task face --n 300 --seed 0`, made once under --work):
- L=2: cunet-tiny itself;
- L=2 + refine: the same two U-Nets run twice (one extra adapter), both passes supervised;
- L=4: four U-Nets, what the refined model computes with its own weights.
The ECCV paper's claim: refinement gets close to the deeper model's accuracy with about half its parameters.
Reported per row: trainable parameters and GMACs of one 128² image (`cunet summary`), NME (percent, inter-ocular,
the test split, the trainer's validation of the last epoch: last.pt) as the mean over seeds with its range, and
training seconds per epoch. Runs this short are noisy: compare rows within one run.
Writes JSON (default bench/results/refine.json) and prints a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _work import work_and_faces  # bench/_work.py (the script's own folder is on sys.path)

#: (row name, layers, refine)
ROWS = [("L2", 2, False), ("L2+refine", 2, True), ("L4", 4, False)]


def _train(name: str, layers: int, refine: bool, seed: int, data: Path, work: Path, epochs: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cunet", "train", "--task", "face", "--data", str(data), "--out",
           str(work / f"{name}.s{seed}"), "--variant", "cunet-tiny", "--layers", str(layers), "--epochs", str(epochs),
           "--seed", str(seed), "--threads", "1", "--json"] + (["--refine"] if refine else [])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _train_all(jobs: list[tuple[str, int, bool, int]], data: Path, work: Path, epochs: int,
               parallel: int) -> dict[tuple[str, int], dict]:
    """Train every (row, layers, refine, seed), `parallel` processes at a time; {(row, seed): train --json result}."""
    pending, running, done = list(jobs), {}, {}
    while pending or running:
        while pending and len(running) < parallel:
            name, layers, refine, seed = pending.pop(0)
            print(f"[{name} seed {seed}] training {epochs} epochs (load {os.getloadavg()[0]:.1f})", file=sys.stderr,
                  flush=True)
            running[(name, seed)] = _train(name, layers, refine, seed, data, work, epochs)
        time.sleep(1.0)
        for key, proc in list(running.items()):
            if proc.poll() is not None:
                out, err = proc.communicate()
                del running[key]
                if proc.returncode != 0:
                    raise SystemExit(f"training {key} failed (exit {proc.returncode}):\n{err[-2000:]}")
                done[key] = json.loads(out)
                print(f"[{key[0]} seed {key[1]}] done in {done[key]['seconds']:.0f} s", file=sys.stderr, flush=True)
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="Face dataset (default: synthetic, 300 images, made under --work).")
    ap.add_argument("--work", type=Path, help="Where runs go (default: a new temporary folder).")
    ap.add_argument("--epochs", type=int, default=10, help="Training epochs of every row (the equal budget).")
    ap.add_argument("--seeds", default="0,1", help="Train every row once per seed; report mean and range.")
    ap.add_argument("--jobs", type=int, default=2, help="Training processes at a time (one torch thread each).")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "refine.json")
    args = ap.parse_args()

    from cunet.commands._common import print_table
    from cunet.io import write_json
    from cunet.model import get_variant
    from cunet.model.summary import summarize

    work, data = work_and_faces(args.work, args.data, "refine")
    seeds = [int(x) for x in args.seeds.split(",")]
    load_start, t0 = os.getloadavg(), time.perf_counter()
    trained = _train_all([(name, layers, refine, seed) for name, layers, refine in ROWS for seed in seeds], data,
                         work, args.epochs, args.jobs)
    rows = {}
    for name, layers, refine in ROWS:
        summary = summarize(get_variant("cunet-tiny", layers=layers, refine=refine))
        runs = [trained[(name, seed)] for seed in seeds]
        nme = [r["history"][-1]["nme"] for r in runs]
        rows[name] = {
            "layers": layers, "refine": refine, "params": summary["params"], "gmacs": summary["gmacs"],
            "nme": statistics.mean(nme), "nme_min": min(nme), "nme_max": max(nme), "nme_per_seed": nme,
            "seconds_per_epoch": statistics.mean(r["seconds"] / len(r["history"]) for r in runs),
            "val_nme_curve": [h["nme"] for h in runs[0]["history"]],
        }
    result = {
        "config": {"variant": "cunet-tiny", "epochs": args.epochs, "seeds": seeds, "data": str(data),
                   "metric": "NME % (inter-ocular), test split, last epoch's checkpoint"},
        "rows": rows,
        "environment": {"loadavg_start": load_start, "loadavg_end": os.getloadavg(),
                        "wall_seconds": time.perf_counter() - t0},
    }
    write_json(args.out, result)
    base = rows["L4"]
    table = [(name, f"{r['params']:,}", f"{r['params'] / base['params']:.2f}", f"{r['gmacs']:.3f}",
              f"{r['nme']:.2f} ({r['nme_min']:.2f}-{r['nme_max']:.2f})", f"{r['seconds_per_epoch']:.0f}")
             for name, r in rows.items()]
    print_table(f"iterative refinement, cunet-tiny shape, {args.epochs} epochs, seeds {args.seeds} "
                f"(load {load_start[0]:.1f})",
                ["row", "params", "params vs L4", "GMACs", "NME % mean (range)", "s/epoch"], table)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

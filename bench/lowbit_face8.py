"""The low-bit recipe of bench/lowbit.py on cunet-face-8: FP32, then 1/8/8 (1-bit weights, 8-bit inputs and
weight gradients) trained with `RECIPE` from that FP32 run; NME of both exported models on ONNX Runtime, and file
sizes (FP32 ONNX, 1-bit Q/DQ ONNX, bit-packed `.cunetq`).

Usage (a face-8 training step holds ~2.5 GB with --memory-efficient at batch 8; long on a CPU):
    flock /tmp/cunet-bigmem.lock nice -n 5 .venv/bin/python bench/lowbit_face8.py [--data DIR] [--epochs 5]
        [--batch-size 8] [--threads 2] [--device cuda] [--work DIR] [--out JSON]

Both runs use the variant's own optimiser and lr (the paper's RMSprop 2.5e-4) at --batch-size (the paper's 24 needs
~3x the memory) with `--memory-efficient`, the same data (default: `cunet data synth --task face --n 300 --seed 0`
under --work) and seed 0; the low-bit run has as many epochs as the FP32 run it starts from ("low-bit epochs
equal", as the recipe rows of bench/lowbit.py). Runs already in --work are continued (`--resume`). Writes
bench/results/lowbit_face8.json (and prints it) and a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _work import work_and_faces  # bench/_work.py (the script's own folder is on sys.path)
from lowbit import RECIPE, Row, _load, _train_cmd  # bench/lowbit.py


def _train(row: Row, data: Path, work: Path, epochs: int, threads: int, batch: int, source: Path | None,
           device: str | None) -> dict:
    out = work / row.name
    extra = ("--memory-efficient", "--batch-size", str(batch), *(("--device", device) if device else ()))
    cmd = _train_cmd(row, data, out, epochs, 0, 0, None, source, variant="cunet-face-8", threads=threads, extra=extra)
    print(f"[face8 {row.name}] training {epochs} epochs (load {_load()})", file=sys.stderr, flush=True)
    with open(work / f"{row.name}.log", "a") as log:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    if done.returncode != 0:
        raise SystemExit(f"training {row.name} failed (exit {done.returncode}); see {work / row.name}.log")
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="Face dataset (default: synthetic, 300 images, made under --work).")
    ap.add_argument("--work", type=Path, help="Where runs and models go (default: a new temporary folder).")
    ap.add_argument("--epochs", type=int, default=5, help="Epochs of the FP32 run and of the low-bit run each.")
    ap.add_argument("--batch-size", type=int, default=8, help="Images per step (memory grows with it).")
    ap.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads.")
    ap.add_argument("--device", help="`cunet train --device` of both runs, e.g. cuda (default: train's own choice).")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "lowbit_face8.json")
    args = ap.parse_args()

    from cunet.commands._common import print_table
    from cunet.compile.export import export_onnx
    from cunet.compile.packing import pack
    from cunet.evaluate.accuracy import evaluate
    from cunet.io import write_json

    work, data = work_and_faces(args.work, args.data, "lowbit-face8")
    load_start, t0 = _load(), time.perf_counter()
    rows = {"fp32": Row.parse("fp32"), "w1a8g8": Row.parse(f"w1a8g8+{RECIPE}")}
    trained = {"fp32": _train(rows["fp32"], data, work, args.epochs, args.threads, args.batch_size, None, args.device)}
    fp32_ckpt = Path(trained["fp32"]["last"])
    trained["w1a8g8"] = _train(rows["w1a8g8"], data, work, args.epochs, args.threads, args.batch_size, fp32_ckpt,
                               args.device)
    results = {}
    for key, tr in trained.items():
        onnx_path = work / f"face8.{key}.onnx"
        report = export_onnx(Path(tr["last"]), onnx_path)
        results[key] = {
            "row": rows[key].name, "train_seconds": tr["seconds"], "epochs": tr["epoch"],
            "val_nme_curve": [h["nme"] for h in tr["history"]],
            "nme_onnx": float(evaluate(onnx_path, data, backend="ort-cpu", threads=args.threads)["nme"]),
            "onnx_bytes": report.file_bytes,
            "packed_bytes": pack(onnx_path, work / f"face8.{key}.cunetq").packed_bytes if key != "fp32" else None,
        }
    ref, low = results["fp32"], results["w1a8g8"]
    low["nme_rel_vs_fp32"] = (low["nme_onnx"] - ref["nme_onnx"]) / ref["nme_onnx"]
    low["packed_smaller_than_fp32"] = ref["onnx_bytes"] / low["packed_bytes"]
    doc = {"variant": "cunet-face-8", "data": str(data), "epochs": args.epochs, "batch_size": args.batch_size,
           "threads": args.threads, "recipe": RECIPE, "wall_seconds": time.perf_counter() - t0,
           "load_average": {"start": load_start, "end": _load()}, "rows": results}
    write_json(args.out, doc)
    os.environ.setdefault("COLUMNS", "150")
    print_table(
        f"cunet-face-8, {args.epochs} FP32 epochs, then {args.epochs} 1/8/8 epochs with {RECIPE} "
        f"(batch {args.batch_size}, load {load_start})",
        ["row", "NME ORT", "Δ% vs FP32", "ONNX MB", "packed MB", "train s"],
        [(r["row"], r["nme_onnx"], r.get("nme_rel_vs_fp32", 0.0) * 100, r["onnx_bytes"] / 1e6,
          float("nan") if r["packed_bytes"] is None else r["packed_bytes"] / 1e6, r["train_seconds"])
         for r in results.values()],
    )
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()

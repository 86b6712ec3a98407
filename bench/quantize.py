"""FP32 ONNX vs `cpu` INT8 vs `tensorrt` INT8 on ONNX Runtime, side by side in one run (batch 1, 2 threads).

Usage:
    .venv/bin/python bench/quantize.py [--model MODEL.onnx | --checkpoint RUN/best.pt] [--data DIR] [--iters 20]

Without a model, a random-init `cunet-face-8` (256²) is exported: fine for latency and size, meaningless for accuracy.
With --data the calibration images come from there and the INT8-vs-FP32 landmark NME is reported; without it, smooth
random images are used. Timed runs are interleaved (A B C A B C ...) because the machine is shared and noisy; only
ratios from one run are comparable. Writes bench/results/quantize.json and prints a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def _export(model, path: Path, task: str) -> Path:
    from cunet.compile.export import export_onnx

    export_onnx(model, path, task=task)
    return path


def _random_images(folder: Path, n: int) -> Path:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.GaussianBlur(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8), (15, 15), 5))
    return folder


def _session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "quantize.json")
    args = ap.parse_args()

    from cunet.calib.reader import read_preprocess_spec, select_calibration_images
    from cunet.commands._common import print_table
    from cunet.compile.quantize import landmark_drop, quantize
    from cunet.io import write_json
    from cunet.tempdirs import temp_dir

    with temp_dir("bench-q") as tmp:  # the models are needed only until they are timed and measured
        if args.model:
            fp32, source = args.model, str(args.model)
        elif args.checkpoint:
            from cunet.model.checkpoint import model_from_checkpoint

            model, ckpt = model_from_checkpoint(args.checkpoint)
            fp32, source = _export(model, tmp / "model.onnx", ckpt["task"]), str(args.checkpoint)
        else:
            import torch

            from cunet.model import CUNet, get_variant

            torch.manual_seed(0)
            fp32, source = _export(CUNet(get_variant("cunet-face-8")).eval(), tmp / "model.onnx", "face"), "cunet-face-8 (random init)"
        data = args.data or _random_images(tmp / "images", args.samples)
        models = {"fp32": fp32}
        for recipe in ("cpu", "tensorrt"):
            models[recipe] = tmp / f"model.{recipe}.onnx"
            quantize(fp32, models[recipe], recipe, data, samples=args.samples, cache_dir=tmp / "cache")
        sessions = {k: _session(p, args.threads) for k, p in models.items()}
        x = select_calibration_images(data, read_preprocess_spec(fp32), 4).load().arrays
        outputs = {k: np.concatenate([s.run(None, {"image": x[i : i + 1]})[0] for i in range(len(x))]) for k, s in sessions.items()}
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(args.iters):
            for k, s in sessions.items():
                t = time.perf_counter_ns()
                s.run(None, {"image": x[:1]})
                times[k].append((time.perf_counter_ns() - t) / 1e6)
        p50 = {k: float(np.median(v)) for k, v in times.items()}
        rows, results = [], {}
        for k in sessions:
            size = os.path.getsize(models[k])
            r = {
                "p50_ms": p50[k], "p90_ms": float(np.percentile(times[k], 90)), "speedup_vs_fp32": p50["fp32"] / p50[k],
                "size_mb": size / 1e6, "smaller_vs_fp32": os.path.getsize(fp32) / size,
                "landmark_nme_vs_fp32": None if k == "fp32" else landmark_drop(outputs["fp32"], outputs[k]),
            }
            results[k] = r
            rows.append((k, r["p50_ms"], r["speedup_vs_fp32"], r["size_mb"], r["smaller_vs_fp32"], r["landmark_nme_vs_fp32"] or 0.0))
    doc = {"source": source, "threads": args.threads, "batch": 1, "iters": args.iters, "data": str(args.data), "results": results}
    write_json(args.out, doc)
    print_table(f"INT8 on ONNX Runtime — {source}", ["model", "p50 ms", "× FP32", "MB", "× smaller", "NME vs FP32"], rows)
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()

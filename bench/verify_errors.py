"""How far ONNX Runtime and PyTorch float32 are from a float64 reference on the export check's own inputs.

Usage:
    .venv/bin/python bench/verify_errors.py [--checkpoint R/best.pt ...] [--face8-size 256] [--no-tiny] [--out JSON]

Rows (each exported in process with `export_onnx`, which runs the check of `cunet.compile.verify`):
- cunet-tiny and cunet-face-8 at initialisation, their BatchNorms given the statistics of the check's own synthetic
  crops and gains/shifts off 1/0 (what a briefly trained network has; a fresh BatchNorm is the identity);
- cunet-tiny with 1-bit weights and 8-bit inputs (`QuantConfig(1, 8)`), likewise, through the low-bit export;
- every --checkpoint (e.g. the issue's `cunet train --variant cunet-face-8 --epochs 1` result).
For each: both relative L2 errors, their ratio, the allowance, max |ORT - PyTorch| and the bound the old fixed rule
allowed (1e-3 x max(1, max |heatmap|)), so the note can say which models the old rule refused.
Writes bench/results/verify_errors.json and prints a table on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def _settle(model, x: np.ndarray, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(x))
        for m in norms:
            m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))
    return model.eval()


def _row(name: str, model, task: str, work: Path) -> dict:
    import torch

    from cunet.compile.export import export_onnx
    from cunet.compile.verify import VERIFY_FACTOR, verification_inputs

    start = time.perf_counter()
    report = export_onnx(model, work / f"{name}.onnx", task=task)
    v = report.verification
    x, _ = verification_inputs(report.meta, model.cfg.in_chans)
    with torch.inference_mode():
        peak = float(model.eval()(torch.from_numpy(x)).abs().max())
    # The old rule: 1e-3 x max(1, max |heatmap|), 0.1 x the same for models with quantized conv inputs.
    old_bound = (1e-3 if v.factor == VERIFY_FACTOR else 0.1) * max(1.0, peak)
    return {"model": name, "error_ort": v.error_ort, "error_torch32": v.error_torch32,
            "ratio": v.error_ort / v.error_torch32 if v.error_torch32 else None, "allowed": v.allowed,
            "factor": v.factor, "floor": v.floor, "max_abs_error": v.max_abs_error, "max_abs_heatmap": peak,
            "old_rule_bound": old_bound, "old_rule_passed": v.max_abs_error <= old_bound, "passed": v.passed,
            "inputs": v.inputs, "seconds": time.perf_counter() - start}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", action="append", default=[], type=Path, help="Also measure this checkpoint.")
    ap.add_argument("--face8-size", type=int, default=256, help="Input size of the cunet-face-8 row (0: skip it).")
    ap.add_argument("--no-tiny", action="store_true", help="Skip the two cunet-tiny rows.")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "verify_errors.json")
    args = ap.parse_args()

    import torch

    from cunet.commands._common import print_table
    from cunet.compile.verify import verification_inputs
    from cunet.io import write_json
    from cunet.model import CUNet, get_variant
    from cunet.model.quant import QuantConfig, apply_quantization
    from cunet.runtime.meta import ModelMeta
    from cunet.model.checkpoint import model_from_checkpoint

    torch.manual_seed(0)
    models = []
    tiny = get_variant("cunet-tiny")
    face8 = get_variant("cunet-face-8", input_size=args.face8_size) if args.face8_size else None
    for name, cfg, quant in (("cunet-tiny", tiny, None), ("cunet-tiny-w1a8", tiny, QuantConfig(bits_w=1, bits_a=8)),
                             (f"cunet-face-8@{args.face8_size}", face8, None)):
        if cfg is None or (args.no_tiny and cfg is tiny):
            continue
        x, _ = verification_inputs(ModelMeta.from_checkpoint({"task": "face", "config": cfg.to_dict()}))
        model = CUNet(cfg) if quant is None else apply_quantization(CUNet(cfg), quant)
        models.append((name, _settle(model, x), "face"))
    for ckpt in args.checkpoint:
        model, meta = model_from_checkpoint(ckpt)
        models.append((str(ckpt), model.eval(), meta["task"]))
    rows = []
    from cunet.tempdirs import temp_dir

    with temp_dir("verify") as tmp:
        for name, model, task in models:
            print(f"{name} ...", file=sys.stderr, flush=True)
            rows.append(_row(name, model, task, Path(tmp)))
    write_json(args.out, {"rows": rows})
    print_table("export check: relative L2 error against float64 PyTorch", ["model", "ORT", "PyTorch fp32", "ratio",
                "allowed", "max|ORT-PT|", "old bound", "old rule", "new rule"],
                [(r["model"], f"{r['error_ort']:.3g}", f"{r['error_torch32']:.3g}",
                  "—" if r["ratio"] is None else f"{r['ratio']:.2f}", f"{r['allowed']:.3g}",
                  f"{r['max_abs_error']:.3g}", f"{r['old_rule_bound']:.3g}",
                  "pass" if r["old_rule_passed"] else "REFUSE", "pass" if r["passed"] else "REFUSE") for r in rows])
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU INT8 side by side in one interleaved run: ONNX Runtime and OpenVINO, cunet's recipes and NNCF's defaults.

Usage:
    .venv/bin/python bench/cpu_int8.py [--models face8,tiny] [--iters 15] [--threads 2] [--samples 32]
                                       [--tiny-checkpoint RUN/best.pt] [--face8-checkpoint RUN/best.pt] [--peer]
                                       [--clock wall|cpu]

Rows per model (cunet-face-8 256², cunet-tiny 128²):
    ort-fp32            FP32 export, ONNX Runtime CPU
    ort-int8-cpu        `cunet quantize --recipe cpu`, ONNX Runtime
    ort-int8-tensorrt   `cunet quantize --recipe tensorrt`, ONNX Runtime
    ov-fp32             FP32 export, OpenVINO CPU
    ov-int8-openvino    `cunet quantize --recipe openvino` (IR), OpenVINO
    ov-nncf-default     NNCF's `quantize` defaults on the export as it is (the peer baseline), OpenVINO
    ov-qdq-tensorrt     the `tensorrt` recipe's Q/DQ file unchanged, OpenVINO
and with --peer FAN-4 rows (face-alignment's 4-stack hourglass, its model class with random weights, nothing
downloaded; a bench-only dependency, see docs/int8.md for installing it beside opencv-python-headless): FP32 on
ONNX Runtime and on OpenVINO, and NNCF's defaults on OpenVINO (its fastest INT8 engine, as for cunet).

Columns: parameters and GMACs of the network, inference p50 (ms, batch 1 and batch 8, the
`latency_ms.inference` stage of `cunet profile`: the Predictor's `predict_heatmaps`), batch-8 throughput (images/s),
speed-up vs ort-fp32 and vs ov-nncf-default at batch 1, file size (an IR
counts .xml + .bin), peak RSS (MB, each artifact opened and run alone in a fresh child process), and NME vs FP32 (the
NME (%) on the synthetic test split minus ort-fp32's, in NME points; only for a trained model: cunet-tiny is trained
briefly here unless --tiny-checkpoint is given; a random-init cunet-face-8 says nothing about accuracy, so its column
stays empty without --face8-checkpoint). Every artifact of a model is timed in one process, call by call in turn,
each round in a fresh random order (a fixed order A B C gave identical models 7 % apart), because the machine is
shared and noisy: only ratios from one run are comparable; the p10-p90 spread of each row says how noisy the run
was. `--clock cpu` times the process's CPU seconds instead of wall time: on a machine other jobs load, with
`--threads 1`, it is what still gives steady ratios (wall time then measures the queue). The "goals" record
compares the `openvino` recipe with NNCF's defaults and ORT FP32, and cunet-face-8's fastest INT8 row with FAN-4's.
Writes bench/results/cpu_int8.json and prints a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_RESULTS = Path(__file__).resolve().parent / "results" / "cpu_int8.json"
_SIZES = {"face8": ("cunet-face-8", 256), "tiny": ("cunet-tiny", 128)}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _bytes(path: Path) -> int:
    from cunet.runtime.ov_backend import ir_files_bytes

    return ir_files_bytes(path)


def _synth(work: Path, size: int) -> Path:
    from cunet.data.synth import synthesize

    data = work / f"faces{size}"
    if not (data / ".done").is_file():
        synthesize(data, "face", n=240, seed=5, image_size=max(160, size + size // 4))
        (data / ".done").write_text("")
    return data


def _checkpoint(args, key: str, work: Path, data: Path) -> tuple[Path, bool]:
    """(checkpoint, trained): a given checkpoint, a briefly trained cunet-tiny, or a random-init face-8."""
    given = args.tiny_checkpoint if key == "tiny" else args.face8_checkpoint
    if given:
        return Path(given), True
    variant, _ = _SIZES[key]
    ckpt = work / f"{variant}.pt"
    if key == "tiny":
        run = work / "tiny-run"
        if not (run / "best.pt").is_file():
            from cunet.train.trainer import TrainOptions, train

            _log(f"training {variant} for {args.train_epochs} epochs on synthetic faces (accuracy rows need it)")
            train(TrainOptions(task="face", data=str(data), out=str(run), variant=variant, epochs=args.train_epochs,
                               batch_size=16, seed=0, progress=False))
        return run / "best.pt", True
    if not ckpt.is_file():
        import torch

        from cunet.model import CUNet, get_variant
        from cunet.model.checkpoint import save_checkpoint

        torch.manual_seed(0)
        save_checkpoint(ckpt, CUNet(get_variant(variant)), "face")
    return ckpt, False


def _build(key: str, ckpt: Path, data: Path, work: Path, samples: int) -> dict[str, tuple[str, Path]]:
    """name → (backend, path) of every cunet artifact of one model, built once and reused by later runs."""
    from cunet.compile.export import export_onnx
    from cunet.compile.openvino import NNCF_DEFAULT, OPENVINO_RECIPE, quantize_openvino
    from cunet.compile.quantize import quantize

    d = work / key
    d.mkdir(parents=True, exist_ok=True)
    fp32 = d / "model.onnx"
    stamp = d / "source.txt"
    if not fp32.is_file() or not stamp.is_file() or stamp.read_text() != str(ckpt.stat().st_mtime_ns):
        for old in d.glob("model.*"):
            old.unlink()
        export_onnx(ckpt, fp32)
        stamp.write_text(str(ckpt.stat().st_mtime_ns))
    out = {"ort-fp32": ("ort-cpu", fp32)}
    for recipe in ("cpu", "tensorrt"):
        path = d / f"model.int8-{recipe}.onnx"
        if not path.is_file():
            _log(f"{key}: quantize --recipe {recipe}")
            try:
                quantize(fp32, path, recipe, data, samples=samples, cache_dir=d / "calibration")
            except (MemoryError, RuntimeError) as e:  # ORT's calibrator keeps every activation of every sample
                _log(f"{key}: --recipe {recipe} failed ({type(e).__name__}: {str(e)[:120]}); its rows are left out")
                continue
        out[f"ort-int8-{recipe}"] = ("ort-cpu", path)
    out["ov-fp32"] = ("openvino", fp32)
    for name, settings in (("ov-int8-openvino", OPENVINO_RECIPE), ("ov-nncf-default", NNCF_DEFAULT)):
        path = d / f"model.{name}.xml"
        if not path.is_file():
            _log(f"{key}: NNCF {name}")
            quantize_openvino(fp32, path, data, samples=samples, settings=settings)
        out[name] = ("openvino", path)
    if "ort-int8-tensorrt" in out:
        out["ov-qdq-tensorrt"] = ("openvino", d / "model.int8-tensorrt.onnx")
    return out


def _fan_artifacts(work: Path, data: Path, samples: int) -> dict[str, tuple[str, Path]]:
    """FAN-4 (random weights) exported to ONNX and quantized with NNCF's defaults on the same calibration crops."""
    import openvino as ov
    import torch

    import nncf
    from face_alignment.models import FAN

    from cunet.calib.reader import PreprocessSpec, select_calibration_images

    d = work / "fan4"
    d.mkdir(parents=True, exist_ok=True)
    fp32, int8 = d / "fan4.onnx", d / "fan4.nncf.xml"
    if not fp32.is_file():
        torch.manual_seed(0)
        model = FAN(4).eval()
        torch.onnx.export(model, (torch.zeros(1, 3, 256, 256),), str(fp32), input_names=["image"],
                          dynamic_axes={"image": {0: "n"}}, dynamo=False)
    if not int8.is_file():
        spec = PreprocessSpec("image", 256, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "face")
        x = select_calibration_images(data, spec, samples).load().arrays
        q = nncf.quantize(ov.Core().read_model(str(fp32)), nncf.Dataset([x[i : i + 1] for i in range(len(x))]),
                          subset_size=len(x))
        ov.save_model(q, str(int8), compress_to_fp16=False)
    return {"fan4-ort-fp32": ("raw-ort", fp32), "fan4-ov-fp32": ("raw-ov", fp32),
            "fan4-ov-nncf-default": ("raw-ov", int8)}


def _network_size(model, size: int) -> tuple[int, float]:
    """(parameters, GMACs per image) of a torch network: convolution MACs counted by hooks on one forward pass."""
    import torch

    macs = [0]

    def hook(m, inputs, out) -> None:
        macs[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return sum(p.numel() for p in model.parameters()), macs[0] / 1e9


def _sizes(key: str, peer: bool) -> dict[str, tuple[int, float]]:
    """Row-name prefix ("" for cunet's rows, "fan4-") → (parameters, GMACs)."""
    from cunet.model.summary import summarize
    from cunet.model import get_variant

    variant, size = _SIZES[key]
    s = summarize(get_variant(variant))
    out = {"": (s["params"], s["gmacs"])}
    if peer and key == "face8":
        from face_alignment.models import FAN

        out["fan4-"] = _network_size(FAN(4), 256)
    return out


class _Raw:
    """A peer model without cunet metadata: the backend alone (inference is all a peer row compares)."""

    def __init__(self, kind: str, path: Path, threads: int) -> None:
        from cunet.runtime.ort_backend import OrtBackend
        from cunet.runtime.ov_backend import OpenVinoBackend

        self._b = OrtBackend(path, "ort-cpu", threads) if kind == "raw-ort" else OpenVinoBackend(path, threads)
        self._b.open()

    def predict_heatmaps(self, x: np.ndarray) -> np.ndarray:
        return self._b.infer(x)


def _open(kind: str, path: Path, threads: int):
    if kind.startswith("raw-"):
        return _Raw(kind, path, threads)
    from cunet.runtime import open_predictor

    return open_predictor(path, backend=kind, threads=threads).open()


def _rss_child(kind: str, path: str, size: int, threads: int) -> None:
    """Runs in a fresh process: open one artifact, run batch 1 and batch 8, print the peak RSS in MB."""
    from cunet.evaluate.profile import peak_rss_mb

    p = _open(kind, Path(path), threads)
    for batch in (1, 8):
        p.predict_heatmaps(np.zeros((batch, 3, size, size), np.float32))
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def _peak_rss(kind: str, path: Path, size: int, threads: int) -> float | None:
    cmd = [sys.executable, __file__, "--rss-child", kind, str(path), str(size), str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        _log(f"peak RSS of {path.name} failed: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def _time(arts: dict[str, tuple[str, Path]], size: int, threads: int, iters: int, clock: str) -> dict[str, dict]:
    now = time.process_time_ns if clock == "cpu" else time.perf_counter_ns
    opened = {name: _open(kind, path, threads) for name, (kind, path) in arts.items()}
    rng = np.random.default_rng(0)
    xs = {b: rng.standard_normal((b, 3, size, size)).astype(np.float32) for b in (1, 8)}
    for p in opened.values():  # allocations, kernel selection and the throughput model's compile happen here
        for b in (1, 8):
            for _ in range(2):
                p.predict_heatmaps(xs[b])
    times = {name: {1: [], 8: []} for name in opened}
    for i in range(iters):
        for b in (1, 8):
            if b == 8 and i % 2:  # batch 8 costs 8x: every second round keeps the run short
                continue
            for name in rng.permutation(list(opened)):
                t = now()
                opened[name].predict_heatmaps(xs[b])
                times[name][b].append((now() - t) / 1e6)
    out = {}
    for name, t in times.items():
        one, eight = np.asarray(t[1]), np.asarray(t[8])
        out[name] = {"p50_ms_b1": float(np.median(one)), "p10_ms_b1": float(np.percentile(one, 10)),
                     "p90_ms_b1": float(np.percentile(one, 90)), "p50_ms_b8": float(np.median(eight)),
                     "throughput_b8": 8000.0 / float(np.median(eight))}
    return out


def _ov_ops(path: Path, size: int, threads: int, runs: int = 5) -> dict[str, float]:
    """Share (%) of OpenVINO CPU time per executed kernel type (its per-layer perf counters, PERF_COUNT), batch 1.

    Keys are "layer type/kernel" (e.g. "Convolution/brgconv_avx512_core_int8"): the kernel says whether a layer ran
    in int8 or f32.
    """
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {
        "PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    totals: dict[str, float] = {}
    for i in range(runs + 1):
        request.infer({0: x})
        if i == 0:
            continue  # the first run includes one-time work
        for info in request.get_profiling_info():
            key = f"{info.node_type}/{info.exec_type}"
            totals[key] = totals.get(key, 0.0) + info.real_time.total_seconds()
    whole = sum(totals.values()) or 1.0
    return {k: 100.0 * v / whole for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) if v > 0}


def _nme(arts: dict[str, tuple[str, Path]], data: Path, threads: int) -> dict[str, float]:
    from cunet.evaluate.accuracy import evaluate

    return {name: float(evaluate(path, data, backend=kind, threads=threads)["nme"])
            for name, (kind, path) in arts.items() if not kind.startswith("raw-")}


def _table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="CPU INT8, one interleaved run per model (inference only)", title_justify="left")
    cols = ("model", "artifact", "params M", "GMACs", "b1 p50 ms", "p10-p90", "vs ORT FP32", "vs NNCF", "b8 p50 ms",
            "b8 img/s", "MB", "x smaller", "peak RSS MB", "NME %", "Δ NME")
    for i, c in enumerate(cols):
        table.add_column(c, justify="left" if i < 2 else "right", no_wrap=True)

    def f(v, fmt):
        return "—" if v is None else format(v, fmt)

    for r in rows:
        table.add_row(r["model"], r["artifact"], f(r["params"] / 1e6, ".2f"), f(r["gmacs"], ".1f"),
                      f(r["p50_ms_b1"], ".1f"), f"{r['p10_ms_b1']:.1f}-{r['p90_ms_b1']:.1f}",
                      f(r["speedup_b1"], ".2f") + "×", f(r["vs_nncf_default_b1"], ".2f") + "×",
                      f(r["p50_ms_b8"], ".1f"), f(r["throughput_b8"], ".1f"), f(r["size_mb"], ".2f"),
                      f(r["size_ratio"], ".2f"), f(r["peak_rss_mb"], ".0f"), f(r["nme"], ".3f"),
                      f(r["delta_nme"], "+.3f"))
    Console(stderr=True, width=200).print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="face8,tiny")
    ap.add_argument("--iters", type=int, default=15, help="Rounds of batch-1 calls (batch 8: every second round).")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=32, help="Calibration images for every INT8 recipe.")
    ap.add_argument("--train-epochs", type=int, default=4, help="cunet-tiny's training (issue 26 measures 4).")
    ap.add_argument("--tiny-checkpoint", type=Path)
    ap.add_argument("--face8-checkpoint", type=Path)
    ap.add_argument("--peer", action="store_true", help="Add FAN-4 rows (needs face-alignment, installed as docs/int8.md says).")
    ap.add_argument("--work", type=Path, default=_RESULTS.parent / "cpu_int8-work")
    ap.add_argument("--out", type=Path, default=_RESULTS)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="Time wall seconds (an idle machine) or the process's CPU seconds (a loaded one, --threads 1).")
    ap.add_argument("--rss-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        kind, path, size, threads = args.rss_child
        _rss_child(kind, path, int(size), int(threads))
        return
    from cunet.evaluate.profile import environment
    from cunet.io import write_json

    rows: list[dict] = []
    for key in args.models.split(","):
        variant, size = _SIZES[key]
        data = _synth(args.work, size)
        ckpt, trained = _checkpoint(args, key, args.work, data)
        arts = _build(key, ckpt, data, args.work, args.samples)
        if args.peer and key == "face8":
            arts.update(_fan_artifacts(args.work, data, args.samples))
        _log(f"{variant}: timing {len(arts)} artifacts, {args.iters} interleaved rounds, {args.threads} threads")
        timed = _time(arts, size, args.threads, args.iters, args.clock)
        sizes = _sizes(key, args.peer)
        nme = _nme(arts, data, args.threads) if trained else {}
        ops = {name: _ov_ops(path, size, args.threads) for name, (kind, path) in arts.items()
               if kind in ("openvino", "raw-ov")}
        fp32_bytes = _bytes(arts["ort-fp32"][1])
        for name, (kind, path) in arts.items():
            t = timed[name]
            pre = "fan4-" if name.startswith("fan4-") else ""  # a peer's ratios are to its own FP32 and NNCF rows
            params, gmacs = sizes[pre]
            rows.append({"model": "FAN-4" if pre else variant, "input_size": size,
                         "artifact": name, "backend": kind, "path": str(path), "params": params, "gmacs": gmacs,
                         **t, "speedup_b1": timed[f"{pre}ort-fp32"]["p50_ms_b1"] / t["p50_ms_b1"],
                         "vs_nncf_default_b1": timed[f"{pre}ov-nncf-default"]["p50_ms_b1"] / t["p50_ms_b1"],
                         "size_mb": _bytes(path) / 1e6, "size_ratio": fp32_bytes / _bytes(path),
                         "peak_rss_mb": _peak_rss(kind, path, size, args.threads),
                         "nme": nme.get(name), "delta_nme": (nme[name] - nme["ort-fp32"]) if name in nme else None,
                         "trained": trained, "ov_op_share": ops.get(name)})
    _table(rows)
    for r in rows:
        if r["ov_op_share"]:
            top = ", ".join(f"{k} {v:.0f}%" for k, v in list(r["ov_op_share"].items())[:6])
            _log(f"{r['model']} {r['artifact']} OpenVINO time by layer/kernel: {top}")
    goals = _goals(rows)
    for g, v in goals.items():
        _log(f"{g}: " + ", ".join(f"{k} {x:.2f}" for k, x in v.items()))
    doc = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "threads": args.threads,
           "iters": args.iters, "samples": args.samples, "clock": args.clock, "environment": environment(),
           "goals": goals, "rows": rows}
    write_json(args.out, doc)
    _log(f"wrote {args.out}")


def _goals(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Issue 26's ratios per model (batch-1 p50): the openvino recipe vs NNCF's defaults and vs ORT FP32; for
    cunet-face-8 with --peer, its fastest INT8 row vs FAN-4's fastest INT8 row."""
    out: dict[str, dict[str, float]] = {}
    by_model: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_model.setdefault(r["model"], {})[r["artifact"]] = r
    for model, rs in by_model.items():
        if "ov-int8-openvino" not in rs:
            continue
        ov = rs["ov-int8-openvino"]
        out[model] = {"openvino_vs_nncf_default": ov["vs_nncf_default_b1"], "openvino_vs_ort_fp32": ov["speedup_b1"]}
        fan = [r for name, r in by_model.get("FAN-4", {}).items() if "fp32" not in name]
        ours = [r for name, r in rs.items() if "fp32" not in name]
        if fan and model == "cunet-face-8":
            best, peer = min(ours, key=lambda r: r["p50_ms_b1"]), min(fan, key=lambda r: r["p50_ms_b1"])
            out[model]["int8_vs_fan4_int8"] = peer["p50_ms_b1"] / best["p50_ms_b1"]
    return out


if __name__ == "__main__":
    main()

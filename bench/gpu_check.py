"""GPU acceptance: every GPU path of cunet on one small model, side by side with ONNX Runtime's CPU provider.

Usage (from a source checkout, no install, no network):
    PYTHONPATH=. python bench/gpu_check.py [--out bench/results/gpu_check.json] [--iters 20]
    make gpu-check

Needs torch, onnx, onnxscript, onnxruntime (CPU build is enough), click, rich, opencv, matplotlib, filelock, pillow.
A random-weight cunet-tiny (64² input, 68 landmarks; heads scaled so every heatmap has a clear peak) is exported to
ONNX, then each row runs the same 8 inputs and compares its heatmaps with ONNX Runtime CPU (the reference):

  torch-cuda       the torch backend on CUDA (cuDNN TF32 off)                 rel. heatmap error <= 1e-3
  ort-cuda         ONNX Runtime CUDA provider (onnxruntime-gpu)              <= 5e-3 (ORT may use TF32)
  ort-trt          ONNX Runtime TensorRT provider, FP32                      <= 5e-3 (the EP's TF32 default)
  trt-fp32         `cunet compile --precision fp32` engine (TF32 off)        <= 1e-3
  trt-fp16         FP16 engine                                               <= 2e-2 (10-bit mantissa)
  trt-int8         INT8 engine of `quantize --recipe tensorrt`               <= 1.5e-1 (8-bit activations and
                                                                                weights on random weights)
  profile-device   `profile` on torch-cuda: device memory and CUDA-event time are reported
  doctor-gpu       `doctor`'s GPU list is non-empty and names device 0
  manifest-device  the manifest's device query names device 0 with its compute capability

"rel. heatmap error" is max|h - h_ref| / max|h_ref| over the batch; the landmark column is the largest landmark
difference in input pixels (decoded by the Predictor), reported, not checked (a random model's heatmaps can have
near-ties). A row whose prerequisite is missing (no CUDA device, no onnxruntime-gpu, no TensorRT, no onnxslim for
the export's simplification) is skipped with one line saying why; without a CUDA device nothing is built and every
row is skipped at once. The script exits 0 unless a row that ran failed.
Writes one JSON and prints a table. Budget: well under 8 minutes on any CUDA GPU (tiny model, 20 timed runs/row).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

TINY = dict(layers=1, order=0, channels=16, growth=8, input_size=64, num_landmarks=68)
ROWS = ("torch-cuda", "ort-cuda", "ort-trt", "trt-fp32", "trt-fp16", "trt-int8", "profile-device", "doctor-gpu",
        "manifest-device")
TOL = {"torch-cuda": 1e-3, "ort-cuda": 5e-3, "ort-trt": 5e-3, "trt-fp32": 1e-3, "trt-fp16": 2e-2, "trt-int8": 1.5e-1}


class Skip(Exception):
    """A row whose prerequisite is missing on this machine (one line: why)."""


def _need_cuda() -> None:
    from cunet.runtime import cuda

    if not cuda.available():
        have = cuda.driver_name() or "neither cuda-python nor torch"
        raise Skip(f"no CUDA device visible (asked {have})")


def _need_provider(name: str) -> None:
    _need_cuda()
    from cunet.runtime.ort_backend import ort_available_providers

    if name not in ort_available_providers():
        raise Skip(f"this onnxruntime offers no {name} (install onnxruntime-gpu)")


def _need_tensorrt() -> None:
    _need_cuda()
    if importlib.util.find_spec("tensorrt") is None:
        raise Skip("TensorRT is not installed (pip install tensorrt)")


def _save_checkpoint(path: Path, model: Any) -> None:
    from cunet.model.checkpoint import save_checkpoint

    save_checkpoint(path, model, task="face")


def _make_models(work: Path) -> tuple[Path, Path, Path]:
    """A checkpoint, its FP32 export and a folder of calibration images."""
    import cv2
    import torch

    from cunet.compile.export import export_onnx
    from cunet.model import CUNet, CUNetConfig

    torch.manual_seed(0)
    model = CUNet(CUNetConfig(**TINY)).eval()
    for head in model.heads.values():  # fresh heads are near zero: give every heatmap a clear peak
        torch.nn.init.normal_(head.conv.weight, std=1.0)
    ckpt = work / "tiny.pt"
    _save_checkpoint(ckpt, model)
    onnx_path = work / "tiny.onnx"
    export_onnx(ckpt, onnx_path, simplify=importlib.util.find_spec("onnxslim") is not None)
    images = work / "calib"
    images.mkdir()
    for i, image in enumerate(_frames(16, seed=0)):
        cv2.imwrite(str(images / f"{i}.png"), image)
    return ckpt, onnx_path, images


def _frames(n: int, seed: int) -> list[np.ndarray]:
    """Smooth random 96x96 BGR frames (calibration and test inputs alike: INT8 ranges must cover the test)."""
    import cv2

    rng = np.random.default_rng(seed)
    return [cv2.GaussianBlur(rng.integers(0, 256, (96, 96, 3), np.uint8), (9, 9), 3) for _ in range(n)]


def _run(path: Path, backend: str, device: str | None, x: np.ndarray, images: list[np.ndarray],
         iters: int) -> dict[str, Any]:
    from cunet.runtime import open_predictor

    with open_predictor(path, backend=backend, device=device) as p:
        heatmaps = p.predict_heatmaps(x)
        landmarks = p.predict(images)
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            p.predict_heatmaps(x)
            times.append((time.perf_counter() - t0) * 1e3)
        return {"heatmaps": heatmaps, "landmarks": landmarks, "provider": p.provider, "ms": float(np.median(times))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench/results/gpu_check.json")
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    try:
        _need_cuda()
    except Skip as e:  # nothing can run: say so per row without building the model
        return _finish([{"row": name, **_BLANK, "status": "skip", "why": str(e)} for name in ROWS], args.out, started)
    return _finish(_run_rows(args.iters), args.out, started)


def _run_rows(iters: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    from cunet.tempdirs import temp_dir

    with temp_dir("gpu-check") as tmp:
        work = Path(tmp)
        ckpt, onnx_path, calib = _make_models(work)
        images = _frames(8, seed=1)
        from cunet.runtime import open_predictor

        with open_predictor(onnx_path, backend="ort-cpu") as p:
            x = p.preprocess(images)[0]  # the Predictor's own crops: the inputs every row sees
        ref = _run(onnx_path, "ort-cpu", None, x, images, iters)
        rows.append({"row": "ort-cpu (reference)", "status": "ok", "provider": ref["provider"], "ms": ref["ms"],
                     "why": "", "rel_err": 0.0, "tolerance": None, "landmark_max_px": 0.0})

        def compare(name: str, make: Callable[[], tuple[Path, str, str | None]]) -> None:
            def go() -> dict[str, Any]:
                path, backend, device = make()
                got = _run(path, backend, device, x, images, iters)
                err = float(np.abs(got["heatmaps"] - ref["heatmaps"]).max() / np.abs(ref["heatmaps"]).max())
                px = float(np.abs(got["landmarks"] - ref["landmarks"]).max())
                ok = err <= TOL[name]
                return {"status": "ok" if ok else "fail", "provider": got["provider"], "ms": got["ms"],
                        "rel_err": err, "tolerance": TOL[name], "landmark_max_px": px,
                        "why": "" if ok else f"relative heatmap error {err:.2e} > {TOL[name]:.0e}"}
            rows.append({"row": name, **_guard(go)})

        def torch_cuda() -> tuple[Path, str, str | None]:
            _need_cuda()
            import torch

            if not torch.cuda.is_available():
                raise Skip("this torch has no CUDA")
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
            return ckpt, "torch", "cuda:0"

        def ort(provider: str, backend: str) -> Callable[[], tuple[Path, str, str | None]]:
            def make() -> tuple[Path, str, str | None]:
                _need_provider(provider)
                return onnx_path, backend, "cuda:0"
            return make

        def engine(precision: str) -> Callable[[], tuple[Path, str, str | None]]:
            def make() -> tuple[Path, str, str | None]:
                _need_tensorrt()
                from cunet.compile.tensorrt import compile_engine

                src = onnx_path
                if precision == "int8":
                    from cunet.compile.quantize import quantize

                    src = work / "tiny.int8.onnx"
                    quantize(onnx_path, src, "tensorrt", calib, samples=16, cache_dir=work / "calib-cache")
                out = work / f"tiny.{precision}.engine"
                compile_engine(src, out, precision, batch="1:8:8", timing_cache=work / "trt.cache")
                return out, "tensorrt", "cuda:0"
            return make

        compare("torch-cuda", torch_cuda)
        compare("ort-cuda", ort("CUDAExecutionProvider", "ort-cuda"))
        compare("ort-trt", ort("TensorrtExecutionProvider", "ort-trt"))
        for precision in ("fp32", "fp16", "int8"):
            compare(f"trt-{precision}", engine(precision))
        rows.append({"row": "profile-device", **_guard(lambda: _profile_row(ckpt))})
        rows.append({"row": "doctor-gpu", **_guard(_doctor_row)})
        rows.append({"row": "manifest-device", **_guard(_manifest_row)})
    return rows


def _finish(rows: list[dict[str, Any]], out_path: str, started: float) -> int:
    from cunet.evaluate.profile import environment

    on_gpu = any(r["status"] != "skip" and r["row"] in ROWS for r in rows)
    doc = {"format": "cunet-gpu-check", "seconds": round(time.perf_counter() - started, 1), "rows": rows,
           "environment": environment("cuda" if on_gpu else "cpu")}
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    from cunet.io import write_json

    write_json(out, doc)
    _print_table(rows)
    print(f"wrote {out} ({doc['seconds']} s)")
    return 1 if any(r["status"] == "fail" for r in rows) else 0


_BLANK: dict[str, Any] = {"provider": None, "ms": None, "rel_err": None, "tolerance": None, "landmark_max_px": None}


def _guard(go: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    base = dict(_BLANK)
    try:
        return {**base, **go()}
    except Skip as e:
        return {**base, "status": "skip", "why": str(e)}
    except Exception as e:  # a row that ran and broke: say how, keep going with the others
        line = (str(e).splitlines() or [""])[0][:200]
        traceback.print_exc(file=sys.stderr)
        return {**base, "status": "fail", "why": f"{type(e).__name__}: {line}"}


def _profile_row(ckpt: Path) -> dict[str, Any]:
    _need_cuda()
    from cunet.evaluate.profile import profile

    report = profile(ckpt, backend="torch", batch_sizes=(1, 8), warmup=3, iters=10, device="cuda:0")
    r = report["results"][-1]
    ok = r["device_memory_mb"] is not None and r["device_inference_ms"] is not None
    return {"status": "ok" if ok else "fail", "provider": report["provider"], "ms": r["latency_ms"]["total"]["p50"],
            "why": f"device memory {r['device_memory_mb']} MB ({r['device_memory_scope']}), CUDA-event p50 "
                   f"{(r['device_inference_ms'] or {}).get('p50')} ms on {report['environment']['device']}"}


def _doctor_row() -> dict[str, Any]:
    _need_cuda()
    from cunet.commands.doctor import machine_report

    gpus = machine_report()["gpus"]
    ok = bool(gpus) and gpus[0]["index"] == 0 and bool(gpus[0]["name"])
    return {"status": "ok" if ok else "fail", "why": "; ".join(f"{g['name']} ({g['compute_capability']})"
                                                               for g in gpus) or "no GPU listed"}


def _manifest_row() -> dict[str, Any]:
    _need_cuda()
    from cunet.runtime.manifest import current_device

    info = current_device("n/a", 0)
    ok = bool(info.gpu_name) and info.compute_capability.count(".") == 1
    return {"status": "ok" if ok else "fail", "why": f"{info.gpu_name}, compute capability {info.compute_capability}"}


def _print_table(rows: list[dict[str, Any]]) -> None:
    def fmt(v: Any, spec: str) -> str:
        return "—" if v is None else format(v, spec)

    head = f"{'row':<20} {'status':<6} {'ms p50':>8} {'rel err':>9} {'tol':>7} {'lm px':>7}  detail"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['row']:<20} {r['status']:<6} {fmt(r['ms'], '.2f'):>8} {fmt(r['rel_err'], '.1e'):>9} "
              f"{fmt(r['tolerance'], '.0e'):>7} {fmt(r['landmark_max_px'], '.2f'):>7}  {r['why'] or r['provider']}")


if __name__ == "__main__":
    sys.exit(main())

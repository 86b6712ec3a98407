"""`cunet doctor`: what this machine can really run — torch device, ONNX Runtime providers that load, TensorRT, GPU.

"Available" is not "works": onnxruntime-gpu lists CUDAExecutionProvider on machines without CUDA libraries and
then silently runs on the CPU. So every offered provider is tried with a one-node model and counts only if the
session really kept it (`session.get_providers()`). TensorRT is imported (and its ONNX Runtime provider tried) only
when a CUDA device is visible, because without one it can abort the process instead of raising.
"""

from __future__ import annotations

import importlib.util
import platform
from typing import Any

import click

from cunet.commands._common import console, emit_json, json_option, print_table

__all__ = ["doctor", "machine_report"]

_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def _probe_model() -> bytes:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _ort_providers(cuda: bool) -> dict[str, Any]:
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError:
        return {"installed": False, "version": None, "providers": []}
    model = _probe_model()
    found = []
    for name in ort.get_available_providers():
        if name == "TensorrtExecutionProvider" and not cuda:
            found.append({"name": name, "loads": False, "detail": "not tried: no CUDA device (TensorRT needs one)"})
            continue
        opts = ort.SessionOptions()
        opts.log_severity_level = 4  # the fallback is detected below, ORT's own messages would only repeat it
        try:
            session = ort.InferenceSession(model, opts, providers=[name])
            session.run(None, {"x": np.ones((1, 4), np.float32)})
            got = session.get_providers()
        except Exception as e:  # ORT raises its own exception types when a provider's libraries are missing
            detail = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}"
            found.append({"name": name, "loads": False, "detail": detail})
            continue
        ok = bool(got) and got[0] == name
        found.append({"name": name, "loads": ok, "detail": "ok" if ok else f"fell back to {got[0] if got else 'none'}"})
    return {"installed": True, "version": ort.__version__, "providers": found}


def _torch_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"installed": False, "version": None, "device": None}
    return {
        "installed": True,
        "version": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cuda_build": torch.version.cuda,
        "threads": torch.get_num_threads(),
    }


def _gpus() -> list[dict[str, Any]]:
    """Every visible CUDA device, asked through cunet's device layer (cuda-python, else torch): what engines use."""
    from cunet.runtime import cuda

    return [{"index": d.index, "name": d.name, "compute_capability": d.compute_capability,
             "memory_mb": round(d.total_memory / 1e6)} for d in cuda.visible()]


def _tensorrt_info(cuda: bool) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    if importlib.util.find_spec("tensorrt") is None:
        return {"installed": False, "version": None, "detail": "not installed: pip install 'cunet[gpu]' on a GPU "
                                                                "machine"}
    if not cuda:
        dist = None
        for name in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12"):
            try:
                dist = version(name)
                break
            except PackageNotFoundError:
                continue
        return {"installed": True, "version": dist, "detail": "installed but not imported: no CUDA device"}
    try:
        import tensorrt as trt
    except ImportError as e:  # the PyPI stub package raises when its libraries were never fetched
        return {"installed": True, "version": None, "detail": f"cannot import: {str(e).splitlines()[0][:160]}"}
    return {"installed": True, "version": trt.__version__, "detail": "ok"}


def _cpu_info() -> dict[str, Any]:
    from cunet.evaluate.profile import environment

    env = environment()
    return {"model": env["cpu"], "threads": env["cpu_count"], "usable": env["cpus_usable"], "machine": env["machine"]}


def machine_report() -> dict[str, Any]:
    """Everything `cunet doctor` reports, as one JSON-ready dict.

    Returns:
        {"cunet", "python", "os", "cpu": {"model", "threads", "usable", "machine"}, "torch": {"installed",
        "version", "device", "cuda_build", "threads"}, "gpus": [{"index", "name", "compute_capability",
        "memory_mb"}] (from cunet's CUDA device layer), "cuda_binding": "cuda-python" | "torch" | None,
        "onnxruntime": {"installed", "version", "providers": [{"name", "loads", "detail"}]},
        "tensorrt": {"installed", "version", "detail"}, "openvino": {"installed", "version", "devices"},
        "backends": [cunet backend names this machine runs],
        "engines": {"can_build": bool, "reason": str | None}}.
    """
    import cunet
    from cunet.compile.tensorrt import unavailable_reason
    from cunet.runtime import available_backends
    from cunet.runtime.ov_backend import openvino_info

    from cunet.runtime import cuda as device_layer

    torch_info, gpus = _torch_info(), _gpus()
    cuda = bool(gpus)
    ort = _ort_providers(cuda)
    loads = {p["name"] for p in ort["providers"] if p["loads"]}
    # available_backends lists what is offered; keep only ORT backends whose provider really loaded here.
    needs = {"ort-cpu": "CPUExecutionProvider", "ort-cuda": "CUDAExecutionProvider",
             "ort-trt": "TensorrtExecutionProvider"}
    backends = [b for b in available_backends() if b not in needs or needs[b] in loads]
    reason = unavailable_reason()
    trt = _tensorrt_info(cuda)
    if reason is None and trt["detail"] != "ok":
        reason = f"TensorRT {trt['detail']}"
    if reason is not None and "tensorrt" in backends:
        backends.remove("tensorrt")
    return {
        "cunet": cunet.__version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_info(),
        "torch": torch_info,
        "gpus": gpus,
        "cuda_binding": device_layer.driver_name(),
        "onnxruntime": ort,
        "tensorrt": trt,
        "openvino": openvino_info(),
        "backends": backends,
        "engines": {"can_build": reason is None, "reason": reason},
    }


@click.command()
@json_option
def doctor(as_json):
    """Report what this machine can run: torch device, ONNX Runtime providers, TensorRT, GPU, CPU.

    \b
    Each ONNX Runtime provider is tried with a one-node model and counts only if the session kept it
    (onnxruntime-gpu lists CUDA even where it then falls back to the CPU). TensorRT is imported only when a
    CUDA device is visible. `backends` lists the values of --backend that work here.
    \b
      cunet doctor
      cunet doctor --json
    """
    report = machine_report()
    if as_json:
        emit_json(report)
        return
    t, o, trt = report["torch"], report["onnxruntime"], report["tensorrt"]
    rows = [
        ("cunet / python", f"{report['cunet']} / {report['python']} ({report['os']})"),
        ("CPU", f"{report['cpu']['model']} · {report['cpu']['usable']} of {report['cpu']['threads']} threads usable"),
        ("torch", f"{t['version']} · device {t['device']}" if t["installed"] else "not installed"),
    ]
    rows.append(("CUDA binding", report["cuda_binding"] or "none (pip install 'cunet[gpu]' for cuda-python)"))
    rows += [(f"GPU {g['index']}", f"{g['name']} · compute capability {g['compute_capability']} · "
              f"{g['memory_mb']:,} MB") for g in report["gpus"]] or [("GPU", "none visible")]
    rows.append(("onnxruntime", o["version"] or "not installed"))
    rows += [(f"  {p['name']}", ("loads" if p["loads"] else "does not load") + ("" if p["loads"] else
             f": {p['detail']}")) for p in o["providers"]]
    rows.append(("TensorRT", trt["detail"] if not trt["version"] else f"{trt['version']} · {trt['detail']}"))
    ov = report["openvino"]
    rows.append(("OpenVINO", f"{ov['version']} · devices {', '.join(ov['devices']) or 'none'}" if ov["installed"]
                 else "not installed (pip install 'cunet[openvino]')"))
    rows.append(("backends that run here", ", ".join(report["backends"]) or "none"))
    engines = report["engines"]
    # The reason usually repeats the TensorRT and GPU rows above; say it once.
    said = trt["detail"] != "ok" or not report["gpus"]
    rows.append(("TensorRT engines", "can build and run" if engines["can_build"] else
                 "no: needs TensorRT and a CUDA device, see the rows above" if said else f"no: {engines['reason']}"))
    print_table("cunet doctor", ["", "value"], rows)  # print_table's cells are plain text: no markup escaping
    if not engines["can_build"]:
        console().print("GPU paths (ort-cuda, ort-trt, tensorrt, `cunet compile`) are unavailable on this machine.")

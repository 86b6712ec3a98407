"""The ONNX Runtime backend: CPU, CUDA and TensorRT execution providers over the same `.onnx` file.

ONNX Runtime silently falls back to the CPU provider when a GPU provider cannot start (no device, missing CUDA or
cuDNN libraries). A benchmark that asked for CUDA and measured the CPU would be a lie, so after the session exists
its real providers are compared with the request: an explicit backend that did not get its provider is an error,
"auto" records what it got in `provider`.

The TensorRT provider builds an engine when a session opens; its engine and timing caches live in the user's cache
folder (`$XDG_CACHE_HOME/cunet/ort-trt/<model sha256>-<device>/`, never beside the model), so the next session on
the same model and device loads instead of rebuilding. An engine is only valid for the TensorRT and GPU that built it,
and ONNX Runtime names its cache files by the model alone, so a stamp in the folder records the TensorRT and
onnxruntime versions and the GPU (name, UUID, compute capability): when they change (an upgrade, another card) the
folder is emptied, and the session rebuilds, with a line on stderr saying which field changed. It is never handed a model its ONNX parser rejects: a
`--recipe cpu` INT8 model (uint8, nonzero zero points) or, with TensorRT 11, an onnxruntime older than 1.27 (the
first whose provider links TensorRT 11). "auto" then falls back to CUDA and says why in `note`; "ort-trt" refuses.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from cunet.errors import CunetError
from cunet.runtime.base import Backend

__all__ = ["OrtBackend", "ORT_PROVIDERS", "LOWBIT_CPU_CONFIG", "ort_available_providers", "trt_cache_dir",
           "trt_cache_key", "prepare_trt_cache", "trt_provider_problem", "metadata_input_rejected"]

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
#: backend name → provider chain, the first one being the one asked for.
ORT_PROVIDERS = {"ort-trt": (TRT, CUDA, CPU), "ort-cuda": (CUDA, CPU), "ort-cpu": (CPU,)}

#: Session config for a low-bit model (`cunet export` of a `--bits-w` checkpoint) on the CPU provider. Its Q/DQ
#: pairs sit on conv inputs and weights only (training never quantized conv outputs), so ONNX Runtime's QDQ fusion
#: finds no QLinearConv to build, yet still keeps every weight DequantizeLinear out of constant folding: each run
#: dequantized all weights again. Disabling the fusion folds them once; the outputs are bit-identical (max |diff| 0.0
#: on the bench's cunet-tiny w1a8) and batch-1 latency went 15.8 → 10.5 ms (FP32 9.2 ms, 1 thread, one run).
LOWBIT_CPU_CONFIG = {"session.disable_quant_qdq": "1"}


@contextlib.contextmanager
def metadata_input_rejected(path: str | os.PathLike) -> Iterator[None]:
    """One line when ONNX Runtime rejects, inside the block, the input `path`'s cunet metadata describes.

    Inputs are shaped and typed from the model's own metadata (inference, calibration, the `--max-drop` check), so
    an `InvalidArgument` there (another dtype, rank or size) means the metadata describes another graph: copied
    metadata, or an ONNX file that is not the exported cunet model. A `Fail` or `RuntimeException` while running that
    input (a node that cannot compute it: a Reshape to another size) says the same of the file, not of cunet.
    """
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

    try:
        yield
    except InvalidArgument as e:
        raise CunetError(f"{path}: the graph rejects the input its cunet metadata describes ({_detail(e)})") from e
    except (Fail, RuntimeException) as e:
        raise CunetError(f"{path}: the graph fails on the input its cunet metadata describes ({_detail(e)})") from e


def _detail(e: Exception) -> str:
    """ONNX Runtime's message on one line, its log's terminal colour codes removed, at most 200 characters."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(e)).split())[:200]


def ort_available_providers() -> list[str]:
    """The execution providers this onnxruntime build offers (empty when onnxruntime is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


def _dist_version(*names: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def _major_minor(text: str | None) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def trt_provider_problem(recipe: str | None) -> str | None:
    """Why ONNX Runtime's TensorRT provider must not get this model here, or None. Never imports TensorRT."""
    if recipe == "cpu":
        return ("an INT8 model of --recipe cpu (uint8, nonzero zero points) is rejected by TensorRT's ONNX parser; "
                "quantize with --recipe tensorrt for TensorRT")
    trt = _major_minor(_dist_version("tensorrt", "tensorrt-cu13", "tensorrt-cu12"))
    ort = _major_minor(_dist_version("onnxruntime-gpu", "onnxruntime"))
    if trt is not None and ort is not None and trt[0] >= 11 and ort < (1, 27):
        return (f"TensorRT {trt[0]}.{trt[1]} needs onnxruntime-gpu >= 1.27 for its provider, this is "
                f"{ort[0]}.{ort[1]}")
    return None


def trt_cache_dir(model_sha256: str, device_id: int) -> Path:
    """The TensorRT provider's engine/timing cache folder for one model on one device (user cache, not the model's
    folder): `$XDG_CACHE_HOME/cunet/ort-trt/<sha256[:16]>-<device>` (`~/.cache` when XDG_CACHE_HOME is unset); the
    device part is the GPU's name where a CUDA device is visible, so two GPU models never share engines."""
    from cunet.runtime import cuda

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    device = f"cuda{device_id}"
    if cuda.available():
        device += "-" + re.sub(r"[^A-Za-z0-9]+", "-", cuda.properties(device_id).name).strip("-").lower()
    return base / "cunet" / "ort-trt" / f"{model_sha256[:16]}-{device}"


#: The stamp file in each TensorRT EP cache folder (`prepare_trt_cache`).
CACHE_STAMP = "cunet-cache.json"


def trt_cache_key(device_id: int) -> dict[str, str | None]:
    """What an ORT TensorRT-EP engine is tied to: the TensorRT and onnxruntime versions (package metadata, TensorRT is
    never imported) and the GPU's name, UUID and compute capability (None fields where no CUDA device is visible)."""
    from cunet.runtime import cuda

    props = cuda.properties(device_id) if cuda.available() else None
    return {"tensorrt": _dist_version("tensorrt", "tensorrt-cu13", "tensorrt-cu12"),
            "onnxruntime": _dist_version("onnxruntime-gpu", "onnxruntime"),
            "gpu": None if props is None else props.name, "gpu_uuid": None if props is None else props.uuid,
            "compute_capability": None if props is None else props.compute_capability}


def prepare_trt_cache(model_sha256: str, device_id: int) -> tuple[Path, str | None]:
    """The cache folder of `trt_cache_dir`, emptied when its stamp is not `trt_cache_key` now, and stamped.

    Returns:
        (the folder, None or the line saying why its engines were dropped and will be rebuilt).
    """
    import json

    from cunet.io import write_json

    folder = trt_cache_dir(model_sha256, device_id)
    key = trt_cache_key(device_id)
    stamp = folder / CACHE_STAMP
    why = None
    if folder.is_dir() and any(p.name != CACHE_STAMP for p in folder.iterdir()):
        try:
            old = json.loads(stamp.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if not isinstance(old, dict):
            why = "its engines carry no stamp (an older cunet)"
        elif old != key:
            changed = [f"{k} {old.get(k)!r} → {key.get(k)!r}" for k in sorted(set(old) | set(key))
                       if old.get(k) != key.get(k)]
            why = "built with " + "; ".join(changed)
        if why is not None:  # cunet's own folder: every file in it is ONNX Runtime's cache or the stamp
            for p in folder.iterdir():
                if p.is_file():
                    p.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    if why is not None or not stamp.is_file():
        write_json(stamp, key)
    note = None if why is None else f"rebuilding the TensorRT engine cache in {folder}: {why}"
    return folder, note


class OrtBackend(Backend):
    """An `onnxruntime.InferenceSession` on the providers of `backend`.

    Args:
        path: the `.onnx` file.
        backend: "ort-cpu", "ort-cuda", "ort-trt", or "auto" (TensorRT EP > CUDA EP > CPU, whichever this build offers).
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
        device_id: CUDA device for the GPU providers.
        precision: the model's precision from its metadata; the TensorRT EP needs its INT8/FP16 flag set to keep
            Q/DQ or half-precision layers in those types.
        lowbit: the model is a low-bit export (metadata `quant`): on the CPU provider the session uses
            `LOWBIT_CPU_CONFIG`.
        recipe: the model's INT8 recipe from its metadata ("tensorrt", "cpu" or None).

    Attributes:
        note: why "auto" skipped a provider it could have used (None when it skipped none).
    """

    note: str | None = None

    def __init__(
        self, path: Path, backend: str = "auto", threads: int | None = None, device_id: int = 0, precision: str = "fp32",
        lowbit: bool = False, recipe: str | None = None,
    ) -> None:
        available = ort_available_providers()
        if not available:
            raise CunetError(f"{path}: onnxruntime is not installed (pip install 'cunet[cpu]' or 'cunet[gpu]')")
        trt_problem = trt_provider_problem(recipe) if TRT in available else None
        if backend == "ort-trt" and trt_problem:
            raise CunetError(f"{path}: backend ort-trt: {trt_problem}")
        if backend == "auto":
            chain = tuple(p for p in ORT_PROVIDERS["ort-trt"] if p in available and not (p == TRT and trt_problem))
            if trt_problem:
                self.note = f"skipped the TensorRT provider: {trt_problem}"
        elif backend in ORT_PROVIDERS:
            chain = ORT_PROVIDERS[backend]
            if chain[0] not in available:
                raise CunetError(
                    f"{path}: backend {backend} needs {chain[0]}, but this onnxruntime only offers "
                    f"{', '.join(available)} (install onnxruntime-gpu on a CUDA machine)"
                )
        else:
            raise CunetError(f"{path}: {backend!r} is not an ONNX Runtime backend ({', '.join(ORT_PROVIDERS)})")
        self.name = backend
        self._path = Path(path)
        self._chain = chain
        self._threads = threads
        self._device_id = device_id
        self._precision = precision
        self._lowbit = lowbit
        self._session = None
        self._input_dtype = np.float32

    def _provider_options(self) -> list[tuple[str, dict]]:
        out: list[tuple[str, dict]] = []
        for p in self._chain:
            if p == TRT:
                from cunet.runtime.manifest import sha256_file

                cache = str(trt_cache_dir(sha256_file(self._path), self._device_id))
                out.append((p, {
                    "device_id": self._device_id,
                    "trt_int8_enable": self._precision == "int8",
                    "trt_fp16_enable": self._precision == "fp16",
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": cache,
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": cache,
                }))
            elif p == CUDA:
                out.append((p, {"device_id": self._device_id}))
            else:
                out.append((p, {}))
        return out

    def open(self) -> None:
        import onnxruntime as ort

        if self._session is not None:
            return
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # provider fallbacks are detected below; ORT's own warnings would only repeat them
        opts.inter_op_num_threads = 1
        if self._threads is not None:
            opts.intra_op_num_threads = self._threads
        if self._lowbit and self._chain[0] == CPU:
            for key, value in LOWBIT_CPU_CONFIG.items():
                opts.add_session_config_entry(key, value)
        chain = self._provider_options()
        if any(p == TRT for p, _ in chain):
            from cunet.console import console
            from cunet.runtime.manifest import sha256_file

            _, rebuilt = prepare_trt_cache(sha256_file(self._path), self._device_id)
            if rebuilt:  # a stale engine would be reused and then refused: say why this session builds again
                console().print(rebuilt, markup=False, highlight=False, soft_wrap=True)
        try:
            session = ort.InferenceSession(
                str(self._path), opts, providers=[p for p, _ in chain], provider_options=[o for _, o in chain]
            )
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types for unusable files
            detail = str(e).splitlines()[0][:160] if str(e) else ""
            raise CunetError(f"{self._path}: ONNX Runtime cannot load it ({type(e).__name__}: {detail})") from e
        got = session.get_providers()
        if self.name != "auto" and got[0] != self._chain[0]:
            raise CunetError(
                f"{self._path}: backend {self.name} asked for {self._chain[0]} but ONNX Runtime fell back to {got[0]} "
                "(no usable CUDA device, or CUDA/cuDNN/TensorRT libraries missing)"
            )
        # "auto" names what it became, so every report says what ran, never "auto"
        self.name = next((name for name, chain in ORT_PROVIDERS.items() if chain[0] == got[0]), self.name)
        self.provider = got[0]
        self.device = "cpu" if got[0] == CPU else f"cuda:{self._device_id}"
        self._session = session
        inp = session.get_inputs()[0]
        self._input_name = inp.name
        self._output_name = session.get_outputs()[0].name
        self._input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32

    def infer(self, x: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise RuntimeError("OrtBackend.infer called before open()")
        with metadata_input_rejected(self._path):
            (out,) = self._session.run(
                [self._output_name], {self._input_name: np.ascontiguousarray(x, self._input_dtype)}
            )
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self._session = None

"""The ONNX Runtime backend: CPU, CUDA and TensorRT execution providers over the same `.onnx` file.

ONNX Runtime silently falls back to the CPU provider when a GPU provider cannot start (no device, missing CUDA or
cuDNN libraries). A benchmark that asked for CUDA and measured the CPU would be a lie, so after the session exists
its real providers are compared with the request: an explicit backend that did not get its provider is an error,
"auto" records what it got in `provider`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cunet.errors import CunetError
from cunet.runtime.base import Backend

__all__ = ["OrtBackend", "ORT_PROVIDERS", "LOWBIT_CPU_CONFIG", "ort_available_providers"]

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
#: backend name → provider chain, the first one being the one asked for.
ORT_PROVIDERS = {"ort-trt": (TRT, CUDA, CPU), "ort-cuda": (CUDA, CPU), "ort-cpu": (CPU,)}

#: Session config for a low-bit model (`cunet export` of a `--bits-w` checkpoint) on the CPU provider. Its Q/DQ
#: pairs sit on conv inputs and weights only (training never quantized conv outputs), so ONNX Runtime's QDQ fusion
#: finds no QLinearConv to build, yet still keeps every weight DequantizeLinear out of constant folding: each run
#: dequantized all weights again. Disabling the fusion folds them once; the outputs are bit-identical (max |diff| 0.0
#: on the bench's cunet-tiny w1a8) and batch-1 latency went 15.8 → 10.5 ms (FP32 9.2 ms, 1 thread, one run).
LOWBIT_CPU_CONFIG = {"session.disable_quant_qdq": "1"}


def ort_available_providers() -> list[str]:
    """The execution providers this onnxruntime build offers (empty when onnxruntime is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


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
    """

    def __init__(
        self, path: Path, backend: str = "auto", threads: int | None = None, device_id: int = 0, precision: str = "fp32",
        lowbit: bool = False,
    ) -> None:
        available = ort_available_providers()
        if not available:
            raise CunetError(f"{path}: onnxruntime is not installed (pip install 'cunet[cpu]' or 'cunet[gpu]')")
        if backend == "auto":
            chain = tuple(p for p in ORT_PROVIDERS["ort-trt"] if p in available)
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
                out.append(
                    (
                        p,
                        {
                            "device_id": self._device_id,
                            "trt_int8_enable": self._precision == "int8",
                            "trt_fp16_enable": self._precision == "fp16",
                        },
                    )
                )
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
        self.provider = got[0]
        self._session = session
        inp = session.get_inputs()[0]
        self._input_name = inp.name
        self._output_name = session.get_outputs()[0].name
        self._input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32

    def infer(self, x: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise RuntimeError("OrtBackend.infer called before open()")
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        try:
            (out,) = self._session.run(
                [self._output_name], {self._input_name: np.ascontiguousarray(x, self._input_dtype)}
            )
        except InvalidArgument as e:
            # The input is shaped from the model's own metadata, so a rejected shape means the metadata describes
            # another graph (copied metadata, or an ONNX file that is not the exported cunet model).
            detail = " ".join(str(e).split())[:200]
            raise CunetError(
                f"{self._path}: the graph rejects the input its cunet metadata describes ({detail})"
            ) from e
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self._session = None

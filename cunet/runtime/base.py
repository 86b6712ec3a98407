"""The one interface every inference backend implements, and the CUDA-device probe they share.

A backend only turns a normalised batch [N,3,S,S] into heatmaps [N,K,S/4,S/4]; cropping, normalisation and decoding
live once in `cunet.runtime.predictor`, so every backend sees exactly the same inputs and is compared fairly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

__all__ = ["Backend", "cuda_device_available", "BACKENDS"]

#: Every backend name `open_predictor` accepts besides "auto".
BACKENDS = ("torch", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt", "openvino")


def cuda_device_available() -> bool:
    """True when a CUDA device is visible (asked through `cunet.runtime.cuda`: cuda-python, else torch). TensorRT
    must never be touched when this is False: without a device it can abort the process instead of raising."""
    from cunet.runtime import cuda

    return cuda.available()


class Backend(ABC):
    """Raw inference on one runtime. Allocates in `open`, frees in `close`.

    Attributes:
        name: the backend name (one of `BACKENDS`).
        provider: what really runs after `open` (e.g. "CPUExecutionProvider", "torch-cpu", "tensorrt-cuda:0").
        device: where it runs after `open`: "cpu", "cuda:N", or an OpenVINO device in lower case ("gpu", "npu").
        max_batch: the largest batch one `infer` call accepts (None: unlimited); larger batches are split by the caller.
        device_ms: device time of the last `infer` measured with CUDA events, None where there is no such clock.
    """

    name: str = ""
    provider: str | None = None
    device: str | None = None
    max_batch: int | None = None
    device_ms: float | None = None

    @abstractmethod
    def open(self) -> None:
        """Allocate the session / engine / device memory."""

    @abstractmethod
    def infer(self, x: np.ndarray) -> np.ndarray:
        """Heatmaps [N,K,S/4,S/4] float32 for inputs [N,3,S,S] float32 (N <= max_batch)."""

    @abstractmethod
    def close(self) -> None:
        """Free everything `open` allocated; calling it twice is harmless."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, provider={self.provider!r})"

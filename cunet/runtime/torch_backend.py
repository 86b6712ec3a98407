"""The PyTorch backend: a checkpoint's CU-Net in eval mode under `torch.inference_mode` (the reference every compiled
format is compared against)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cunet.runtime.base import Backend

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """Runs a `CUNet` on CPU or a CUDA device.

    Args:
        model: the CU-Net (from `cunet.model.checkpoint.model_from_checkpoint`).
        device: "cpu", "cuda" or "cuda:N".
        threads: intra-op CPU threads (`torch.set_num_threads`, process-wide), None keeps torch's default.
    """

    name = "torch"

    def __init__(self, model: Any, device: str = "cpu", threads: int | None = None) -> None:
        self._model = model
        self._device = device
        self._threads = threads
        self._open = False

    def open(self) -> None:
        import torch

        if self._threads is not None:
            torch.set_num_threads(self._threads)
        self._model.eval().to(self._device)
        self.provider = f"torch-{self._device}"
        self.device = "cuda:0" if self._device == "cuda" else self._device
        self._open = True

    def infer(self, x: np.ndarray) -> np.ndarray:
        import torch

        dev = torch.device(self._device)
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev)
            if dev.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                out = self._model(t)
                end.record()
                end.synchronize()
                self.device_ms = float(start.elapsed_time(end))
            else:
                out = self._model(t)
            return out.float().cpu().numpy()

    def close(self) -> None:
        if self._open:
            import torch

            self._model.to("cpu")
            if torch.device(self._device).type == "cuda":
                torch.cuda.empty_cache()
            self._open = False

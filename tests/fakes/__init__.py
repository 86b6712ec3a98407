"""Test doubles for what this CPU machine lacks: TensorRT's Python API and a CUDA device (see the two modules).

`install(monkeypatch, version)` puts a fake `tensorrt` of that version in `sys.modules` and the fake CUDA driver
behind `cunet.runtime.cuda`, so `cuda_device_available()` sees two devices and `import tensorrt` gets the fake.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from .cuda import DEVICES, FakeCudaDriver, FakeDevice
from .tensorrt import State, make_tensorrt

__all__ = ["FakeGpu", "install", "FakeCudaDriver", "FakeDevice", "DEVICES"]

VERSIONS = {10: "10.13.0.35", 11: "11.1.0.106"}


@dataclass
class FakeGpu:
    trt: Any
    state: State
    driver: FakeCudaDriver

    @property
    def calls(self) -> list[tuple[str, Any]]:
        return self.driver.calls

    def names(self) -> list[str]:
        """The recorded call names, in order."""
        return [name for name, _ in self.driver.calls]


def install(monkeypatch: Any, major: int = 10) -> FakeGpu:
    """Fake TensorRT `major` (10 or 11) and the fake two-device CUDA driver, undone by `monkeypatch`."""
    from cunet.runtime import cuda

    driver = FakeCudaDriver()
    trt, state = make_tensorrt(VERSIONS[major], driver)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(cuda, "_DRIVER", driver)
    monkeypatch.setattr(cuda, "_CHOSEN", True)
    return FakeGpu(trt, state, driver)

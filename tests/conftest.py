"""Fixtures shared across the test packages."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: tiny models gain nothing from two, and on a shared 2-core machine two spinning
    OpenMP threads per process slow every test several times over when other work is running."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fakes():
    """tests/fakes as a package (the suite runs with --import-mode=importlib, so tests/ is not on sys.path)."""
    import importlib.util
    import sys
    from pathlib import Path

    if "cunet_test_fakes" not in sys.modules:
        root = Path(__file__).parent / "fakes"
        spec = importlib.util.spec_from_file_location("cunet_test_fakes", root / "__init__.py",
                                                      submodule_search_locations=[str(root)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["cunet_test_fakes"] = module
        spec.loader.exec_module(module)
    return sys.modules["cunet_test_fakes"]


@pytest.fixture(params=[10, 11], ids=["trt10", "trt11"])
def fake_gpu(request, monkeypatch):
    """A fake TensorRT (10 and 11, one run each) and a fake two-device CUDA machine (tests/fakes)."""
    return _fakes().install(monkeypatch, request.param)

"""Fixtures shared across the test packages."""

from __future__ import annotations

from pathlib import Path

import pytest

#: The tiny CU-Net of the shared checkpoint: exports in seconds and runs on 64x64 crops.
TINY = dict(layers=1, order=0, channels=16, growth=8, input_size=64)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """`tiny_checkpoint(task="face", seed=0, **config)`: the path of a random-init tiny CU-Net (`TINY`, with the
    task's landmark count, overridden by `config`) written by the real `save_checkpoint`. One file per distinct
    argument set per session: callers only read it."""
    made: dict[tuple, Path] = {}

    def make(task: str = "face", seed: int = 0, **config) -> Path:
        key = (task, seed, tuple(sorted(config.items())))
        if key not in made:
            import torch

            from cunet.data.spec import get_spec
            from cunet.model import CUNet, CUNetConfig
            from cunet.model.checkpoint import save_checkpoint

            torch.manual_seed(seed)
            cfg = CUNetConfig(**{**TINY, "num_landmarks": get_spec(task).num_landmarks, **config})
            path = tmp_path_factory.mktemp("tiny") / f"{task}.pt"
            save_checkpoint(path, CUNet(cfg), task)
            made[key] = path
        return made[key]

    return make


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

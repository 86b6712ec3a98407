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

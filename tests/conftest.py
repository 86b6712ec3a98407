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

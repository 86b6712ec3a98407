"""Recomputation in backward for the memory-efficient CU-Net: checkpoint segments that change no state twice.

`checkpointed(fn, *args)` runs `fn` keeping only its arguments for backward; backward runs `fn` a second time to
rebuild what its gradients need (`torch.utils.checkpoint`, non-reentrant). A training forward moves state as well
as computing: BatchNorm updates its running statistics, a calibrated low-bit input range its running maximum.
The recomputation must compute exactly the same (BatchNorm normalises with the same batch statistics) without
moving that state a second time. So the recomputation runs inside a flag, `recomputing()`, that every stateful
layer reads: `BatchNorm2d` here, `cunet.model.quant.QuantConv2d`'s range.

Before each recomputation the C heap's free pages go back to the OS (glibc's `malloc_trim`; elsewhere nothing
happens): what a process holds at its peak is then close to what is in use, not what earlier segments left free.

The flag is thread-local because the recomputation runs in the thread that runs backward (the autograd engine's
device thread on CUDA), inside the context manager that `checkpoint`'s `context_fn` hands it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

__all__ = ["BatchNorm2d", "SavePolicy", "checkpointed", "recomputing"]

_local = threading.local()


def recomputing() -> bool:
    """True while backward recomputes a checkpointed segment (in this thread): state must not move."""
    return getattr(_local, "recomputing", False)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS, Windows)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def _recomputation() -> Iterator[None]:
    # The previous segment's recomputed activations are free now, but glibc keeps their pages: long-lived tensors
    # (segment arguments, gradients) sit between them, so the heap cannot shrink, and the next segment's tensors
    # land partly in new pages. Handing the free pages back first keeps the peak near what is in use: cunet-face-8,
    # batch 8, three steps: peak RSS growth 2208 -> 1352 MB, in use 1208 MB (bench/train_memory.py's child).
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    before = recomputing()
    _local.recomputing = True
    try:
        yield
    finally:
        _local.recomputing = before


#: Decides, for one aten op of a checkpointed segment and its arguments, whether its output is kept in forward
#: (True) instead of being recomputed in backward.
SavePolicy = Callable[[torch._ops.OpOverload, tuple[Any, ...]], bool]


def _contexts(save: SavePolicy | None) -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
    if save is None:
        return contextlib.nullcontext(), _recomputation()

    def policy(ctx: Any, op: torch._ops.OpOverload, *args: Any, **kwargs: Any) -> CheckpointPolicy:
        return CheckpointPolicy.MUST_SAVE if save(op, args) else CheckpointPolicy.PREFER_RECOMPUTE

    caching, cached = create_selective_checkpoint_contexts(policy)
    return caching, _stacked(cached, _recomputation())


@contextlib.contextmanager
def _stacked(*contexts: contextlib.AbstractContextManager) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for c in contexts:
            stack.enter_context(c)
        yield


def checkpointed(fn: Callable[..., Any], *args: Any, save: SavePolicy | None = None) -> Any:
    """`fn(*args)`, storing only `args` (and the outputs of the ops `save` picks) for backward; backward recomputes
    the rest, with `recomputing()` true.

    `fn` must compute the same thing twice: CU-Net draws no random numbers (no dropout), and every stateful layer
    it runs skips its update while recomputing. The RNG state is preserved anyway (checkpoint's default), so a
    random layer added later would still see the same draws.
    """
    return checkpoint(fn, *args, use_reentrant=False, context_fn=functools.partial(_contexts, save))


class BatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` whose running statistics move once per training step even when its forward runs twice.

    In a recomputation it normalises with the batch statistics as before but passes momentum 0, which leaves the
    running statistics bit for bit as they are (0·batch + 1·running), and does not count the batch. The running
    tensors are still passed (not None) because checkpointing requires the recomputation to save the same tensors
    as the first forward. Parameter and buffer names are those of `nn.BatchNorm2d`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.track_running_stats and recomputing()):
            return super().forward(x)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=True,
                            momentum=0.0, eps=self.eps)

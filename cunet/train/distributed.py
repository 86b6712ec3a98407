"""Where a training run executes: its device, and DDP when launched by torchrun (gloo on CPU, NCCL on CUDA).

A single process is a world of one: every helper then returns at once without touching torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from cunet.errors import CunetError
from cunet.train.options import TrainOptions

__all__ = ["Dist", "init_distributed", "broadcast", "all_mean", "run_device"]


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    started: bool = False  # this call initialised the process group (and so tears it down)

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): gloo on CPU, NCCL on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    started = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        started = True
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), started)


def broadcast(values: list[float], d: Dist) -> list[float]:
    """Rank 0's values on every rank (the validation metric and the stop decision)."""
    if d.world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.broadcast(t, src=0)
    return t.tolist()


def all_mean(total: float, count: int, d: Dist) -> float:
    if d.world > 1:
        import torch.distributed as dist

        t = torch.tensor([total, float(count)], dtype=torch.float64)
        dist.all_reduce(t)
        total, count = float(t[0]), int(t[1])
    return total / max(count, 1)


def run_device(opts: TrainOptions, d_local_rank: int) -> torch.device:
    if opts.device is not None:
        dev = torch.device(opts.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise CunetError(f"device {opts.device!r} asked for, but this machine has no CUDA device")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", d_local_rank if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0)
    return torch.device("cpu")

"""One real `cunet bench --quick` run shared by the bench tests: a tiny untrained checkpoint, 12 synthetic faces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class BenchRun:
    root: Path
    checkpoint: Path
    data: Path
    report: Path
    work: Path
    result: object  # cunet.pipeline.bench.BenchResult


@pytest.fixture(scope="session")
def bench_run(tmp_path_factory) -> BenchRun:
    import torch

    from cunet.data.synth import synthesize
    from cunet.pipeline.bench import BenchOptions, run_bench
    from cunet.model import CUNet, get_variant
    from cunet.model.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    checkpoint = root / "tiny.pt"
    save_checkpoint(checkpoint, CUNet(get_variant("cunet-tiny", input_size=64)), "face")
    data = root / "data"
    synthesize(data, "face", n=12, seed=1, image_size=96)
    report, work = root / "report", root / "work"
    # One thread: a second one only adds contention on the shared 2-core CI machines. A huge budget: nothing
    # may fail it, so this run must exit 0 (the test of a budget that is exceeded reuses these artifacts).
    result = run_bench(BenchOptions(checkpoint=checkpoint, data=data, report=report, work=work, max_drop=1e6,
                                    threads=1, quick=True, progress=False))
    return BenchRun(root, checkpoint, data, report, work, result)

"""The work folder and training faces the training benchmarks share (bench/lowbit.py, lowbit_face8.py, refine.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path


def work_and_faces(work: Path | None, data: Path | None, name: str) -> tuple[Path, Path]:
    """(the work folder, the face dataset): `work` or a new temporary `cunet-bench-NAME-*` folder; `data` or 300
    synthetic faces (seed 0) made once under it and reused by later runs with the same `--work`."""
    from cunet.data.synth import synthesize

    work = work or Path(tempfile.mkdtemp(prefix=f"cunet-bench-{name}-"))
    work.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = work / "faces"
        if not (data / "train").is_dir():
            synthesize(data, "face", n=300, seed=0)
    return work, data

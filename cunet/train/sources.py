"""The files a run starts from (`--init` weights, a `--teacher`): recorded by sha256, checked on resume, loaded.

A run's checkpoints hold `sources`: {"init": {"file", "sha256"}, "teacher": {...}} for the ones it was given. A
resumed run must continue the same recipe: a given file must have the recorded hash, a teacher left out is the
recorded file (which must still hold the same bytes: the rest of the run distils from it), and a run that had no
teacher cannot gain one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from cunet.errors import CunetError
from cunet.io import sha256_file
from cunet.train.options import SOURCE_FIELDS, TrainOptions

__all__ = ["source_records", "check_sources", "load_init", "INIT_CONFIG_FREE"]

#: `CUNetConfig` fields an --init checkpoint may differ in: they change how the model computes, not its weights.
INIT_CONFIG_FREE = ("memory_efficient",)


def _record(path: str | os.PathLike) -> dict[str, str]:
    p = Path(path)
    if not p.is_file():
        raise CunetError(f"{p}: no such checkpoint file")
    return {"file": str(p), "sha256": sha256_file(p)}


def source_records(run: TrainOptions) -> dict[str, dict[str, str]]:
    """{"init": {"file", "sha256"}, "teacher": ...} of the source files `run` names (none: {})."""
    return {name: _record(getattr(run, name)) for name in SOURCE_FIELDS if getattr(run, name) is not None}


def check_sources(opts: TrainOptions, run: TrainOptions, saved: dict[str, Any] | None) -> dict[str, dict[str, str]]:
    """The source records of `run`, checked against the resumed checkpoint `saved` (None: a new run).

    Args:
        opts: the options as given (a source left out on resume is the run's own).
        run: the resolved options (`resolve_options`).
        saved: the resumed last.pt, or None.

    Raises:
        CunetError: a missing file, or a resume whose init/teacher differs from the run's.
    """
    if saved is None:
        return source_records(run)
    recorded = saved.get("sources") or {}
    out: dict[str, dict[str, str]] = {}
    for name in SOURCE_FIELDS:
        given, rec = getattr(opts, name), recorded.get(name)
        flag = f"--{name}"
        if given is not None and rec is None:
            raise CunetError(f"{Path(run.out) / 'last.pt'}: cannot resume with {flag}: the run started without one; "
                             "train into another --out")
        if rec is None:
            continue
        if given is None and name == "init":  # the weights came from it once; a resume does not read it again
            out[name] = rec
            continue
        now = _record(given if given is not None else rec["file"])
        if now["sha256"] != rec["sha256"]:
            raise CunetError(f"{now['file']}: not the {name} file the run started from ({rec['file']}, sha256 "
                             f"{rec['sha256'][:12]}…; this one has {now['sha256'][:12]}…); train into another --out")
        out[name] = now
    return out


def load_init(model: nn.Module, path: str | os.PathLike, task: str) -> int:
    """Load the weights of cunet checkpoint `path` into `model` (built for the run, low-bit layers applied).

    The checkpoint must be of the same task and CU-Net config (`INIT_CONFIG_FREE` fields aside). A low-bit model
    starting from a full-precision checkpoint takes its weights as latent weights; calibrated input ranges
    (`act_max`), which an FP32 checkpoint has not, start from the first batch as in a fresh run.

    Returns:
        The number of tensors loaded.

    Raises:
        CunetError: unreadable checkpoint, another task or config, or weights that do not fit.
    """
    from cunet.model.checkpoint import load_checkpoint

    where = Path(path)
    ckpt = load_checkpoint(where)
    if ckpt["task"] != task:
        raise CunetError(f"{where}: --init checkpoint is for task {ckpt['task']!r}, the run trains {task!r}")
    mine = model.cfg.to_dict()
    differ = [f"{k} {v!r} (the run has {mine.get(k)!r})" for k, v in ckpt["config"].items()
              if k not in INIT_CONFIG_FREE and mine.get(k) != v]
    if differ:
        raise CunetError(f"{where}: --init checkpoint has another model config: {'; '.join(differ)}")
    state = {k: v for k, v in ckpt["model"].items() if not k.endswith(".act_max")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(".act_max")]
    if missing or unexpected:
        raise CunetError(f"{where}: --init weights do not fit the run's model ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected, e.g. {(missing or unexpected)[0]})")
    return len(state)

"""Checkpoints: one `.pt` file holding everything needed to resume training or to export the model.

Layout (a plain dict, loadable with `torch.load(weights_only=True)`):
    format: "cunet-checkpoint", format_version: 1, cunet_version
    task: "face" | "pose", config: CUNetConfig.to_dict()
    model: state_dict
    and, for resuming: optimizer, scheduler, epoch, step, best_metric, rng (`cunet.train.rng`), args (the training
    arguments)
    written by `cunet.train.trainer`, also: history (per-epoch log), metric_name, elapsed (training seconds),
    scaler (AMP fp16 only, else None) and quant (`QuantConfig.to_dict()` of a low-bit run, else None)
Written atomically through `cunet.io`, so a run killed mid-save keeps its previous checkpoint.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

import cunet
from cunet.data.spec import get_spec
from cunet.errors import CunetError
from cunet.io import write_bytes
from cunet.limits import refuse_empty
from cunet.model.config import CUNetConfig
from cunet.model.cunet import CUNet

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "model_from_checkpoint"]

FORMAT = "cunet-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, model: CUNet, task: str, **state: Any) -> None:
    """Atomically write `model` (its config and weights), the task and any resume `state` to `path`."""
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cunet_version": cunet.__version__,
        "task": task,
        "config": model.cfg.to_dict(),
        "model": model.state_dict(),
        **state,
    }
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint; anything that is not a cunet checkpoint is a one-line `CunetError`."""
    path = Path(path)
    if not path.is_file():
        raise CunetError(f"{path}: no such checkpoint file")
    refuse_empty(path)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a truncated one loses its directory
        raise CunetError(f"{path}: not a readable checkpoint (not a complete torch.save archive; truncated?)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # a whole torch.save archive whose objects weights_only refuses: not ours
        raise CunetError(f"{path}: not a cunet checkpoint (holds Python objects a checkpoint never contains)") from e
    except Exception as e:  # torch raises many types for truncated/foreign files; all mean "not readable"
        first = (str(e).strip().splitlines() or ["no detail"])[0][:120]
        raise CunetError(f"{path}: not a readable checkpoint ({type(e).__name__}: {first})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CunetError(f"{path}: not a cunet checkpoint (no '{FORMAT}' header)")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CunetError(
            f"{path}: checkpoint format {ckpt['format_version']} is newer than this cunet understands "
            f"({FORMAT_VERSION}); upgrade cunet"
        )
    for key in ("task", "config", "model"):
        if key not in ckpt:
            raise CunetError(f"{path}: checkpoint lacks '{key}'")
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["model"], dict):
        raise CunetError(f"{path}: checkpoint 'config' and 'model' must be mappings")
    try:
        cfg = CUNetConfig.from_dict(ckpt["config"])
        spec = get_spec(ckpt["task"])
    except CunetError as e:
        raise CunetError(f"{path}: {e}") from e
    if len(spec.names) != cfg.num_landmarks:
        raise CunetError(
            f"{path}: the model predicts {cfg.num_landmarks} landmarks for task {ckpt['task']}, whose spec has {len(spec.names)}"
        )
    return ckpt


def model_from_checkpoint(path: str | os.PathLike, **config_overrides: Any) -> tuple[CUNet, dict[str, Any]]:
    """Build the model a checkpoint describes and load its weights; returns (model in eval mode, checkpoint dict).

    A checkpoint with a `quant` record (low-bit training) gets the same quantization applied before its weights load.
    """
    ckpt = load_checkpoint(path)
    try:
        cfg = CUNetConfig.from_dict({**ckpt["config"], **config_overrides})
    except CunetError as e:
        raise CunetError(f"{path}: {e}") from e
    model = CUNet(cfg)
    if ckpt.get("quant"):  # a low-bit QAT checkpoint: the same quantized layers (and their buffers) before loading
        from cunet.model.quant import QuantConfig, apply_quantization

        try:
            apply_quantization(model, QuantConfig.from_dict(ckpt["quant"]))
        except CunetError as e:
            raise CunetError(f"{path}: {e}") from e
    try:
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    except RuntimeError as e:  # size mismatches: weights of another width/landmark count
        first = str(e).strip().splitlines()[-1].strip()[:160]
        raise CunetError(f"{path}: weights do not fit the checkpoint's own config ({first})") from e
    if missing or unexpected:
        raise CunetError(
            f"{path}: weights do not fit the checkpoint's own config "
            f"({len(missing)} missing, {len(unexpected)} unexpected, e.g. {(missing or unexpected)[0]})"
        )
    return model.eval(), ckpt

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
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

import cunet
from cunet.data.spec import get_spec
from cunet.errors import CunetError
from cunet.filetype import ModelKind, import_original_advice, sniff
from cunet.io import write_bytes
from cunet.limits import refuse_empty
from cunet.model.config import CUNetConfig
from cunet.model.cunet import CUNet

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "model_from_checkpoint", "refused_object"]

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


def refused_object(error: BaseException) -> str:
    """What `torch.load(weights_only=True)` refused, from its error, in a few words (e.g. "the Python global
    `print`", "the Python global `torch.nn.modules.linear.Linear`").

    torch's message is a paragraph of advice (with terminal escape codes) whose one fact is the line
    "WeightsUnpickler error: Unsupported global: GLOBAL <name> was not an allowed global ..."; a cut first line
    ("...Re-running `torch.") never reached it.
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return f"the Python global `{found.group(1)}`"
    found = re.search(r"WeightsUnpickler error: ([^\n]*?)(?:\.\s|\.?$)", text, re.MULTILINE)
    return found.group(1).strip() if found else "a Python object that is not a tensor, container or number"


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint; anything that is not a cunet checkpoint is a one-line `CunetError`."""
    path = Path(path)
    if not path.is_file():
        raise CunetError(f"{path}: no such checkpoint file")
    refuse_empty(path)
    if sniff(path) is ModelKind.ORIGINAL:
        raise CunetError(import_original_advice(path))
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a truncated one loses its directory
        raise CunetError(f"{path}: not a readable checkpoint (not a complete torch.save archive; truncated?)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # a whole torch.save archive whose objects weights_only refuses: not ours
        raise CunetError(f"{path}: not a cunet checkpoint (it holds {refused_object(e)}; a checkpoint holds "
                         "tensors, containers and numbers only)") from e
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
    _check_weights(path, ckpt, cfg)
    return ckpt


def _built(cfg: CUNetConfig, quant: dict[str, Any] | None, device: str | torch.device) -> CUNet:
    """`CUNet(cfg)` on `device`, with the low-bit layers (and their buffers) of a `quant` record."""
    with torch.device(device):
        model = CUNet(cfg)
        if quant:
            from cunet.model.quant import QuantConfig, apply_quantization

            apply_quantization(model, QuantConfig.from_dict(quant))
    return model


def _check_weights(path: Path, ckpt: dict[str, Any], cfg: CUNetConfig) -> None:
    """Refuse weights that do not fit the checkpoint's own config (names and shapes), before anyone uses the file.

    The network is built on the meta device (shapes only, nothing allocated), so `summary` and `bench` check a
    checkpoint as strictly as loading it would, and every reader reports the same one line.
    """
    try:
        expected = {k: tuple(v.shape) for k, v in _built(cfg, ckpt.get("quant"), "meta").state_dict().items()}
    except CunetError as e:
        raise CunetError(f"{path}: {e}") from e
    weights = ckpt["model"]
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong = [f"{k}: {tuple(getattr(weights[k], 'shape', ()))} where the config needs {shape}"
             for k, shape in expected.items()
             if k in weights and (not isinstance(weights[k], torch.Tensor) or tuple(weights[k].shape) != shape)]
    if missing or unexpected or wrong:
        example = (wrong or missing or unexpected)[0]
        raise CunetError(
            f"{path}: weights do not fit the checkpoint's own config ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(wrong)} of another shape, e.g. {example})"
        )


def model_from_checkpoint(path: str | os.PathLike, **config_overrides: Any) -> tuple[CUNet, dict[str, Any]]:
    """Build the model a checkpoint describes and load its weights; returns (model in eval mode, checkpoint dict).

    A checkpoint with a `quant` record (low-bit training) gets the same quantization applied before its weights load.
    """
    ckpt = load_checkpoint(path)
    try:
        cfg = CUNetConfig.from_dict({**ckpt["config"], **config_overrides})
        model = _built(cfg, ckpt.get("quant"), "cpu")
    except CunetError as e:
        raise CunetError(f"{path}: {e}") from e
    # `load_checkpoint` checked every name and shape against the checkpoint's config; an override that changes them
    # (no caller passes one that does) is a bug and keeps its traceback here.
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt

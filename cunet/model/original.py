"""Weights of the original CU-Net code in cunet's model: read its checkpoints, infer the config, rename the keys.

The original repository stores every U-Net's weights inside ONE shared module tree: `hg.down_blocks.{j}`,
`hg.neck_block` and `hg.up_blocks.{j}` each hold a list of `layer_num` dense layers and adapters, entry `i` used by
U-Net `i`; `intermedia.adapters.{i-1}` makes the input of U-Net `i`; `linears.{i}` is U-Net `i`'s heatmap head
(present for every U-Net, also those without a loss). cunet holds the same tensors per U-Net
(`unets.{i}.down.{j}`, `bridges.{i-1}`, `heads.{i}`), so converting is a pure renaming: the concatenation orders
agree (a dense layer and its adapters read [block input(s), the same block's new features of the coupled earlier
U-Nets, oldest first, the new features]; a bridge reads [previous output, the inputs of the last K U-Nets, oldest
first]; up block `j` reads [upsampled, skip of down block `j`]), so no weight is permuted.

Two key layouts exist. `models/cu_net.py` (PyTorch >= 0.4) names a dense layer `norm1 conv1 norm2 conv2` and an
adapter `adapter_norm adapter_conv`; `models/cu_net_prev_version.py` (PyTorch 0.1.12, used by the face script)
stores the 1x1 bottlenecks as flat parameters (`bottleneck.norm_weight ... conv_weight`, adapters `norm_weight ...
conv_weight`) and names the 3x3 half `norm.2` / `conv.2`. Both map to the same cunet keys; neither era saved
`num_batches_tracked`, which is filled with 0 (eval mode never reads it).

Checkpoints are the `{'state_dict', 'optimizer', 'train_history'}` dict the original `Checkpoint` class writes or a
bare state dict, with or without `DataParallel`'s `module.` prefix, in the zip format or the legacy (Python 2.7,
pickle protocol 2) one. They are downloaded files, so they are read with `weights_only=True`: only tensors,
containers and numbers (numpy scalars included, which the original's training history holds) are unpickled.

The original preprocessing (`ORIGINAL_PREPROCESS`) is recorded with the converted model so every runtime crops and
normalises as the original did: RGB on 0..1 with no mean/std, each crop stretched to its own 0..1 range (the
original resamples float crops with scipy's `imresize`, which rescales them min..max to uint8), and for faces a crop
of side 1.1 x max(width, height) of the detector box around its centre (`scale = max(w, h) / 200`, crop side
`200 * scale * 1.1`). MPII crops are the centre/scale rule cunet already uses (centre + 15 * scale down, side
`200 * scale * 1.25`). `crop: "original"` makes every runtime cut those boxes as the original did, to the pixel: its
integer crop box, its whole-image shrink for large boxes and its bytescale before resizing
(`cunet.data.original_crop`); a converted file from before that field crops the cunet way.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cunet.errors import CunetError
from cunet.limits import refuse_empty
from cunet.model.config import CUNetConfig, supervised_unets

__all__ = [
    "ORIGINAL_PREPROCESS",
    "LAYOUTS",
    "OriginalModel",
    "read_original_file",
    "unwrap_state_dict",
    "detect_layout",
    "infer_config",
    "convert_state_dict",
    "to_original_keys",
    "import_original",
]

#: What the original code feeds its network (see the module docstring); stored as a checkpoint's "preprocess".
ORIGINAL_PREPROCESS: dict[str, Any] = {
    "mean": [0.0, 0.0, 0.0],
    "std": [1.0, 1.0, 1.0],
    "stretch": "minmax",
    "box_margin": 1.1,
    "crop": "original",
}
#: The input side the original trained and tested at (`inp_res=256`); the weights themselves do not say.
ORIGINAL_INPUT_SIZE = 256
LAYOUTS = ("cu_net", "prev_version")
TASK_BY_LANDMARKS = {68: "face", 16: "pose"}

# prev_version leaf names -> cu_net leaf names (dense-layer bottleneck, adapters, the 3x3 half).
_PREV_TO_CU = [
    (re.compile(r"\.layers\.(\d+)\.bottleneck\.norm_(weight|bias|running_mean|running_var)$"), r".layers.\1.norm1.\2"),
    (re.compile(r"\.layers\.(\d+)\.bottleneck\.conv_weight$"), r".layers.\1.conv1.weight"),
    (re.compile(r"\.layers\.(\d+)\.norm\.2\.(weight|bias|running_mean|running_var|num_batches_tracked)$"),
     r".layers.\1.norm2.\2"),
    (re.compile(r"\.layers\.(\d+)\.conv\.2\.weight$"), r".layers.\1.conv2.weight"),
    (re.compile(r"\.(adapters_ahead|adapters_skip|adapters)\.(\d+)\.norm_(weight|bias|running_mean|running_var)$"),
     r".\1.\2.adapter_norm.\3"),
    (re.compile(r"\.(adapters_ahead|adapters_skip|adapters)\.(\d+)\.conv_weight$"), r".\1.\2.adapter_conv.weight"),
]
_BLOCK = {"down_blocks": "down", "up_blocks": "up"}
_DENSE_LEAF = {"norm1": "dense.reduce.norm", "conv1": "dense.reduce.conv", "norm2": "dense.norm", "conv2": "dense.conv"}
_ADAPTER = {"adapters_ahead": "ahead", "adapters_skip": "skip"}
_LEAF = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_RE_DENSE = re.compile(r"^hg\.(down_blocks|up_blocks)\.(\d+)\.layers\.(\d+)\.(norm1|conv1|norm2|conv2)\." + _LEAF + "$")
_RE_NECK_DENSE = re.compile(r"^hg\.neck_block\.layers\.(\d+)\.(norm1|conv1|norm2|conv2)\." + _LEAF + "$")
_RE_ADAPT = re.compile(
    r"^hg\.(down_blocks|up_blocks)\.(\d+)\.(adapters_ahead|adapters_skip)\.(\d+)\.adapter_(norm|conv)\." + _LEAF + "$"
)
_RE_NECK_ADAPT = re.compile(r"^hg\.neck_block\.adapters_ahead\.(\d+)\.adapter_(norm|conv)\." + _LEAF + "$")
_RE_BRIDGE = re.compile(r"^intermedia\.adapters\.(\d+)\.adapter_(norm|conv)\." + _LEAF + "$")
_RE_HEAD = re.compile(r"^linears\.(\d+)\.(norm|conv)\." + _LEAF + "$")
_RE_STEM = re.compile(r"^features\.(conv0|norm0)\." + _LEAF + "$")


@dataclass(frozen=True)
class OriginalModel:
    """A converted checkpoint of the original code.

    Attributes:
        config: the inferred `CUNetConfig` (input size: the original's 256 unless asked otherwise).
        task: "face" or "pose".
        state: cunet state dict (tensors), loadable into `CUNet(config)` with strict key and shape checks.
        layout: "cu_net" or "prev_version", the key layout the file was written in.
        heads: the 0-based U-Nets that had a heatmap head in the file.
    """

    config: CUNetConfig
    task: str
    state: dict[str, Any]
    layout: str
    heads: tuple[int, ...]


# ------------------------------------------------------------------------------------------------ reading


def _numpy_scalar_globals() -> list[Any]:
    """The numpy functions that rebuild scalars and dtypes (the original's training history pickles numpy floats).

    They construct numbers from bytes and run nothing else, so allowing them keeps `weights_only` safe. Pickles
    written with numpy 1.x name `numpy.core.multiarray`; numpy 2 moved it to `numpy._core`.
    """
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    allowed: list[Any] = [np.dtype]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed.append((core.multiarray.scalar, f"{module}.scalar"))
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return allowed


def read_original_file(path: str | os.PathLike) -> Any:
    """`torch.load` a downloaded checkpoint with `weights_only=True` (zip or legacy format); one-line errors."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CunetError(f"{path}: no such checkpoint file")
    refuse_empty(path)
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        from cunet.model.checkpoint import refused_object

        raise CunetError(f"{path}: refused to unpickle {refused_object(e)}: an original checkpoint holds tensors, "
                         "containers and numbers only (read with weights_only: nothing in the file ran)") from e
    except Exception as e:  # torch raises many types for truncated or foreign files
        first = (str(e).strip().splitlines() or ["no detail"])[0][:120]
        raise CunetError(f"{path}: not a readable checkpoint ({type(e).__name__}: {first})") from e


def unwrap_state_dict(obj: Any, where: str = "checkpoint") -> dict[str, Any]:
    """The state dict of a loaded original checkpoint: its 'state_dict' entry or the dict itself, `module.` removed."""
    import torch

    if isinstance(obj, Mapping) and obj.get("format") == "cunet-checkpoint":
        raise CunetError(f"{where}: already a cunet checkpoint; use it directly")
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CunetError(f"{where}: not a CU-Net checkpoint (neither a 'state_dict' entry nor a state dict)")
    state: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CunetError(f"{where}: not a state dict: entry {key!r} is a {type(value).__name__}, not a tensor")
        name = key[len("module."):] if key.startswith("module.") else key
        if name in state:
            raise CunetError(f"{where}: key {name!r} appears with and without the 'module.' prefix")
        state[name] = value
    return state


def detect_layout(state: Mapping[str, Any], where: str = "checkpoint") -> str:
    """"cu_net" or "prev_version", from the stem and the first dense layer's key names."""
    if "features.conv0.weight" not in state:
        first = next(iter(state))
        raise CunetError(f"{where}: no 'features.conv0.weight', so not the original CU-Net (first key: {first!r})")
    if "hg.down_blocks.0.layers.0.norm1.weight" in state:
        return "cu_net"
    if "hg.down_blocks.0.layers.0.bottleneck.norm_weight" in state:
        return "prev_version"
    raise CunetError(f"{where}: no 'hg.down_blocks.0.layers.0.norm1.weight' (models/cu_net.py) nor "
                     "'hg.down_blocks.0.layers.0.bottleneck.norm_weight' (models/cu_net_prev_version.py)")


def _canonical(state: Mapping[str, Any], layout: str) -> dict[str, Any]:
    """The state dict in cu_net.py key names (prev_version leaf names renamed)."""
    if layout == "cu_net":
        return dict(state)
    out: dict[str, Any] = {}
    for key, value in state.items():
        new = key
        for pattern, repl in _PREV_TO_CU:
            new, n = pattern.subn(repl, key)
            if n:
                break
        out[new] = value
    return out


# ---------------------------------------------------------------------------------------------- the config


def _shape(state: Mapping[str, Any], key: str, where: str) -> tuple[int, ...]:
    if key not in state:
        raise CunetError(f"{where}: missing key {key!r}")
    return tuple(int(d) for d in state[key].shape)


def _indices(state: Mapping[str, Any], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state if (m := rx.match(k))})


def infer_config(
    state: Mapping[str, Any], task: str | None = None, where: str = "checkpoint", input_size: int = ORIGINAL_INPUT_SIZE
) -> tuple[CUNetConfig, str, tuple[int, ...]]:
    """The config, task and head indices of a state dict in cu_net.py key names (`_canonical` applied).

    Layers come from the dense layers of down block 0, channels and input channels from the stem, growth and
    bottleneck from the first dense layer, the order from the widest dense-layer input (C + K * growth), the
    landmark count from the heads; 68 landmarks are a face model, 16 a pose model.
    """
    c, in_chans, *_ = _shape(state, "features.conv0.weight", where)
    layers_found = _indices(state, r"^hg\.down_blocks\.0\.layers\.(\d+)\.")
    if not layers_found:
        raise CunetError(f"{where}: missing key 'hg.down_blocks.0.layers.0.norm1.weight'")
    layers = max(layers_found) + 1
    growth, width = _shape(state, "hg.down_blocks.0.layers.0.conv2.weight", where)[:2]
    if width % growth:
        raise CunetError(f"{where}: 'hg.down_blocks.0.layers.0.conv2.weight' reads {width} channels, not a multiple "
                         f"of its {growth} outputs (the bottleneck is a whole number of growth widths)")
    last_in = _shape(state, f"hg.down_blocks.0.layers.{layers - 1}.norm1.weight", where)[0]
    order, rest = divmod(last_in - c, growth)
    if rest or order < 0 or order >= layers:
        raise CunetError(f"{where}: 'hg.down_blocks.0.layers.{layers - 1}.norm1.weight' has {last_in} channels; "
                         f"a CU-Net of {c} channels, growth {growth} and {layers} U-Nets reads {c} + K x {growth} "
                         f"with 0 <= K < {layers}")
    heads = tuple(_indices(state, r"^linears\.(\d+)\.conv\.weight$"))
    if not heads or heads[-1] != layers - 1:
        raise CunetError(f"{where}: missing key 'linears.{layers - 1}.conv.weight' (the last U-Net's heatmap head)")
    num_landmarks = _shape(state, f"linears.{layers - 1}.conv.weight", where)[0]
    loss_num = None
    if len(heads) != layers:
        loss_num = next((n for n in range(1, layers + 1) if supervised_unets(layers, n) == heads), None)
        if loss_num is None:
            raise CunetError(f"{where}: heads at U-Nets {list(heads)} are not evenly spaced as the original spaces "
                             "its losses (missing key 'linears.N.conv.weight')")
    inferred = TASK_BY_LANDMARKS.get(num_landmarks)
    if task is None:
        if inferred is None:
            raise CunetError(f"{where}: 'linears.{layers - 1}.conv.weight' predicts {num_landmarks} heatmaps; cunet "
                             "knows 68 (300-W faces) and 16 (MPII joints)")
        task = inferred
    elif inferred != task:
        want = {v: k for k, v in TASK_BY_LANDMARKS.items()}.get(task)
        raise CunetError(f"{where}: 'linears.{layers - 1}.conv.weight' predicts {num_landmarks} heatmaps, but a "
                         f"{task} model predicts {want}")
    try:
        cfg = CUNetConfig(layers=layers, order=order, num_landmarks=num_landmarks, loss_num=loss_num, channels=c,
                          growth=growth, bottleneck=width // growth, in_chans=in_chans, input_size=input_size)
    except CunetError as e:
        raise CunetError(f"{where}: {e}") from e
    return cfg, task, heads


# ------------------------------------------------------------------------------------------------ renaming


def _cunet_key(key: str, heads: tuple[int, ...]) -> str | None:
    """The cunet name of one cu_net.py key, or None when it is no part of a CU-Net."""
    if m := _RE_STEM.match(key):
        return f"stem.{0 if m.group(1) == 'conv0' else 1}.{m.group(2)}"
    if m := _RE_DENSE.match(key):
        block, j, i, leaf, p = m.groups()
        return f"unets.{i}.{_BLOCK[block]}.{j}.{_DENSE_LEAF[leaf]}.{p}"
    if m := _RE_NECK_DENSE.match(key):
        i, leaf, p = m.groups()
        return f"unets.{i}.bottom.{_DENSE_LEAF[leaf]}.{p}"
    if m := _RE_ADAPT.match(key):
        block, j, kind, i, part, p = m.groups()
        return f"unets.{i}.{_BLOCK[block]}.{j}.{_ADAPTER[kind]}.{part}.{p}"
    if m := _RE_NECK_ADAPT.match(key):
        i, part, p = m.groups()
        return f"unets.{i}.bottom.ahead.{part}.{p}"
    if m := _RE_BRIDGE.match(key):
        a, part, p = m.groups()
        return f"bridges.{a}.{part}.{p}"
    if m := _RE_HEAD.match(key):
        i, part, p = m.groups()
        return f"heads.{i}.{part}.{p}" if int(i) in heads else None
    return None


def convert_state_dict(
    state: Mapping[str, Any], task: str | None = None, where: str = "checkpoint", input_size: int = ORIGINAL_INPUT_SIZE
) -> OriginalModel:
    """Convert an original state dict (either layout, `module.` already removed) into cunet's keys.

    Every tensor must find its place and every cunet tensor must be supplied, with the shape cunet's model of the
    inferred config has; the first that does not is named in a `CunetError`.
    """
    import torch

    from cunet.model.cunet import CUNet

    layout = detect_layout(state, where)
    canon = _canonical(state, layout)
    cfg, task, heads = infer_config(canon, task, where, input_size)
    # With the original's numerics: eval mode reads running stats only, so building the target is all it takes.
    target = CUNet(cfg).state_dict()
    out: dict[str, Any] = {}
    source_of: dict[str, str] = {}
    for key, value in canon.items():
        new = _cunet_key(key, heads)
        if new is None or new not in target:
            raise CunetError(f"{where}: unexpected key {_original_name(key, layout)!r} for a CU-Net of "
                             f"{_describe(cfg)}")
        want = tuple(target[new].shape)
        if tuple(value.shape) != want:
            raise CunetError(f"{where}: key {_original_name(key, layout)!r} has shape {list(value.shape)}, "
                             f"expected {list(want)} for a CU-Net of {_describe(cfg)}")
        out[new] = value.detach().to(target[new].dtype).clone()
        source_of[new] = key
    for new, tensor in target.items():
        if new in out:
            continue
        if new.endswith("num_batches_tracked"):
            out[new] = torch.zeros_like(tensor)
            continue
        raise CunetError(f"{where}: missing key {_original_name(to_original_keys(new), layout)!r} for a CU-Net of "
                         f"{_describe(cfg)}")
    return OriginalModel(cfg, task, {k: out[k] for k in target}, layout, heads)


def _describe(cfg: CUNetConfig) -> str:
    return (f"{cfg.layers} U-Net(s), order {cfg.order}, {cfg.channels} channels, growth {cfg.growth}, "
            f"{cfg.num_landmarks} landmarks")


def to_original_keys(cunet_key: str) -> str:
    """The cu_net.py name of a cunet key (the inverse of the renaming, for messages and tests)."""
    inv_dense = {v: k for k, v in _DENSE_LEAF.items()}
    inv_block = {v: k for k, v in _BLOCK.items()}
    inv_adapter = {v: k for k, v in _ADAPTER.items()}
    parts = cunet_key.split(".")
    if parts[0] == "stem":
        return f"features.{'conv0' if parts[1] == '0' else 'norm0'}.{parts[2]}"
    if parts[0] == "bridges":
        return f"intermedia.adapters.{parts[1]}.adapter_{parts[2]}.{parts[3]}"
    if parts[0] == "heads":
        return f"linears.{parts[1]}.{parts[2]}.{parts[3]}"
    i, where = parts[1], parts[2]
    if where == "bottom":
        block, rest = "hg.neck_block", parts[3:]
    else:
        block, rest = f"hg.{inv_block[where]}.{parts[3]}", parts[4:]
    if rest[0] == "dense":
        leaf = ".".join(rest[:-1])
        return f"{block}.layers.{i}.{inv_dense[leaf]}.{rest[-1]}"
    return f"{block}.{inv_adapter[rest[0]]}.{i}.adapter_{rest[1]}.{rest[2]}"


def _original_name(key: str, layout: str) -> str:
    """A cu_net.py key as the file spells it (prev_version names for prev_version files)."""
    if layout == "cu_net":
        return key
    key = re.sub(r"\.layers\.(\d+)\.norm1\.", r".layers.\1.bottleneck.norm_", key)
    key = re.sub(r"\.layers\.(\d+)\.conv1\.weight$", r".layers.\1.bottleneck.conv_weight", key)
    key = re.sub(r"\.layers\.(\d+)\.norm2\.", r".layers.\1.norm.2.", key)
    key = re.sub(r"\.layers\.(\d+)\.conv2\.weight$", r".layers.\1.conv.2.weight", key)
    key = re.sub(r"\.adapter_norm\.", ".norm_", key)
    return re.sub(r"\.adapter_conv\.weight$", ".conv_weight", key)


def import_original(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    task: str | None = None,
    input_size: int = 256,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert the original checkpoint `src` into the cunet checkpoint `dst`.

    Args:
        src: a `.pth.tar` of the original code (its `Checkpoint` dict or a bare state dict, any `module.` prefix,
            zip or legacy format).
        dst: the cunet `.pt` to write (atomically).
        task: "face" or "pose"; None infers it from the landmark count (68 faces, 16 MPII joints).
        input_size: the crop side the model runs at (the original's 256).
        overwrite: replace an existing `dst`.

    Returns:
        {"source", "sha256", "layout", "out", "task", "config", "heads", "parameters", "preprocess"}.

    Raises:
        CunetError: unreadable or foreign file, a key or shape that does not fit a CU-Net (named), `dst` exists.
    """
    from cunet.errors import require_torch

    require_torch("import-original")
    from cunet.io import sha256_file
    from cunet.model import CUNet, count_parameters
    from cunet.model.checkpoint import save_checkpoint

    src, dst = Path(src), Path(dst)
    if dst.exists() and not overwrite:
        raise CunetError(f"{dst}: already exists; choose another name or pass --force to replace it")
    if dst.exists() and dst.resolve() == src.resolve():
        raise CunetError(f"{dst}: the output would replace the original checkpoint it is read from")
    converted = convert_state_dict(unwrap_state_dict(read_original_file(src), str(src)), task, str(src), input_size)
    model = CUNet(converted.config)
    model.load_state_dict(converted.state, strict=True)  # names and shapes were checked key by key above
    sha = sha256_file(src)
    original = {"file": src.name, "sha256": sha, "layout": converted.layout, "heads": list(converted.heads)}
    save_checkpoint(dst, model.eval(), converted.task, preprocess=dict(ORIGINAL_PREPROCESS), original=original)
    return {
        "source": str(src),
        "sha256": sha,
        "layout": converted.layout,
        "out": str(dst),
        "task": converted.task,
        "config": converted.config.to_dict(),
        "heads": list(converted.heads),
        "parameters": count_parameters(model),
        "preprocess": dict(ORIGINAL_PREPROCESS),
    }

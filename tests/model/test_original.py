"""Converting checkpoints of the original CU-Net code (`cunet.model.original`).

The parity fixtures in tests/fixtures/original/ were produced by the original repository's `models/cu_net.py`
(run on torch 2.13 with its two Python-3 fixes) with random weights and random BatchNorm statistics: the weights
(`weights`, flat float32, split by `index`: [cu_net.py key, models/cu_net_prev_version.py key, shape], the latter
checked against the keys and shapes that file's constructor defines), an input and the last head's heatmaps that
`cu_net.py` computed in eval mode. The tolerance is 1e-4 relative L2 in float32: the conversion is a pure renaming
of the same tensors run through the same operations in the same order, so any wiring or concatenation difference
shows up as an O(1) error, while float32 reassociation in a different conv kernel would stay near 1e-7.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cunet.errors import CunetError  # noqa: E402
from cunet.model import CUNet  # noqa: E402
from cunet.model.original import (  # noqa: E402
    convert_state_dict,
    detect_layout,
    read_original_file,
    to_original_keys,
    unwrap_state_dict,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "original"
PARITY = {"cu_net_L2_K1_face.npz": (2, 1, 68, "face"), "cu_net_L3_K2_pose.npz": (3, 2, 16, "pose")}
TOLERANCE = 1e-4


def _fixture(name: str) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """(cu_net.py state dict, prev_version state dict, input, heatmaps) of a committed fixture."""
    z = np.load(FIXTURES / name)
    index, flat = json.loads(str(z["index"])), z["weights"]
    cu, prev, offset = {}, {}, 0
    for key, prev_key, shape in index:
        n = int(np.prod(shape))
        t = torch.from_numpy(flat[offset : offset + n].reshape(shape).copy())
        offset += n
        if key.endswith("num_batches_tracked"):
            t = t.long()
        cu[key] = t
        if prev_key is not None:  # the 0.1.12-era BatchNorm had no num_batches_tracked
            prev[prev_key] = t
    assert offset == len(flat)
    return cu, prev, z["input"], z["heatmaps"]


def _save_like_original(path: Path, state: dict, legacy: bool) -> Path:
    """What the original `Checkpoint.save_checkpoint` writes for a `DataParallel` net: numpy scalars included."""
    ckpt = {
        "train_history": {"epoch": [{"epoch": 49}], "lr": [{"lr": 2.5e-4}],
                          "rmse": [{"val_rmse": np.float64(0.0412)}], "best_rmse": np.float64(0.0412),
                          "is_best": np.bool_(True)},
        "state_dict": {f"module.{k}": v for k, v in state.items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 2.5e-4, "alpha": 0.99, "params": [0, 1]}]},
    }
    if legacy:
        torch.save(ckpt, path, _use_new_zipfile_serialization=False, pickle_protocol=2)
    else:
        torch.save(ckpt, path)
    return path


def _rel_l2(state: dict, x: np.ndarray, ref: np.ndarray) -> float:
    converted = convert_state_dict(state)
    model = CUNet(converted.config)
    model.load_state_dict(converted.state, strict=True)
    with torch.no_grad():
        y = model.eval()(torch.from_numpy(x)).numpy()
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


@pytest.mark.parametrize("name", sorted(PARITY))
@pytest.mark.parametrize("layout", ["cu_net", "prev_version"])
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-protocol-2"])
def test_converted_model_reproduces_the_original_heatmaps(tmp_path, one_torch_thread, name, layout, legacy):
    cu, prev, x, ref = _fixture(name)
    state = cu if layout == "cu_net" else prev
    loaded = unwrap_state_dict(read_original_file(_save_like_original(tmp_path / "ck.pth.tar", state, legacy)))
    assert detect_layout(loaded) == layout
    assert _rel_l2(loaded, x, ref) <= TOLERANCE


def test_a_wrong_wiring_would_fail_the_parity_bound(one_torch_thread):
    """The bound is meaningful: a concatenation in another order (the block input after the coupled features
    instead of before them, in one adapter) or two U-Nets' layers swapped (same shapes) exceed it many times over."""
    cu, _, x, ref = _fixture("cu_net_L3_K2_pose.npz")
    reordered = dict(cu)
    prefix = "hg.down_blocks.0.adapters_ahead.2.adapter_"
    c = cu["features.conv0.weight"].shape[0]
    for leaf in ("norm.weight", "norm.bias", "norm.running_mean", "norm.running_var"):
        reordered[prefix + leaf] = torch.roll(cu[prefix + leaf], -c, dims=0)
    reordered[prefix + "conv.weight"] = torch.roll(cu[prefix + "conv.weight"], -c, dims=1)
    assert _rel_l2(reordered, x, ref) > 10 * TOLERANCE
    swapped = dict(cu)
    a, b = "hg.up_blocks.1.layers.2.conv2.weight", "hg.up_blocks.2.layers.2.conv2.weight"
    swapped[a], swapped[b] = cu[b], cu[a]
    assert _rel_l2(swapped, x, ref) > 10 * TOLERANCE


@pytest.mark.parametrize("name", sorted(PARITY))
def test_config_comes_from_the_shapes(name):
    layers, order, landmarks, task = PARITY[name]
    for state in _fixture(name)[:2]:
        converted = convert_state_dict(state)
        cfg = converted.config
        assert (cfg.layers, cfg.order, cfg.num_landmarks, converted.task) == (layers, order, landmarks, task)
        assert (cfg.channels, cfg.growth, cfg.bottleneck, cfg.in_chans, cfg.input_size) == (8, 4, 4, 3, 256)
        assert cfg.loss_num is None and converted.heads == tuple(range(layers))  # the original has every head


# ----------------------------------------------------------------- programmatic state dicts of the original


def _original_state(layers: int, order: int, c: int, g: int, neck: int, joints: int, layout: str) -> dict:
    """Keys and shapes exactly as the original constructors define them (facts of models/cu_net*.py), numbered values.

    Dense layer i of a block reads `in + min(i, order) * g`; its adapters read one growth more; up blocks read 2C
    and write C; bridge a (U-Net a + 1) reads `C * (1 + min(a + 1, order))`; every U-Net has a head.
    """
    state: dict = {}
    counter = iter(range(1, 10**9))

    def put(key: str, *shape: int) -> None:
        state[key] = torch.full(shape, float(next(counter)))

    def bn(prefix: str, n: int, flat: bool) -> None:
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            put(f"{prefix}{'_' if flat else '.'}{leaf}", n)

    def adapter(prefix: str, n_in: int, n_out: int) -> None:
        if layout == "cu_net":
            bn(f"{prefix}.adapter_norm", n_in, False)
            put(f"{prefix}.adapter_conv.weight", n_out, n_in, 1, 1)
        else:
            bn(f"{prefix}.norm", n_in, True)
            put(f"{prefix}.conv_weight", n_out, n_in, 1, 1)

    def dense(prefix: str, n_in: int) -> None:
        if layout == "cu_net":
            bn(f"{prefix}.norm1", n_in, False)
            put(f"{prefix}.conv1.weight", neck * g, n_in, 1, 1)
            bn(f"{prefix}.norm2", neck * g, False)
            put(f"{prefix}.conv2.weight", g, neck * g, 3, 3)
        else:
            bn(f"{prefix}.bottleneck.norm", n_in, True)
            put(f"{prefix}.bottleneck.conv_weight", neck * g, n_in, 1, 1)
            bn(f"{prefix}.norm.2", neck * g, False)
            put(f"{prefix}.conv.2.weight", g, neck * g, 3, 3)

    put("features.conv0.weight", c, 3, 7, 7)
    bn("features.norm0", c, False)
    blocks = [(f"hg.down_blocks.{j}", c, c, True) for j in range(4)] + [(f"hg.up_blocks.{j}", 2 * c, c, False)
                                                                      for j in range(4)]
    blocks.append(("hg.neck_block", c, c, False))
    for block, n_in, n_out, skip in blocks:
        for i in range(layers):
            dense(f"{block}.layers.{i}", n_in + min(i, order) * g)
            adapter(f"{block}.adapters_ahead.{i}", n_in + (min(i, order) + 1) * g, n_out)
            if skip:
                adapter(f"{block}.adapters_skip.{i}", n_in + (min(i, order) + 1) * g, n_out)
    for i in range(layers):
        bn(f"linears.{i}.norm", c, False)
        put(f"linears.{i}.conv.weight", joints, c, 1, 1)
    for a in range(layers - 1):
        adapter(f"intermedia.adapters.{a}", c * (1 + min(a + 1, order)), c)
    return state


@pytest.mark.parametrize("layout", ["cu_net", "prev_version"])
@pytest.mark.parametrize("layers,order", [(1, 0), (2, 1), (4, 1), (4, 3), (5, 2)])
def test_every_original_tensor_lands_in_its_cunet_place(layout, layers, order):
    state = _original_state(layers, order, c=8, g=4, neck=4, joints=16, layout=layout)
    converted = convert_state_dict(state)
    assert converted.layout == layout and (converted.config.layers, converted.config.order) == (layers, order)
    assert converted.task == "pose"
    model = CUNet(converted.config)
    model.load_state_dict(converted.state, strict=True)
    # Each tensor is unique (numbered), so checking values proves the mapping, not only the shapes.
    values = {float(v.flatten()[0]) for k, v in converted.state.items() if not k.endswith("num_batches_tracked")}
    assert len(values) == len(state)
    last = layers - 1
    checks = {  # original (cu_net.py names) -> cunet, by the original's structure
        f"hg.up_blocks.2.layers.{last}.conv2.weight": f"unets.{last}.up.2.dense.conv.weight",
        f"hg.down_blocks.3.adapters_skip.{last}.adapter_norm.running_var": f"unets.{last}.down.3.skip.norm.running_var",
        f"hg.neck_block.adapters_ahead.{last}.adapter_conv.weight": f"unets.{last}.bottom.ahead.conv.weight",
        f"linears.{last}.conv.weight": f"heads.{last}.conv.weight",
        "features.norm0.running_mean": "stem.1.running_mean",
    }
    if layers > 1:
        checks[f"intermedia.adapters.{last - 1}.adapter_norm.bias"] = f"bridges.{last - 1}.norm.bias"
    for original, cunet_key in checks.items():
        assert to_original_keys(cunet_key) == original
        if layout == "prev_version":
            original = (original.replace("adapter_norm.", "norm_").replace("adapter_conv.weight", "conv_weight")
                        .replace(".conv2.", ".conv.2."))
        assert torch.equal(converted.state[cunet_key], state[original]), original


def test_unsupervised_heads_and_pruned_heads():
    state = _original_state(4, 1, c=8, g=4, neck=4, joints=68, layout="cu_net")
    for i in (0, 2):  # loss_num 2 of 4 U-Nets: the original's anchors round(2 * (i + 1)) = U-Nets 2 and 4
        for k in [k for k in state if k.startswith(f"linears.{i}.")]:
            del state[k]
    converted = convert_state_dict(state)
    assert converted.config.loss_num == 2 and converted.heads == (1, 3) and converted.task == "face"


# ------------------------------------------------------------------------------------------------- refusals


def _small(layout: str = "cu_net") -> dict:
    return _original_state(2, 1, c=8, g=4, neck=4, joints=68, layout=layout)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda s: s.pop("hg.up_blocks.1.adapters_ahead.0.adapter_conv.weight"),
         "missing key 'hg.up_blocks.1.adapters_ahead.0.adapter_conv.weight'"),
        (lambda s: s.__setitem__("hg.up_blocks.1.layers.1.norm1.weight", torch.zeros(7)),
         "key 'hg.up_blocks.1.layers.1.norm1.weight' has shape [7], expected [20]"),
        (lambda s: s.__setitem__("hg.down_blocks.0.layers.1.norm1.weight", torch.zeros(9)),
         "'hg.down_blocks.0.layers.1.norm1.weight' has 9 channels"),
        (lambda s: s.__setitem__("hg.extra.weight", torch.zeros(1)), "unexpected key 'hg.extra.weight'"),
        (lambda s: s.pop("features.conv0.weight"), "no 'features.conv0.weight'"),
        (lambda s: s.pop("linears.1.conv.weight"), "missing key 'linears.1.conv.weight'"),
        (lambda s: s.__setitem__("linears.1.conv.weight", torch.zeros(20, 8, 1, 1)), "predicts 20 heatmaps"),
    ],
)
def test_refusals_name_the_first_key_that_does_not_fit(edit, message):
    state = _small()
    edit(state)
    with pytest.raises(CunetError) as e:
        convert_state_dict(state, where="ck.pth.tar")
    assert message in str(e.value) and str(e.value).startswith("ck.pth.tar: ") and "\n" not in str(e.value)


def test_prev_version_refusals_use_the_files_own_names():
    state = _small("prev_version")
    state["hg.neck_block.adapters_ahead.1.norm_weight"] = torch.zeros(5)
    with pytest.raises(CunetError, match=r"key 'hg.neck_block.adapters_ahead.1.norm_weight' has shape \[5\]"):
        convert_state_dict(state)


def test_task_must_match_the_landmark_count():
    with pytest.raises(CunetError, match="predicts 68 heatmaps, but a pose model predicts 16"):
        convert_state_dict(_small(), task="pose")
    assert convert_state_dict(_small(), task="face").task == "face"


def test_file_refusals(tmp_path):
    empty = tmp_path / "empty.pth.tar"
    empty.write_bytes(b"")
    with pytest.raises(CunetError, match="empty file"):
        read_original_file(empty)
    good = _save_like_original(tmp_path / "good.pth.tar", _small(), legacy=True)
    cut = tmp_path / "cut.pth.tar"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CunetError, match="not a readable checkpoint"):
        read_original_file(cut)
    with pytest.raises(CunetError, match="no such checkpoint file"):
        read_original_file(tmp_path / "absent.pth.tar")


class _RunsCode:
    """A pickle that would run code when loaded without weights_only."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_file_that_would_run_code_is_refused(tmp_path, capsys):
    evil = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": _small(), "train_history": _RunsCode()}, evil)
    with pytest.raises(CunetError, match="refused to unpickle"):
        read_original_file(evil)
    assert "must never run" not in capsys.readouterr().out
    legacy = tmp_path / "evil-legacy.pth.tar"
    with open(legacy, "wb") as f:
        pickle.dump(_RunsCode(), f, protocol=2)
    with pytest.raises(CunetError):
        read_original_file(legacy)
    assert "must never run" not in capsys.readouterr().out


def test_not_a_state_dict():
    with pytest.raises(CunetError, match="entry 'x' is a list"):
        unwrap_state_dict({"state_dict": {"x": [1, 2]}}, "f")
    with pytest.raises(CunetError, match="already a cunet checkpoint"):
        unwrap_state_dict({"format": "cunet-checkpoint", "model": {}}, "f")
    with pytest.raises(CunetError, match="neither a 'state_dict' entry nor a state dict"):
        unwrap_state_dict([1, 2], "f")
    with pytest.raises(CunetError, match="with and without the 'module.' prefix"):
        unwrap_state_dict({"a": torch.zeros(1), "module.a": torch.zeros(1)}, "f")

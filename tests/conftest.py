"""Fixtures shared across the test packages."""

from __future__ import annotations

from pathlib import Path

import pytest

#: The tiny CU-Net of the shared checkpoint: exports in seconds and runs on 64x64 crops.
TINY = dict(layers=1, order=0, channels=16, growth=8, input_size=64)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """`tiny_checkpoint(task="face", seed=0, **config)`: the path of a random-init tiny CU-Net (`TINY`, with the
    task's landmark count, overridden by `config`) written by the real `save_checkpoint`. One file per distinct
    argument set per session: callers only read it."""
    made: dict[tuple, Path] = {}

    def make(task: str = "face", seed: int = 0, **config) -> Path:
        key = (task, seed, tuple(sorted(config.items())))
        if key not in made:
            import torch

            from cunet.data.spec import get_spec
            from cunet.model import CUNet, CUNetConfig
            from cunet.model.checkpoint import save_checkpoint

            torch.manual_seed(seed)
            cfg = CUNetConfig(**{**TINY, "num_landmarks": get_spec(task).num_landmarks, **config})
            path = tmp_path_factory.mktemp("tiny") / f"{task}.pt"
            save_checkpoint(path, CUNet(cfg), task)
            made[key] = path
        return made[key]

    return make


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: tiny models gain nothing from two, and on a shared 2-core machine two spinning
    OpenMP threads per process slow every test several times over when other work is running."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fakes():
    """tests/fakes as a package (the suite runs with --import-mode=importlib, so tests/ is not on sys.path)."""
    import importlib.util
    import sys
    from pathlib import Path

    if "cunet_test_fakes" not in sys.modules:
        root = Path(__file__).parent / "fakes"
        spec = importlib.util.spec_from_file_location("cunet_test_fakes", root / "__init__.py",
                                                      submodule_search_locations=[str(root)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["cunet_test_fakes"] = module
        spec.loader.exec_module(module)
    return sys.modules["cunet_test_fakes"]


@pytest.fixture(params=[10, 11], ids=["trt10", "trt11"])
def fake_gpu(request, monkeypatch):
    """A fake TensorRT (10 and 11, one run each) and a fake two-device CUDA machine (tests/fakes)."""
    return _fakes().install(monkeypatch, request.param)


def nan_where_darker(src, out, threshold: float):
    """Write a copy of the cunet ONNX model `src` to `out` whose heatmaps are NaN for every image whose network input
    has a mean below `threshold` (a real ONNX graph: ReduceMean over the input, Less, Where; nothing mocked).

    The input is the normalised crop, so its mean orders images as their crops' mean brightness does; a test picks
    `threshold` from the same preprocessing (`Predictor.preprocess`) and knows exactly which images break."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    (inp,), (output,) = g.input, g.output
    raw = output.name + "_before_nan"
    for node in g.node:
        node.output[:] = [raw if o == output.name else o for o in node.output]
    g.initializer.extend([
        numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "nan_axes"),
        numpy_helper.from_array(np.array(threshold, dtype=np.float32), "nan_threshold"),
        numpy_helper.from_array(np.array(np.nan, dtype=np.float32), "nan_value"),
    ])
    g.node.extend([
        helper.make_node("ReduceMean", [inp.name, "nan_axes"], ["nan_mean"], keepdims=1),
        helper.make_node("Less", ["nan_mean", "nan_threshold"], ["nan_dark"]),
        helper.make_node("Where", ["nan_dark", "nan_value", raw], [output.name]),
    ])
    assert output.type.tensor_type.elem_type == TensorProto.FLOAT
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


@pytest.fixture(scope="session")
def nan_model():
    """`nan_model(src, out, threshold)`: see `nan_where_darker`."""
    return nan_where_darker


def _pckh_by_hand(gt_records: list[dict], pred_records: list[dict]) -> float:
    """PCKh@0.5 in percent from two MPII JSON record lists, in plain Python (independent of cunet's metrics): a
    joint annotated in the ground truth is correct within 0.5 x 0.6 x its head box's diagonal; the 14 joints
    without pelvis (6) and thorax (7) are pooled. A prediction of [-1, -1] (not predicted) is wrong."""
    import math

    hits = visible = 0
    for g, p in zip(gt_records, pred_records, strict=True):
        x1, y1, x2, y2 = g["headbox"]
        tolerance = 0.5 * 0.6 * math.hypot(x2 - x1, y2 - y1)
        for j in range(16):
            if j in (6, 7) or not g["joints_vis"][j] or g["joints"][j] == [-1, -1]:
                continue
            visible += 1
            predicted = p["joints_vis"][j] and p["joints"][j] != [-1, -1]
            hits += bool(predicted and math.dist(g["joints"][j], p["joints"][j]) <= tolerance)
    assert visible > 0
    return 100.0 * hits / visible


@pytest.fixture(scope="session")
def pckh_by_hand():
    """`pckh_by_hand(gt_records, pred_records) -> percent`: see `_pckh_by_hand`."""
    return _pckh_by_hand

"""Bench's artifact stamps: an engine is tied to the TensorRT version and the GPU that built it (issue 23, item 8).

Driven on the fake TensorRT and the fake two-GPU machine (tests/fakes): the engine rows are planned as on a GPU
machine, their stamp carries TensorRT's version and the GPU's name, UUID and compute capability, and a stamp that
differs makes bench rebuild the artifact with a line naming what changed.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from cunet.pipeline.bench import _run_row
from cunet.pipeline.bench_plan import Artifact, SkipKind, plan, stale_reason, stamp_path


def _tiny_onnx(path: Path) -> Path:
    spec = importlib.util.spec_from_file_location("_tiny_trt", Path(__file__).parents[1] / "compile" /
                                                  "test_tensorrt_fake.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tiny_model(path)


def test_engine_stamp_names_tensorrt_and_the_gpu(fake_gpu, tmp_path):
    from cunet.runtime import cuda

    fp32 = _tiny_onnx(tmp_path / "face.onnx")
    opts = SimpleNamespace(data=tmp_path, samples=4, batch=1)
    rows = {a.name: a for a in plan(opts, tmp_path / "work", fp32)}
    engine = rows["tensorrt-fp32"]
    assert engine.skip is None and engine.device == "cuda"
    assert rows["pytorch-fp32"].skip_kind is SkipKind.NOT_APPLICABLE and rows["onnx-fp32"].device == "cpu"
    key = engine.key()
    assert (key["tensorrt"], key["gpu"], key["compute_capability"]) == (fake_gpu.trt.__version__,
                                                                        "NVIDIA GeForce RTX 4090", "8.9")
    assert key["gpu_uuid"] == cuda.properties(0).uuid
    engine.path.parent.mkdir(parents=True)
    engine.path.write_bytes(b"engine")
    stamp_path(engine.path).write_text(json.dumps(key))
    assert stale_reason(engine.path, engine.key()) is None
    fake_gpu.trt.__version__ = "12.0.0.1"  # TensorRT upgraded
    why = stale_reason(engine.path, engine.key())
    assert why == f"built from other inputs: tensorrt {key['tensorrt']!r} → '12.0.0.1'"


def test_a_stale_artifact_is_rebuilt_with_a_line_saying_why(tmp_path):
    out = tmp_path / "model.fp32.engine"
    out.write_bytes(b"old engine")
    stamp_path(out).write_text(json.dumps({"tensorrt": "10.13.0.35", "gpu": "A"}))
    built = []
    art = Artifact("tensorrt-fp32", "engine", "fp32", "tensorrt", out, device="cuda",
                   build=lambda: (built.append(1), out.write_bytes(b"new engine")),
                   key=lambda: {"tensorrt": "10.13.0.35", "gpu": "B"})
    lines: list[str] = []
    opts = SimpleNamespace(data=tmp_path, threads=1, batch=1, warmup=1, timed_iters=1, video=None)
    row, _ = _run_row(art, opts, "face", tmp_path, {}, lambda what: None, lines.append)
    assert built == [1] and out.read_bytes() == b"new engine" and row["reused"] is False
    assert lines == ["tensorrt-fp32: rebuilding model.fp32.engine: built from other inputs: gpu 'A' → 'B'"]
    assert json.loads(stamp_path(out).read_text()) == {"tensorrt": "10.13.0.35", "gpu": "B"}
    lines.clear()
    row, _ = _run_row(art, opts, "face", tmp_path, {}, lambda what: None, lines.append)
    assert row["reused"] is True and lines == [] and built == [1]  # up to date: reused, nothing said


@pytest.mark.parametrize("stamp", ["not json", "[1, 2]"])
def test_an_unreadable_stamp_is_a_rebuild(tmp_path, stamp):
    out = tmp_path / "a.onnx"
    out.write_bytes(b"x")
    stamp_path(out).write_text(stamp)
    assert stale_reason(out, {"k": 1}) == "no readable stamp beside it"
    assert stale_reason(tmp_path / "missing.onnx", {"k": 1}) == "not built yet"

"""Shared fixtures of the reliability suite (issue 9): small real datasets, checkpoints, one exported ONNX model, and
the tally of what the suite tried, printed at the end of the run.

Everything here is real: synthetic datasets in the 300-W / MPII on-disk formats, checkpoints written by
`save_checkpoint`, an ONNX model written by `export_onnx`. The one export (~15 s) is session-scoped and shared.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

#: What the suite tried: "bad-input:<command>" → cases, "hypothesis:<parser>" → examples. Filled by the tests.
TALLY: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="session")
def tally() -> collections.Counter[str]:
    return TALLY


def pytest_terminal_summary(terminalreporter) -> None:
    """Print what the reliability suite tried (the counts the issue asks for in its closing note)."""
    if not TALLY:
        return
    bad = {k.split(":", 1)[1]: v for k, v in TALLY.items() if k.startswith("bad-input:")}
    fuzz = {k.split(":", 1)[1]: v for k, v in TALLY.items() if k.startswith("hypothesis:")}
    write = terminalreporter.write_line
    write("")
    if bad:
        write(f"reliability: {sum(bad.values())} bad-input cases across {len(bad)} commands: "
              + ", ".join(f"{k} {v}" for k, v in sorted(bad.items())))
    if fuzz:
        write("reliability: hypothesis examples per parser: " + ", ".join(f"{k} {v}" for k, v in sorted(fuzz.items())))
    for key in sorted(k for k in TALLY if not k.startswith(("bad-input:", "hypothesis:"))):
        write(f"reliability: {key} {TALLY[key]}")


@pytest.fixture(scope="session")
def face_data(tmp_path_factory) -> Path:
    """A synthetic 300-W-layout face dataset (train/, test/<subset>/), 64x64 images."""
    from cunet.data.synth import synthesize

    root = tmp_path_factory.mktemp("rel") / "faces"
    synthesize(root, "face", n=24, seed=3, image_size=64)
    return root


@pytest.fixture(scope="session")
def pose_data(tmp_path_factory) -> Path:
    """A synthetic MPII-layout pose dataset (train.json, valid.json beside the images), 64x64 images."""
    from cunet.data.synth import synthesize

    root = tmp_path_factory.mktemp("rel") / "pose"
    synthesize(root, "pose", n=24, seed=4, image_size=64)
    return root


@pytest.fixture(scope="session")
def face_ckpt(tiny_checkpoint) -> Path:
    return tiny_checkpoint("face")


@pytest.fixture(scope="session")
def pose_ckpt(tiny_checkpoint) -> Path:
    return tiny_checkpoint("pose")


@pytest.fixture(scope="session")
def face_onnx(tmp_path_factory, face_ckpt) -> Path:
    """The face checkpoint through the real exporter (dynamo, onnxslim, metadata, ORT-vs-PyTorch check)."""
    from cunet.compile.export import export_onnx

    out = tmp_path_factory.mktemp("rel") / "face.onnx"
    export_onnx(face_ckpt, out)
    return out


@pytest.fixture(scope="session")
def quick_onnx(tmp_path_factory, face_ckpt, pose_ckpt):
    """`quick_onnx(task)`: the tiny checkpoint of the task through the real exporter without the optional graph
    simplification and ORT-vs-PyTorch check (those are the export tests' business), once per session."""
    made: dict[str, Path] = {}

    def make(task: str) -> Path:
        if task not in made:
            from cunet.compile.export import export_onnx

            made[task] = tmp_path_factory.mktemp("quick") / f"{task}.onnx"
            export_onnx(face_ckpt if task == "face" else pose_ckpt, made[task], simplify=False, verify=False)
        return made[task]

    return make

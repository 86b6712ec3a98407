"""Say what really happened (issue 18, defects 5-7, 10, 11): honest counts, warnings, file-type and usage messages.

Real files through the real CLI: the tiny checkpoint and its ONNX export from conftest, INT8 models written by
`cunet quantize`, the synthetic dataset on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cunet.cli import main


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["calibrate", "quantize", "check-trt", "compile", "pack"])
def test_a_checkpoint_given_to_an_onnx_command_says_export_it_first(command, face_ckpt, face_data, tmp_path, capsys):
    args = {"calibrate": ["--data", face_data], "quantize": ["--recipe", "cpu", "--data", face_data, "-o",
                                                              tmp_path / "q.onnx"],
            "check-trt": [], "compile": ["--precision", "fp32", "-o", tmp_path / "m.engine"],
            "pack": ["-o", tmp_path / "m.cunetq"]}[command]
    code, out, err = _run(capsys, command, face_ckpt, *args)
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "this is a PyTorch checkpoint, not an ONNX model: export it first (cunet export" in err
    assert "DecodeError" not in err


@pytest.mark.parametrize("command", ["export"])  # bench takes an .onnx too: it then skips export
def test_an_onnx_model_given_to_a_checkpoint_command_says_so(command, face_onnx, face_data, tmp_path, capsys):
    args = {"export": ["-o", tmp_path / "again.onnx"], "bench": ["--data", face_data, "--report", tmp_path / "r"]}
    code, out, err = _run(capsys, command, face_onnx, *args[command])
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "this is an ONNX model, not a PyTorch checkpoint" in err, err
    assert "truncated" not in err


def test_check_trt_on_an_fp32_model_is_not_int8_ready(face_onnx, capsys):
    code, out, err = _run(capsys, "check-trt", face_onnx)
    assert code == 1 and "no Q/DQ nodes: not an INT8 model" in err
    assert "0 error(s)" not in err


def _mismatch_concat_scales(path, n: int) -> None:
    """Give the first input of `n` Concats a scale of its own (what ONNX Runtime's placement did everywhere)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    producer = {o: node for node in model.graph.node for o in node.output}
    for k, cat in enumerate([node for node in model.graph.node if node.op_type == "Concat"][:n]):
        dq = producer[cat.input[0]]
        while dq.op_type != "DequantizeLinear":  # through a MaxPool / Resize
            dq = producer[dq.input[0]]
        q = producer[dq.input[0]]
        model.graph.initializer.append(numpy_helper.from_array(np.array(0.5 + k, np.float32), f"odd{k}"))
        dq.input[1] = q.input[1] = f"odd{k}"
    onnx.save(model, str(path))


def test_check_trt_gives_each_warning_kind_its_cost_once(face_onnx, face_data, tmp_path, capsys):
    out_model = tmp_path / "trt.int8.onnx"
    code, _, err = _run(capsys, "quantize", face_onnx, "--recipe", "tensorrt", "--data", face_data, "--samples", "4",
                        "--cache-dir", tmp_path / "cache", "-o", out_model)
    assert code == 0, err
    code, out, _ = _run(capsys, "check-trt", out_model, "--json")
    assert code == 0 and json.loads(out)["violations"] == []  # cunet's own recipe: one scale per Concat (issue 26)
    _mismatch_concat_scales(out_model, 2)
    code, out, err = _run(capsys, "check-trt", out_model, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] and doc["qdq_nodes"] > 0
    kinds = {v["rule"] for v in doc["violations"] if v["severity"] == "warning"}
    assert kinds == {"concat-scales"} and len(doc["violations"]) == 2
    assert set(doc["warning_costs"]) == kinds and all(doc["warning_costs"].values())
    code, _, err = _run(capsys, "check-trt", out_model)
    for kind in kinds:
        assert sum(line.startswith(tuple("0123456789")) and f"[{kind}] warning(s):" in line
                   for line in err.splitlines()) == 1


def _labelled_by(model: Path, data: Path, out: Path) -> Path:
    """A copy of the face dataset whose training annotations are `model`'s own FP32 predictions: on it the FP32 model
    scores an NME of exactly 0 (`.pts` round-trips floats exactly), so every INT8 model that moves any point loses
    more than 0 NME points, and a `--max-drop 0` can be met only by keeping every block float."""
    import shutil

    from cunet.evaluate.accuracy import evaluate

    shutil.copytree(data, out, ignore=shutil.ignore_patterns(".cunet-outputs"))
    evaluate(model, data, split="train", backend="ort-cpu", save_predictions=out / "predictions")
    for pts in (out / "predictions" / "train").glob("*.pts"):
        shutil.copy(pts, out / "train" / pts.name)
    shutil.rmtree(out / "predictions")
    return out


def test_quantize_max_drop_that_forces_everything_float_warns_and_exits_1(face_onnx, face_data, tmp_path, capsys):
    data = _labelled_by(face_onnx, face_data, tmp_path / "data")
    code, out, err = _run(capsys, "quantize", face_onnx, "--recipe", "cpu", "--data", data, "--samples", "4",
                          "--cache-dir", tmp_path / "cache", "--max-drop", "0", "-o", tmp_path / "q.onnx", "--json")
    report = json.loads(out)
    assert report["all_float"] and len(report["excluded"]) == report["groups"] > 0
    assert code == 1 and "nothing is quantized" in err
    assert sum(line.startswith("max-drop: ") for line in err.splitlines()) >= report["groups"]  # progress per step
    kept = [e for e in report["excluded"] if not e.get("forced")]
    assert all(e["gain_alone"] > 0 for e in kept)  # a group whose float copy does not help is never chosen
    drops = [e["drop_after"] for e in kept]
    assert drops == sorted(drops, reverse=True)  # the drop only falls as groups are kept float
    assert report["samples"] == report["samples_requested"] == 4


def test_usage_errors_exit_1_and_summary_lists_the_variants(capsys):
    from cunet.model.config import VARIANTS

    code, _, err = _run(capsys, "summary")
    assert code == 1 and all(v in err for v in VARIANTS) and "Usage:" in err
    code, _, err = _run(capsys, "data", "check", ".")  # no --task
    assert code == 1 and "--task" in err


def test_summary_describes_a_checkpoint_and_an_onnx_model(face_ckpt, face_onnx, capsys):
    from cunet.model.summary import summarize
    from cunet.model.checkpoint import load_checkpoint
    from cunet.model.config import CUNetConfig

    want = summarize(CUNetConfig.from_dict(load_checkpoint(face_ckpt)["config"]))["params"]
    for model in (face_ckpt, face_onnx):
        code, out, err = _run(capsys, "summary", model, "--json")
        doc = json.loads(out)
        assert code == 0 and doc["params"] == want and doc["task"] == "face", err

"""Messages that point the way: a file cunet cannot use as given gets one `error:` line that says what it is and
what to run, from every command that reads a model, and the command writes nothing.

The cases come from the command table: every `cunet` command is listed either as a reader of a model file (with the
arguments it needs) or as one that reads none, so a new command must be placed before this file passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cunet.cli import cli, main  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "original" / "cu_net_L2_K1_face.npz"

#: Every command that reads a model file, with the arguments that make it read MODEL ({model}) and nothing else
#: of the user's: {data} is a small face dataset, {image} one of its images, {out} an empty folder for outputs.
READS_A_MODEL = {
    "export": ["{model}", "-o", "{out}/m.onnx"],
    "bench": ["{model}", "--data", "{data}", "--report", "{out}/report", "--work", "{out}/work"],
    "summary": ["{model}"],
    "evaluate": ["{model}", "--data", "{data}", "--save-predictions", "{out}/pred"],
    "profile": ["{model}", "--iters", "1"],
    "predict": ["{model}", "{image}", "--out", "{out}/pred"],
    "calibrate": ["{model}", "--data", "{data}", "-o", "{out}/ranges.json"],
    "quantize": ["{model}", "--recipe", "cpu", "--data", "{data}", "-o", "{out}/m.int8.onnx"],
    "check-trt": ["{model}"],
    "compile": ["{model}", "--precision", "fp32", "-o", "{out}/m.engine"],
    "pack": ["{model}", "-o", "{out}/m.cunetq"],
}
#: Commands that read no model file (import-original reads the original's, which is what the others point to;
#: unpack reads a `.cunetq`).
READS_NO_MODEL = {"data", "demo", "doctor", "train", "metrics", "compare", "import-original", "unpack"}
#: The commands whose input is a `.pt` checkpoint (the rest want an exported model).
READS_CHECKPOINTS = ("export", "bench", "summary", "evaluate", "profile", "predict")


def _run(capsys, args: list[str], fill: dict[str, object]) -> tuple[int, list[str]]:
    code = main([a.format(**fill) for a in args])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def face_data(tmp_path_factory) -> Path:
    from cunet.data.synth import synthesize

    root = tmp_path_factory.mktemp("faces")
    synthesize(root, "face", n=6, seed=0, image_size=64)
    return root


def _original_state() -> dict[str, torch.Tensor]:
    """The fixture's weights in the key names of the original `models/cu_net.py` (`module.` as DataParallel saves)."""
    z = np.load(FIXTURE)
    state, offset = {}, 0
    for key, _prev_key, shape in json.loads(str(z["index"])):
        n = int(np.prod(shape))
        state[f"module.{key}"] = torch.from_numpy(z["weights"][offset : offset + n].reshape(shape).copy())
        offset += n
    return state


@pytest.fixture(scope="module", params=["zip", "legacy"])
def original_file(request, tmp_path_factory) -> Path:
    """An original CU-Net checkpoint as its `Checkpoint` class writes it, in torch's zip or legacy (Python 2) format."""
    ckpt = {"state_dict": _original_state(), "optimizer": {"state": {}, "param_groups": []},
            "train_history": {"rmse": [{"val_rmse": np.float64(0.04)}], "is_best": np.bool_(True)}}
    path = tmp_path_factory.mktemp("original") / "face-layer-num-2-order-1.pth.tar"
    if request.param == "legacy":
        torch.save(ckpt, path, _use_new_zipfile_serialization=False, pickle_protocol=2)
    else:
        torch.save(ckpt, path)
    return path


def test_every_command_is_in_the_table():
    from click import Context

    commands = set(cli.list_commands(Context(cli)))
    assert commands == set(READS_A_MODEL) | READS_NO_MODEL, "place each new command in READS_A_MODEL or READS_NO_MODEL"


@pytest.mark.parametrize("command", sorted(READS_A_MODEL))
def test_an_original_checkpoint_is_told_to_run_import_original(command, original_file, face_data, tmp_path, capsys):
    image = next(face_data.rglob("*.png"))
    out = tmp_path / "out"
    out.mkdir()
    code, lines = _run(capsys, [command, *READS_A_MODEL[command]],
                       {"model": original_file, "data": face_data, "image": image, "out": out})
    assert code == 1 and len(lines) == 1, lines
    pt = "face-layer-num-2-order-1.pt"
    assert lines[0].startswith(f"error: {original_file}: this is a checkpoint of the original CU-Net code: ")
    assert f"(cunet import-original {original_file} -o {pt})" in lines[0]
    if command in ("export", "bench", "summary"):
        assert lines[0].endswith(f"then cunet {command} {pt}")
    elif command not in READS_CHECKPOINTS:  # an ONNX reader: the export step is named too
        assert f"export it (cunet export {pt} -o face-layer-num-2-order-1.onnx), then cunet {command}" in lines[0]
    assert list(out.iterdir()) == []


class _RunsCode:
    """A pickle that would call print() when loaded without weights_only."""

    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_import_original_names_the_refused_global_in_one_line(legacy, tmp_path, capsys):
    evil = tmp_path / "evil.pth.tar"
    ckpt = {"state_dict": _original_state(), "train_history": _RunsCode()}
    if legacy:
        torch.save(ckpt, evil, _use_new_zipfile_serialization=False, pickle_protocol=2)
    else:
        torch.save(ckpt, evil)
    code = main(["import-original", str(evil), "-o", str(tmp_path / "x.pt")])
    captured = capsys.readouterr()
    assert "must never run" not in captured.out + captured.err
    lines = captured.err.strip().splitlines()
    assert code == 1 and len(lines) == 1, lines
    assert lines[0] == (f"error: {evil}: refused to unpickle the Python global `print`: an original checkpoint "
                        "holds tensors, containers and numbers only (read with weights_only: nothing in the file ran)")
    assert not (tmp_path / "x.pt").exists()


@pytest.fixture(scope="module")
def misfit_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """A cunet checkpoint whose weights are those of a wider network than its own config describes."""
    from cunet.model import CUNet, CUNetConfig

    ckpt = torch.load(tiny_checkpoint("face"), weights_only=True)
    wider = CUNetConfig.from_dict({**ckpt["config"], "channels": 2 * ckpt["config"]["channels"]})
    ckpt["model"] = CUNet(wider).state_dict()
    path = tmp_path_factory.mktemp("misfit") / "misfit.pt"
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("command", READS_CHECKPOINTS)
def test_a_checkpoint_whose_weights_do_not_fit_its_config_exits_1(command, misfit_checkpoint, face_data, tmp_path,
                                                                   capsys):
    out = tmp_path / "out"
    out.mkdir()
    code, lines = _run(capsys, [command, *READS_A_MODEL[command]],
                       {"model": misfit_checkpoint, "data": face_data, "image": next(face_data.rglob("*.png")),
                        "out": out})
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {misfit_checkpoint}: weights do not fit the checkpoint's own config (")
    assert "of another shape, e.g. stem.0.weight: (32, 3, 7, 7) where the config needs (16, 3, 7, 7)" in lines[0]
    assert list(out.iterdir()) == []


def _conv_model(path: Path, int8_codes: np.ndarray | None) -> Path:
    """A one-conv ONNX model: float weights, or int8 weights behind a DequantizeLinear (as a Q/DQ recipe writes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)
    nodes, inits = [], []
    if int8_codes is None:
        inits.append(numpy_helper.from_array(w, "w"))
    else:
        inits += [numpy_helper.from_array(int8_codes.reshape(w.shape), "w_q"),
                  numpy_helper.from_array(np.float32(0.01), "w_scale")]
        nodes.append(helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w"]))
    nodes.append(helper.make_node("Conv", ["x", "w"], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


@pytest.mark.parametrize("weights, why", [
    ("fp32", "no int8 weights: a float model"),
    ("int8", "its int8 weights need all 8 bits"),
])
def test_pack_refuses_a_model_without_low_bit_weights(weights, why, tmp_path, capsys):
    codes = None if weights == "fp32" else np.arange(-54, 54, dtype=np.int8)  # 108 codes over [-54, 53]
    model = _conv_model(tmp_path / f"{weights}.onnx", codes)
    out = tmp_path / "m.cunetq"
    code, lines = _run(capsys, ["pack", str(model), "-o", str(out)], {})
    assert code == 1 and lines == [
        f"error: {model}: no low-bit weights to pack ({why}); `cunet pack` shrinks models trained with --bits-w 1, 2 "
        "or 4 and exported"]
    assert not out.exists()


def test_table_cells_print_brackets_as_written(capsys):
    from cunet.commands._common import print_table

    print_table("t", ["[a]", "value"], [("parameters, GMACs", "counted with PyTorch: pip install 'cunet[train]'")])
    err = capsys.readouterr().err
    assert "pip install 'cunet[train]'" in err and "[a]" in err


def test_cunet_lowbit_names_the_commands_that_do_low_bit(capsys):
    code = main(["lowbit", "--bits-w", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert ("Error: there is no `cunet lowbit`: low-bit models are trained with `cunet train --bits-w 1|2|4|8 "
            "--bits-a 8`, exported with `cunet export` and bit-packed with `cunet pack` / `cunet unpack`") in err

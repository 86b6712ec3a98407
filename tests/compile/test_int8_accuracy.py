"""INT8 accuracy on a (briefly) trained model: every recipe stays within the accuracy budget of FP32.

Random-init models say nothing about accuracy (their heatmaps are noise), so this trains cunet-tiny at 64² for a few
epochs on synthetic faces, exports it, quantizes it with both recipes from training images, and scores all three on
the test split with `cunet.evaluate.accuracy.evaluate`. Everything is seeded and runs on one thread, so the numbers
are reproducible on a given platform. The budget is relative to FP32's NME (3 %: measured 0.2 % for the cpu recipe
and 1.6 % for the tensorrt recipe, 6.57 % FP32 NME, on the project's machine), so it holds an INT8 model to its
FP32 source and leaves room for kernel-level differences between machines; every image must be scored with a finite
prediction (a model that is NaN on half the images would once have been scored on the other half).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

BUDGET = 0.03  # relative NME loss of the ONNX recipes against FP32


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    import torch

    from cunet.compile.export import export_onnx
    from cunet.data.synth import synthesize
    from cunet.train.trainer import TrainOptions, train

    root = tmp_path_factory.mktemp("int8acc")
    data = root / "faces"
    synthesize(data, "face", n=160, seed=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(TrainOptions(task="face", data=str(data), out=str(root / "run"), variant="cunet-tiny",
                                    epochs=10, batch_size=16, overrides={"input_size": 64}, seed=0, progress=False))
    finally:
        torch.set_num_threads(threads)
    onnx_path = root / "model.onnx"
    export_onnx(result.best, onnx_path)
    return data, onnx_path, root


@pytest.mark.parametrize("recipe", ["cpu", "tensorrt"])
def test_int8_recipes_stay_within_the_budget(trained, recipe):
    from cunet.compile.quantize import quantize
    from cunet.evaluate.accuracy import evaluate

    data, fp32, root = trained
    int8 = root / f"model.{recipe}.onnx"
    quantize(fp32, int8, recipe, data, samples=32, cache_dir=root / "cache")
    fp32_report = evaluate(fp32, data, backend="ort-cpu", threads=1)
    int8_report = evaluate(int8, data, backend="ort-cpu", threads=1)
    n_test = len(list((data / "test").rglob("*.pts")))
    for r in (fp32_report, int8_report):
        assert r["n"] == n_test and r["nonfinite"] == 0 and r["skipped"] == []  # every image, every one finite
    ref, got = fp32_report["nme"], int8_report["nme"]
    assert ref < 30, f"the model did not train (NME {ref:.1f} %), so the comparison would mean nothing"
    assert got <= ref * (1 + BUDGET), f"{recipe} INT8 NME {got:.3f} % vs FP32 {ref:.3f} %"
    if recipe == "tensorrt":  # issue 26: within the budget with one scale per Concat (no concat-scale warning)
        from cunet.compile.trt_rules import check_trt

        assert check_trt(int8, strict=True) == []


def _held_out(data, fp32, samples: int, count: int) -> tuple[list[str], dict]:
    """The images `--max-drop` measures on (`budget_images`: training images outside the calibration selection)
    and evaluate's arguments that score exactly those: the training split with every other image left out."""
    from cunet.calib.reader import read_preprocess_spec, select_calibration_images
    from cunet.compile.accuracy_budget import budget_images

    calibration = select_calibration_images(data, read_preprocess_spec(fp32), samples)
    files = list(budget_images(fp32, data, calibration, count).files)
    others = [str(p) for p in (data / "train").glob("*.png") if str(p) not in files]
    return files, dict(split="train", exclude=others, threads=1)


def _with_outlier_block(src: Path, out: Path, group: str = "heads.1") -> Path:
    """The trained FP32 model with one block made INT8-hostile and FP32-exact: one channel of its last conv's output
    (the heatmaps, for the head) gets +1000 and then -1000 (an Add and a Sub named inside the block, so `--max-drop`
    groups them with it). FP32 computes the same heatmaps; INT8 stretches that tensor's range to ~1000, so its
    quantization step (~4) swamps the heatmaps (~0..1): keeping this block float is what restores accuracy."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    conv = [n for n in model.graph.node if n.name.startswith((f"{group}.", f"{group}/")) and n.op_type == "Conv"][-1]
    weight = next(i for i in model.graph.initializer if i.name == conv.input[1])
    channels = numpy_helper.to_array(weight).shape[0]
    offset = np.zeros((1, channels, 1, 1), np.float32)
    offset[0, 0] = 1000.0
    x = conv.output[0]  # its consumers (or the graph output) now read the Sub's result under the same name
    conv.output[0] = "outlier_raw"
    model.graph.initializer.append(numpy_helper.from_array(offset, "outlier_offset"))
    model.graph.node.extend([
        helper.make_node("Add", ["outlier_raw", "outlier_offset"], ["outlier_shifted"], name=f"{group}.outlier/Add"),
        helper.make_node("Sub", ["outlier_shifted", "outlier_offset"], [x], name=f"{group}.outlier/Sub"),
    ])
    from cunet.compile.graph import set_nodes  # keep the graph topologically sorted for ONNX Runtime

    nodes = list(model.graph.node)
    at = nodes.index(conv) + 1
    set_nodes(model.graph, nodes[:at] + nodes[-2:] + nodes[at:-2])
    onnx.save(model, str(out))
    return out


def test_max_drop_budget_is_honoured_in_nme_points(trained):
    """`--max-drop` in NME points on held-out images (issue 23, item 6): the drop is `cunet evaluate`'s NME
    difference on those images, and a budget of half the all-INT8 loss keeps the one INT8-hostile block (the head)
    float and ends within it. (This trained model's own INT8 loss is within ±0.1 points of 0 on a dozen images, either sign:
    nothing a budget could be shown to hold back; the outlier block makes the loss real and known.)"""
    from cunet.compile.quantize import quantize
    from cunet.evaluate.accuracy import evaluate

    data, trained_fp32, root = trained
    fp32 = _with_outlier_block(trained_fp32, root / "outlier.onnx")
    _, held_out = _held_out(data, fp32, 16, 12)
    ref = evaluate(fp32, data, backend="ort-cpu", **held_out)
    assert ref["nme"] == pytest.approx(evaluate(trained_fp32, data, backend="ort-cpu", **held_out)["nme"], abs=1e-3)
    loose = quantize(fp32, root / "loose.onnx", "cpu", data, samples=16, cache_dir=root / "cache", max_drop=1e9,
                     val_samples=12)
    assert ref["n"] == loose.drop_images == 12
    assert loose.drop == pytest.approx(evaluate(root / "loose.onnx", data, backend="ort-cpu", **held_out)["nme"]
                                       - ref["nme"], abs=1e-6)
    assert loose.drop > 1.0, f"the outlier block should cost INT8 points, it cost {loose.drop:.3f}"
    budget = loose.drop / 2
    tight = quantize(fp32, root / "tight.onnx", "cpu", data, samples=16, cache_dir=root / "cache", max_drop=budget,
                     val_samples=12)
    assert tight.drop <= budget and tight.excluded[0]["group"] == "heads.1" and not tight.all_float
    assert evaluate(root / "tight.onnx", data, backend="ort-cpu", **held_out)["nme"] - ref["nme"] <= budget + 1e-6


OPENVINO_BUDGET = 0.02  # relative NME loss of the openvino recipe (issue 15's budget: 2 % of FP32's NME)


def test_openvino_recipe_stays_within_the_relative_budget(trained):
    pytest.importorskip("nncf")
    from cunet.compile.openvino import quantize_openvino
    from cunet.evaluate.accuracy import evaluate
    from cunet.runtime import read_ir_meta

    data, fp32, root = trained
    int8 = root / "model.openvino.xml"
    report = quantize_openvino(fp32, int8, data, samples=32)
    ref = evaluate(fp32, data, backend="ort-cpu", threads=1)["nme"]
    got = evaluate(int8, data, backend="openvino", threads=1)["nme"]
    assert ref < 30, f"the model did not train (NME {ref:.1f} %), so the comparison would mean nothing"
    assert got <= ref * (1 + OPENVINO_BUDGET), f"openvino INT8 NME {got:.3f} % vs FP32 {ref:.3f} %"
    meta = read_ir_meta(int8)
    assert meta.precision == "int8" and meta.recipe == "openvino" and meta.float_groups == ()
    assert report.int8_bytes < report.fp32_bytes


def test_openvino_max_drop_is_measured_as_evaluate_scores(trained):
    """The openvino recipe's drop is evaluate's NME difference of the IR and the FP32 model, both on OpenVINO, on
    held-out images (whether this INT8 model loses or gains on them; the budget loop is the ONNX recipes')."""
    pytest.importorskip("nncf")
    from cunet.compile.openvino import quantize_openvino
    from cunet.evaluate.accuracy import evaluate
    from cunet.runtime import read_ir_meta

    data, fp32, root = trained
    _, held_out = _held_out(data, fp32, 16, 8)
    loose = quantize_openvino(fp32, root / "loose.xml", data, samples=16, max_drop=1e9, val_samples=8)
    assert loose.excluded == [] and loose.drop_metric == "nme" and loose.drop_images == 8
    int8 = evaluate(root / "loose.xml", data, backend="openvino", **held_out)["nme"]
    ref = evaluate(fp32, data, backend="openvino", **held_out)["nme"]
    assert loose.drop == pytest.approx(int8 - ref, abs=1e-6)
    assert list(read_ir_meta(root / "loose.xml").float_groups) == []

"""INT8 accuracy on a (briefly) trained model: both recipes stay within the accuracy budget of FP32.

Random-init models say nothing about accuracy (their heatmaps are noise), so this trains cunet-tiny at 64² for a few
epochs on synthetic faces, exports it, quantizes it with both recipes from training images, and scores all three on
the test split with `cunet.evaluate.accuracy.evaluate`. Everything is seeded and runs on one thread, so the numbers
are reproducible on a given platform; the budget (1.0 NME point, the demo's) leaves room for kernel-level
differences between machines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

BUDGET = 1.0  # NME points (percent of the inter-ocular distance), the demo's INT8 budget


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
    ref = evaluate(fp32, data, backend="ort-cpu", threads=1)["nme"]
    got = evaluate(int8, data, backend="ort-cpu", threads=1)["nme"]
    assert ref < 30, f"the model did not train (NME {ref:.1f} %), so the comparison would mean nothing"
    assert got - ref <= BUDGET, f"{recipe} INT8 NME {got:.2f} % vs FP32 {ref:.2f} %"

"""Export verification: does an ONNX graph compute the network it was exported from?

ONNX Runtime and PyTorch both compute in float32 with different kernels, so neither is the exact answer and a fixed
tolerance on |ORT - PyTorch| says little: a deep CU-Net (eight coupled U-Nets with dense concatenations) accumulates
float32 rounding over its depth, and early in training its heatmaps are small and flat, so the same
absolute bound passes or fails with training progress, input and kernel choice. The check therefore asks the
question that matters: is ONNX Runtime about as close to the exact answer as PyTorch float32 itself is?

The exact answer is the same network in float64 (a deep copy, `model.double()`), run on the same inputs. For every
output the network has, the error of a float32 result y against that reference r is the relative L2 distance
||y - r|| / ||r|| over the whole batch; the export passes when, on every output,

    err_ort <= VERIFY_FACTOR x err_torch32 + VERIFY_FLOOR

and the outputs have the same shapes and are finite. The inputs look like what the model will see: synthetic face
or pose crops (`cunet.data.synth`, normalised with the model's mean/std), or the user's own images when given,
plus one Gaussian-noise image that exercises every channel at full range.

Measured (relative L2 against float64, `bench/verify_errors.py` and `tests/compile/test_verify.py`): on correct
exports ONNX Runtime's error is 0.2-1.4 times PyTorch float32's, from ~4e-6 (cunet-tiny) to ~1e-4 (8 coupled U-Nets);
a swapped channel order, a missing BatchNorm, a nearest/linear Resize mix-up or a dropped head measure 0.05 to 76,
over 100 times the allowance. A low-bit model with quantized conv inputs makes both float32 results round some
values one step apart from float64 and the flips cascade (cunet-tiny w1a8: 0.055 vs 0.043), so its errors are
larger and noisier (`LOWBIT_VERIFY_FACTOR`, `LOWBIT_VERIFY_FLOOR`); its quantizer wiring is proved exactly by
`cunet.compile.lowbit.check_input_qdq`, not by this number.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from cunet.errors import CunetError

__all__ = [
    "VERIFY_FACTOR",
    "VERIFY_FLOOR",
    "LOWBIT_VERIFY_FACTOR",
    "LOWBIT_VERIFY_FLOOR",
    "Verification",
    "verification_inputs",
    "verify_onnx",
    "NO_VERIFY_HINT",
]

#: The exported graph's input and output names (`cunet.compile.export` writes them; the check runs them).
INPUT_NAME = "image"
OUTPUT_NAME = "heatmaps"

#: ORT may be this many times further from float64 than PyTorch float32 is. Correct exports measured 0.2-1.4x; a
#: broken graph is over 100x; 3 leaves margin for kernel changes on other CPUs.
VERIFY_FACTOR = 3.0
#: Relative L2 always allowed, for models whose float32 error is near float32's own resolution (~6e-8 per value):
#: cunet-tiny measures ~4e-6 on both sides. 1e-5 is far below the smallest broken graph measured (0.05).
VERIFY_FLOOR = 1e-5
#: The same for an export whose conv inputs are quantized: an input within float32 error of a rounding boundary lands
#: one step apart from float64 and the flip cascades, so each float32 result is off by however many flips it had, a
#: count that varies from input to input and may be zero on one side only. Measured: flips on one side only up to
#: 0.015, on both sides 0.04-0.055 (cunet-tiny w1a8); broken graphs of that model 0.52 to 227. The floor covers
#: one-sided flips with margin and stays 5x below the smallest broken graph.
LOWBIT_VERIFY_FACTOR = 3.0
LOWBIT_VERIFY_FLOOR = 0.1
#: What a failure message says about skipping the check.
NO_VERIFY_HINT = (
    "to write it anyway, rerun with --no-verify: nothing then shows that the file computes what the checkpoint does, "
    "and every later step (quantize, compile, bench) builds on it"
)
#: Synthetic crops in the default input batch; one Gaussian-noise image is added to them.
N_CROPS = 3


@dataclass(frozen=True)
class Verification:
    """The outcome of `verify_onnx`.

    Attributes:
        error_ort: relative L2 error of ONNX Runtime against float64 PyTorch, on `worst_output`.
        error_torch32: the same for PyTorch float32 on the same output.
        allowed: what `error_ort` may be there: factor x error_torch32 + floor.
        worst_output: the output with the largest error_ort / allowed.
        max_abs_error: max |ORT - PyTorch float32| over all compared outputs (for reference; not the criterion).
        factor, floor: the rule's constants.
        inputs: what the input batch was made of.
        samples: images in the batch.
        problem: why the outputs could not be compared (shape mismatch, non-finite values), else None.
    """

    error_ort: float
    error_torch32: float
    allowed: float
    worst_output: str
    max_abs_error: float
    factor: float
    floor: float
    inputs: str
    samples: int
    problem: str | None = None

    @property
    def passed(self) -> bool:
        return self.problem is None and self.error_ort <= self.allowed

    def describe(self) -> str:
        """One line for an error message: both errors, the allowance and the worst output."""
        if self.problem is not None:
            return self.problem
        return (
            f"on {self.worst_output!r} ONNX Runtime is {self.error_ort:.3g} (relative L2) from the float64 reference, "
            f"PyTorch float32 {self.error_torch32:.3g}; allowed {self.factor:g} x {self.error_torch32:.3g} + "
            f"{self.floor:g} = {self.allowed:.3g} ({self.samples} inputs: {self.inputs})"
        )


def _synthetic_crops(task: str, size: int, n: int, mean: Any, std: Any, stretch: str = "none") -> np.ndarray:
    from cunet.data.preprocess import to_input
    from cunet.data.synth_face import make_face
    from cunet.data.synth_pose import make_pose

    make = make_face if task == "face" else make_pose
    crops = [make(np.random.default_rng(1000 + i), 0.5, size)[0] for i in range(n)]
    return to_input(np.stack(crops), mean, std, stretch)  # the model's own preprocessing (imported: min-max)


def verification_inputs(meta: Any, in_chans: int = 3, images: str | os.PathLike | None = None,
                        n: int = N_CROPS) -> tuple[np.ndarray, str]:
    """The input batch [n + 1, C, S, S] float32 of the export check and a description of it.

    Args:
        meta: the model's `ModelMeta` (task, input size, mean/std).
        in_chans: input channels; realistic crops need 3, other models get noise only.
        images: a dataset root or image folder to take `n` crops from (as calibration does), else synthetic crops.
        n: realistic images; one Gaussian-noise image is always appended.
    """
    size = meta.input_size
    noise = np.random.default_rng(0).standard_normal((1, in_chans, size, size)).astype(np.float32)
    if in_chans != 3:
        return noise, "Gaussian noise"
    if images is not None:
        from cunet.calib.reader import PreprocessSpec, select_calibration_images

        spec = PreprocessSpec("image", size, tuple(meta.mean), tuple(meta.std), meta.task)
        crops = select_calibration_images(images, spec, n).load().arrays
        what = f"{len(crops)} images from {images} + 1 Gaussian noise"
    else:
        crops = _synthetic_crops(meta.task, size, n, meta.mean, meta.std, meta.stretch)
        what = f"{n} synthetic {meta.task} crops + 1 Gaussian noise"
    return np.concatenate([crops.astype(np.float32), noise]), what


def _outputs(model: Any, x: Any) -> dict[str, np.ndarray]:
    import torch

    with torch.inference_mode():
        y = model(x)
    ys = y if isinstance(y, dict) else {OUTPUT_NAME: y}
    return {k: v.double().numpy() for k, v in ys.items()}


def _relative(y: np.ndarray, ref: np.ndarray) -> float:
    norm = float(np.linalg.norm(ref))
    return float(np.linalg.norm(y.astype(np.float64) - ref)) / (norm if norm > 0 else 1.0)


def verify_onnx(model: Any, data: bytes, x: np.ndarray, inputs: str = "", factor: float = VERIFY_FACTOR,
                floor: float = VERIFY_FLOOR) -> Verification:
    """Run `x` through ONNX Runtime, PyTorch float32 and PyTorch float64 and judge the ONNX graph `data`.

    Args:
        model: the float32 PyTorch module the graph was exported from (eval mode); it is not modified.
        data: the serialised ONNX model (input "image").
        x: the input batch [N, C, S, S] float32 (`verification_inputs`).
        inputs: a description of `x` for the report.
        factor, floor: the rule err_ort <= factor x err_torch32 + floor.

    Returns:
        A `Verification` (check `.passed`).
    """
    import onnxruntime as ort
    import torch

    ref32 = _outputs(model, torch.from_numpy(x))
    ref64 = _outputs(copy.deepcopy(model).double(), torch.from_numpy(x).double())
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs() if o.name in ref64]
    if not names:
        raise CunetError(f"the exported graph has none of the outputs {sorted(ref64)}")
    got = dict(zip(names, session.run(names, {INPUT_NAME: x})))
    common = dict(factor=factor, floor=floor, inputs=inputs, samples=len(x))
    worst: Verification | None = None
    for name in names:
        if got[name].shape != ref64[name].shape:
            problem = f"the exported model gives {name} {list(got[name].shape)}, PyTorch {list(ref64[name].shape)}"
            return Verification(np.inf, np.nan, np.nan, name, np.inf, problem=problem, **common)
        if not np.all(np.isfinite(got[name])):
            return Verification(np.inf, np.nan, np.nan, name, np.inf,
                                problem=f"the exported model gives non-finite values on {name!r}", **common)
        e_ort, e_32 = _relative(got[name], ref64[name]), _relative(ref32[name], ref64[name])
        v = Verification(e_ort, e_32, factor * e_32 + floor, name, 0.0, **common)
        if worst is None or v.error_ort / v.allowed > worst.error_ort / worst.allowed:
            worst = v
    assert worst is not None
    max_abs = max(float(np.max(np.abs(got[n] - ref32[n]))) for n in names)
    return dataclasses.replace(worst, max_abs_error=max_abs)

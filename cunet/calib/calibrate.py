"""Activation ranges for INT8: ONNX Runtime's calibrators over real images, cached on disk.

The calibrators themselves (min-max, entropy, percentile) are ONNX Runtime's (`create_calibrator`); this module picks
the images, preprocesses them exactly as inference does, guards against inputs that make ranges meaningless (NaN,
blank images) and caches the result under a strict key (see `cunet.calib.cache`). The `Ranges` it returns convert to
ONNX Runtime's `TensorsData`, which the quantizer consumes directly, so a model is never calibrated twice.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cunet.calib.cache import CacheKey, default_cache_dir, entry_lock, entry_path, read_entry, write_entry
from cunet.calib.reader import CalibrationInputs, inputs_from_arrays, read_preprocess_spec, select_calibration_images
from cunet.errors import CunetError
from cunet.io import sha256_file
from cunet.tempdirs import temp_dir

__all__ = ["Method", "Ranges", "calibrate", "calibrate_inputs", "CALIBRATOR_SETTINGS"]


class Method(str, Enum):
    """How a tensor's range is derived from the calibration activations."""

    MINMAX = "minmax"  # exact min/max: no clipping, most sensitive to outliers
    ENTROPY = "entropy"  # KL-divergence optimal clipping (TensorRT's classic choice)
    PERCENTILE = "percentile"  # clip at the 99.999th percentile of |x|

    def to_ort(self):
        """The matching `onnxruntime.quantization.CalibrationMethod`."""
        from onnxruntime.quantization import CalibrationMethod

        return {
            Method.MINMAX: CalibrationMethod.MinMax,
            Method.ENTROPY: CalibrationMethod.Entropy,
            Method.PERCENTILE: CalibrationMethod.Percentile,
        }[self]


@dataclass(frozen=True)
class Ranges:
    """Calibrated activation ranges of one model.

    Attributes:
        method: the calibration method.
        samples: the number of calibration images the ranges come from (used, not asked for).
        model_sha256: sha256 of the calibrated model file.
        data_fingerprint: fingerprint of the calibration inputs.
        tensors: tensor name → (lowest, highest) observed/clipped value.
        cache_file: the cache entry these ranges were read from or written to (None when not cached).
        from_cache: True when they were reused from `cache_file` rather than computed.
        requested: the number of images asked for (part of the cache key; None: as many as `samples`).
        skipped: [file, problem] of each selected image that could not be read and was left out.
    """

    method: Method
    samples: int
    model_sha256: str
    data_fingerprint: str
    tensors: dict[str, tuple[float, float]]
    cache_file: str | None = field(default=None, compare=False)
    from_cache: bool = field(default=False, compare=False)
    requested: int | None = None
    skipped: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method.value,
            "samples": self.samples,
            "requested": self.requested if self.requested is not None else self.samples,
            "skipped": [list(s) for s in self.skipped],
            "model_sha256": self.model_sha256,
            "data_fingerprint": self.data_fingerprint,
            "tensors": {k: [lo, hi] for k, (lo, hi) in self.tensors.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], **extra: Any) -> "Ranges":
        return cls(
            method=Method(d["method"]),
            samples=int(d["samples"]),
            model_sha256=d["model_sha256"],
            data_fingerprint=d["data_fingerprint"],
            tensors={k: (float(v[0]), float(v[1])) for k, v in d["tensors"].items()},
            requested=int(d.get("requested", d["samples"])),
            skipped=tuple((str(f), str(p)) for f, p in d.get("skipped", [])),
            **extra,
        )

    def to_tensors_data(self):
        """The ranges as ONNX Runtime's `TensorsData`, the form `QDQQuantizer` / `ONNXQuantizer` take."""
        from onnxruntime.quantization.calibrate import TensorData, TensorsData

        return TensorsData(
            self.method.to_ort(),
            {
                k: TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
                for k, (lo, hi) in self.tensors.items()
            },
        )


#: What cunet hands ONNX Runtime's calibrators, per method (`create_calibrator` extra_options, and the batch of
#: `get_next`): stated here rather than left to ORT's defaults, so the cache key records the settings that made a range.
#: Entropy/percentile keep every activation in histograms; one image per batch bounds their memory.
CALIBRATOR_SETTINGS: dict[str, dict[str, Any]] = {
    "minmax": {"batch": 8, "symmetric": False, "moving_average": False},
    "entropy": {"batch": 1, "symmetric": False, "num_bins": 128, "num_quantized_bins": 128},
    "percentile": {"batch": 1, "symmetric": True, "num_bins": 2048, "percentile": 99.999},
}


def _check_inputs(inputs: CalibrationInputs, where: str) -> None:
    # `where` names the data (its folder) so the one-line error says which input to fix.
    x = inputs.arrays
    if not np.isfinite(x).all():
        raise CunetError(f"{where}: calibration data contains NaN or inf ({int((~np.isfinite(x)).sum())} values)")
    spatial = x.reshape(x.shape[0], x.shape[1], -1)
    if float(np.ptp(spatial, axis=2).max()) == 0.0:
        raise CunetError(
            f"{where}: all {len(x)} calibration images are constant (blank); ranges from them are meaningless — "
            "use real images"
        )


def _run_calibrator(model_path: Path, inputs: CalibrationInputs, method: Method) -> dict[str, tuple[float, float]]:
    from onnxruntime.quantization.calibrate import create_calibrator

    from cunet.runtime.ort_backend import metadata_input_rejected

    settings = dict(CALIBRATOR_SETTINGS[method.value])
    batch = settings.pop("batch")
    # ONNX Runtime's histogram calibrators print progress on stdout, which belongs to `--json` output. NaN
    # activations make numpy warn inside ORT ("All-NaN axis"); the ranges are checked below and that is the one error.
    with (
        temp_dir("calib") as tmp,
        contextlib.redirect_stdout(sys.stderr),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", RuntimeWarning)
        calibrator = create_calibrator(
            model_path,
            None,
            augmented_model_path=os.path.join(tmp, "augmented.onnx"),
            calibrate_method=method.to_ort(),
            extra_options=settings,
        )
        with metadata_input_rejected(model_path):
            calibrator.collect_data(inputs.reader(batch))
        data = calibrator.compute_data()
    tensors: dict[str, tuple[float, float]] = {}
    for name, td in data.items():
        lo, hi = float(np.min(td.range_value[0])), float(np.max(td.range_value[1]))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise CunetError(f"{model_path}: calibration produced a non-finite range for tensor {name!r} (NaN in the model or data)")
        tensors[name] = (lo, hi)
    import onnx

    for out in onnx.load(str(model_path), load_external_data=False).graph.output:
        lo, hi = tensors.get(out.name, (0.0, 1.0))
        if lo == hi:
            # Every scale downstream of a constant output is arbitrary: the INT8 model would "work" and be useless.
            raise CunetError(
                f"{model_path}: calibration gives the output {out.name!r} a zero range ({lo:g} everywhere); the "
                "model or the calibration images produce a constant output, so INT8 ranges from them are meaningless"
            )
    return tensors


def calibrate_inputs(
    model_path: str | os.PathLike,
    inputs: CalibrationInputs | Sequence[np.ndarray] | np.ndarray,
    method: Method | str = Method.MINMAX,
    cache_dir: str | os.PathLike | None = None,
    samples: int | None = None,
) -> Ranges:
    """Calibrate `model_path` on already preprocessed inputs (cached by the inputs' content hash).

    Args:
        model_path: an ONNX model.
        inputs: `CalibrationInputs`, or arrays [N, 3, S, S] float32 fed to the model's first input.
        method: minmax, entropy or percentile.
        cache_dir: where the cache lives (default `~/.cache/cunet/calib`).
        samples: the sample count recorded in the key (default: the number of inputs).
    """
    import onnx

    if not isinstance(inputs, CalibrationInputs):
        name = onnx.load(str(model_path), load_external_data=False).graph.input[0].name
        inputs = inputs_from_arrays(name, inputs)
    return _calibrate(
        Path(model_path), Method(method), samples or len(inputs.arrays), cache_dir, inputs.fingerprint, lambda: inputs,
        "calibration arrays", {"inputs": "preprocessed arrays"},
    )


def calibrate(
    model_path: str | os.PathLike,
    data: str | os.PathLike,
    method: Method | str = Method.MINMAX,
    samples: int = 64,
    cache_dir: str | os.PathLike | None = None,
    strict: bool = False,
) -> Ranges:
    """Activation ranges of an exported cunet ONNX model from the images under `data`.

    The images are preprocessed exactly as the model's metadata says. Results are cached under
    `cache_dir` (default `~/.cache/cunet/calib`) and reused only when the model bytes, the selected files' bytes and
    crop boxes, the preprocessing, the method, the sample count, the calibrator settings and the ONNX Runtime
    version all match (`cunet.calib.cache`); `Ranges.from_cache` tells which.

    Args:
        model_path: the FP32 ONNX model (with cunet metadata).
        data: a dataset root (its training split) or a folder of images.
        method: minmax, entropy or percentile.
        samples: how many images to use, spread evenly over the sorted set (fewer when the folder has fewer;
            `Ranges.samples` says how many were used, `Ranges.requested` how many were asked for).
        cache_dir: cache directory.
        strict: stop at the first unreadable image instead of leaving it out (listed in `Ranges.skipped`).

    Raises:
        CunetError: unreadable model, no readable image (or any unreadable one with `strict`), NaN or constant
            calibration data, non-finite ranges.
    """
    path = Path(model_path)
    spec = read_preprocess_spec(path)
    selection = select_calibration_images(data, spec, samples)
    preprocess = {"input_size": spec.input_size, "mean": list(spec.mean), "std": list(spec.std),
                  "stretch": spec.stretch, "box_margin": spec.box_margin}
    return _calibrate(path, Method(method), samples, cache_dir, selection.fingerprint,
                      lambda: selection.load(strict=strict), str(data), preprocess)


def _runtime() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            return {"onnxruntime": version(dist)}
        except PackageNotFoundError:
            continue
    import onnxruntime

    return {"onnxruntime": onnxruntime.__version__}


def _calibrate(path: Path, method: Method, samples: int, cache_dir, fingerprint: str, load, where: str,
               preprocess: dict[str, Any]) -> Ranges:
    if not path.is_file():
        raise CunetError(f"{path}: no such model file")
    key = CacheKey(sha256_file(path), fingerprint, method.value, int(samples), preprocess,
                   CALIBRATOR_SETTINGS[method.value], _runtime())
    entry = entry_path(cache_dir if cache_dir is not None else default_cache_dir(), key)
    with entry_lock(entry):
        cached = read_entry(entry, key)
        if cached is not None:
            return Ranges.from_dict(cached, cache_file=str(entry), from_cache=True)
        inputs = load()
        _check_inputs(inputs, where)
        tensors = _run_calibrator(path, inputs, method)
        ranges = Ranges(method, len(inputs.arrays), key.model_sha256, fingerprint, tensors, cache_file=str(entry),
                        requested=int(samples), skipped=inputs.skipped)
        write_entry(entry, key, ranges.to_dict())
    return ranges

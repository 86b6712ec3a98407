"""Two real `cunet quantize` processes on the same model and calibration cache at the same time.

tests/calib covers two Python processes calling `calibrate()`; this goes through the installed console script and
the whole quantize path (prepare, calibrate under the cache lock, Q/DQ, atomic write of the INT8 model).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def _scales(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("scale")}


def test_two_quantize_processes_share_one_valid_cache(face_onnx, face_data, tmp_path, tally):
    """Guards the per-entry cache lock and atomic cache writes: both processes exit 0, exactly one computes the
    ranges while the other waits and reuses them (without the lock both compute), the cache holds one entry that
    parses and carries its key, and both INT8 models get identical Q/DQ scales."""
    exe = Path(sys.executable).with_name("cunet")
    cache = tmp_path / "cache"
    procs = []
    for name in ("a", "b"):
        cmd = [str(exe), "quantize", str(face_onnx), "--recipe", "tensorrt", "--data", str(face_data), "--samples",
               "6", "--cache-dir", str(cache), "-o", str(tmp_path / f"{name}.int8.onnx"), "--json"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path))
    results = [(p, *p.communicate(timeout=300)) for p in procs]
    tally["concurrent: cunet quantize processes"] += len(procs)
    for p, out, err in results:
        assert p.returncode == 0, err
    reports = [json.loads(out) for _, out, _ in results]
    assert sorted(r["reused"] for r in reports) == [False, True], reports
    assert reports[0]["calibration_cache"] == reports[1]["calibration_cache"]
    entries = sorted(cache.glob("*.json"))
    assert [str(e) for e in entries] == [reports[0]["calibration_cache"]]
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name], "temp litter in the cache"
    doc = json.loads(entries[0].read_text())
    assert doc["format"] == "cunet-calibration" and doc["key"]["samples"] == 6 and doc["key"]["method"] == "minmax"
    tensors = doc["ranges"]["tensors"]
    assert tensors and all(np.isfinite(v).all() and v[0] <= v[1] for v in map(np.asarray, tensors.values()))
    a, b = _scales(tmp_path / "a.int8.onnx"), _scales(tmp_path / "b.int8.onnx")
    assert a.keys() == b.keys() and len(a) > 0
    assert all(np.array_equal(a[k], b[k]) for k in a)

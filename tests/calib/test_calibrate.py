"""Calibration cache rules, bad calibration data, and two processes sharing one cache entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from cunet.calib import calibrate, calibrate_inputs
from cunet.errors import CunetError


def _cal(model, data, cache, **kw):
    kw.setdefault("samples", 3)
    return calibrate(model, data, cache_dir=cache, **kw)


def test_identical_inputs_hit_and_every_key_change_misses(tiny_onnx, image_dir, tmp_path):
    cache = tmp_path / "cache"
    first = _cal(tiny_onnx, image_dir, cache)
    assert not first.from_cache and Path(first.cache_file).is_file()
    again = _cal(tiny_onnx, image_dir, cache)
    assert again.from_cache and again.cache_file == first.cache_file and again == first
    assert not _cal(tiny_onnx, image_dir, cache, method="percentile").from_cache
    assert not _cal(tiny_onnx, image_dir, cache, samples=2).from_cache
    os.utime(image_dir / "img00.png", ns=(1, 1))  # same pixels, another mtime: the key is content, still a hit
    assert _cal(tiny_onnx, image_dir, cache).from_cache
    other_model = tmp_path / "other.onnx"
    proto = onnx.load(str(tiny_onnx))
    proto.doc_string = "retrained"  # same graph, different bytes: a different model hash
    onnx.save(proto, str(other_model))
    assert not _cal(other_model, image_dir, cache).from_cache


def test_cli_says_when_it_reuses(tiny_onnx, image_dir, tmp_path):
    from click.testing import CliRunner

    from cunet.cli import cli

    args = ["calibrate", str(tiny_onnx), "--data", str(image_dir), "--samples", "2", "--cache-dir", str(tmp_path), "--json"]
    first = CliRunner().invoke(cli, args)
    second = CliRunner().invoke(cli, args)
    assert first.exit_code == 0 and second.exit_code == 0
    assert "reusing calibration cache" not in first.stderr
    assert "reusing calibration cache" in second.stderr
    assert json.loads(second.stdout)["reused"] is True


def test_nan_and_constant_data_are_clear_errors(tiny_onnx, tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(CunetError, match="NaN"):
        calibrate_inputs(tiny_onnx, x, cache_dir=tmp_path)
    with pytest.raises(CunetError, match="constant"):
        calibrate_inputs(tiny_onnx, np.ones((2, 3, 64, 64), np.float32), cache_dir=tmp_path)


def test_blank_image_folder_is_a_clear_error(tiny_onnx, blank_dir, tmp_path):
    with pytest.raises(CunetError, match="constant"):
        calibrate(tiny_onnx, blank_dir, samples=2, cache_dir=tmp_path)


def test_two_processes_calibrating_at_once_leave_a_valid_cache(tiny_onnx, image_dir, tmp_path):
    code = (
        "import sys, json; from cunet.calib import calibrate; "
        "r = calibrate(sys.argv[1], sys.argv[2], samples=3, cache_dir=sys.argv[3]); print(json.dumps([r.cache_file, r.from_cache]))"
    )
    cmd = [sys.executable, "-c", code, str(tiny_onnx), str(image_dir), str(tmp_path / "c")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    results = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert results[0][0] == results[1][0]
    assert sorted(r[1] for r in results) == [False, True]  # one computed, the other waited and reused
    doc = json.loads(Path(results[0][0]).read_text())
    assert doc["ranges"]["tensors"] and doc["key"]["samples"] == 3


def _same_names_sizes_times(root: Path, seed: int, scale: float) -> Path:
    """Six BMP files (a BMP's size is a function of its dimensions only) with the same names and mtimes in every
    folder this makes; only the pixels differ (`scale` sets their brightness range)."""
    import cv2

    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(6):
        img = (rng.random((80, 96, 3)) * 255 * scale).astype(np.uint8)
        cv2.imwrite(str(root / f"img{i:02d}.bmp"), img)
        os.utime(root / f"img{i:02d}.bmp", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    return root


def test_same_names_sizes_and_times_with_other_pixels_do_not_share_ranges(tiny_onnx, tmp_path):
    """The collision of issue 23: a tar/`cp -p` copy or same-shape BMP files: names, sizes and mtimes agree."""
    dark = _same_names_sizes_times(tmp_path / "a" / "images", seed=1, scale=0.3)
    bright = _same_names_sizes_times(tmp_path / "b" / "images", seed=2, scale=1.0)
    assert [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(dark.iterdir())] == \
        [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(bright.iterdir())]
    cache = tmp_path / "cache"
    a = _cal(tiny_onnx, dark, cache)
    b = _cal(tiny_onnx, bright, cache)
    assert not b.from_cache and b.cache_file != a.cache_file
    # the network input's range is the normalised pixels': the bright folder's maximum is higher
    assert b.tensors["image"][1] > a.tensors["image"][1] + 1.0
    assert b == _cal(tiny_onnx, bright, tmp_path / "fresh")  # what folder B gives without any cache


def test_a_cache_entry_that_is_not_valid_ranges_is_recomputed(tiny_onnx, image_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = _cal(tiny_onnx, image_dir, cache)
    entry = Path(first.cache_file)
    doc = json.loads(entry.read_text())
    broken = [
        lambda d: d["ranges"]["tensors"].update({next(iter(d["ranges"]["tensors"])): None}),  # valid JSON, a null
        lambda d: d["ranges"]["tensors"].update({next(iter(d["ranges"]["tensors"])): [1.0, "x"]}),
        lambda d: d["ranges"]["tensors"].update({next(iter(d["ranges"]["tensors"])): [2.0, 1.0]}),
        lambda d: d["ranges"].update(samples="3"),
        lambda d: d.update(ranges=None),
        lambda d: d["ranges"].update(tensors={}),
    ]
    for damage in broken:
        bad = json.loads(json.dumps(doc))
        damage(bad)
        entry.write_text(json.dumps(bad))
        again = _cal(tiny_onnx, image_dir, cache)
        assert not again.from_cache and again == first  # recomputed, the same ranges, and the entry rewritten
        assert json.loads(entry.read_text()) == doc
    monkeypatch.setenv("CUNET_MAX_FILE_MB", "1")  # the readers' size limit (cunet.limits): a larger entry is not read
    entry.write_text(json.dumps(doc) + " " * (2 << 20))
    assert not _cal(tiny_onnx, image_dir, cache).from_cache
    monkeypatch.delenv("CUNET_MAX_FILE_MB")
    entry.write_bytes(b"")  # an empty entry (a full disk) is a miss too
    assert not _cal(tiny_onnx, image_dir, cache).from_cache


def test_calibrator_settings_and_runtime_version_are_in_the_key(tiny_onnx, image_dir, tmp_path, monkeypatch):
    import importlib

    module = importlib.import_module("cunet.calib.calibrate")  # the module (the package exports its function)

    cache = tmp_path / "cache"
    first = _cal(tiny_onnx, image_dir, cache)
    doc = json.loads(Path(first.cache_file).read_text())
    assert doc["key"]["calibrator"] == module.CALIBRATOR_SETTINGS["minmax"] and doc["key"]["runtime"]["onnxruntime"]
    assert doc["key"]["preprocess"]["input_size"] == 64
    monkeypatch.setattr(module, "_runtime", lambda: {"onnxruntime": "0.0.1"})  # an upgraded runtime: a miss
    assert not _cal(tiny_onnx, image_dir, cache).from_cache
    monkeypatch.setitem(module.CALIBRATOR_SETTINGS, "minmax", {**module.CALIBRATOR_SETTINGS["minmax"], "batch": 2})
    assert not _cal(tiny_onnx, image_dir, cache).from_cache

"""`train` on a flat folder of images + .pts, validating on a second flat folder (`--val-data`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.train.conftest import tiny_options


def _flat(src: Path, dst: Path, keep: int | None = None) -> Path:
    """Copy the image + .pts pairs of a synthetic split into one flat folder (how 300-W's afw/ and ibug/ come)."""
    dst.mkdir(parents=True)
    for pts in sorted(src.rglob("*.pts"))[:keep]:
        for f in (pts, *(p for p in pts.parent.glob(pts.stem + ".*") if p.suffix != ".pts")):
            shutil.copy(f, dst / f.name)
    return dst


def test_flat_training_folder_with_val_data(faces, tmp_path):
    from cunet.errors import CunetError
    from cunet.train.trainer import train

    train_dir = _flat(faces / "train", tmp_path / "afw")
    val_dir = _flat(faces / "test", tmp_path / "ibug", keep=2)  # fewer than faces/test: a different number
    with pytest.raises(CunetError, match="one-split dataset .* give one with --val-data DIR"):
        train(tiny_options(train_dir, tmp_path / "no-val", epochs=1))
    result = train(tiny_options(train_dir, tmp_path / "run", epochs=1, val_data=val_dir))
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 1
    # The validation number is best.pt's NME on the --val-data folder (the trainer validates with evaluate's
    # crops, decoder and metric); rtol 1e-5: float32 inference in both, summed in a different order.
    from cunet.evaluate.accuracy import evaluate

    on_val = evaluate(result.best, val_dir)
    assert on_val["n"] == 2 and on_val["subset"] == "all"
    assert result.best_metric == pytest.approx(on_val["nme"], rel=1e-5)


def test_val_data_flag_is_in_help():
    from click.testing import CliRunner

    from cunet.cli import cli

    out = CliRunner().invoke(cli, ["train", "--help"]).output
    assert "--val-data" in out and "one flat" in out

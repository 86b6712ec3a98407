"""The pose demo counts people and images consistently (issue 18, defect 11): the data line and the trainer's line
both say how many people in how many images, so "19 train images" is no longer followed by "training on 21"."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")


def test_pose_data_and_training_lines_count_people_in_images(tmp_path):
    from cunet.data.dataset import load_samples
    from cunet.data.synth import synthesize
    from cunet.pipeline.demo import _data_detail
    from cunet.train.runlog import count as _count

    summary = synthesize(tmp_path / "p", "pose", n=12, seed=1, difficulty=1.0, image_size=64)
    people = len(json.loads((tmp_path / "p" / "train.json").read_text()))
    images = len({r["image"] for r in json.loads((tmp_path / "p" / "train.json").read_text())})
    detail = _data_detail(summary)
    assert detail.startswith(f"{summary['train']} train / {summary['test']['valid']} valid images")
    assert f"({people} / {summary['people']['valid']} people)" in detail
    samples = load_samples(tmp_path / "p", "pose", "train").samples
    assert _count(samples, "pose") == f"{people} people in {images} images"

"""Shared fixtures of the trainer tests: tiny synthetic datasets and one short in-process training run.

Everything is sized to take seconds on 2 shared cores: cunet-tiny at 64² input, 24 images of 96², batch 4.
"""

from __future__ import annotations

from pathlib import Path

import pytest

#: cunet-tiny at 64² input: a 16² heatmap; with batch 4 an epoch over the 19 training images is 4 steps.
TINY = {"input_size": 64}


@pytest.fixture(scope="session")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cunet.data.synth import synthesize

    root = tmp_path_factory.mktemp("faces")
    synthesize(root, "face", n=24, seed=3, image_size=96)
    return root


@pytest.fixture(scope="session")
def poses(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cunet.data.synth import synthesize

    root = tmp_path_factory.mktemp("poses")
    synthesize(root, "pose", n=20, seed=4, image_size=96)
    return root


def tiny_options(data: Path, out: Path, **kw):
    """TrainOptions of a seconds-long face run; keyword arguments override."""
    from cunet.train.trainer import TrainOptions

    base = dict(task="face", data=data, out=out, variant="cunet-tiny", epochs=3, batch_size=4, lr=2e-3,
                optimizer="adam", seed=0, overrides=dict(TINY), progress=False, threads=1)
    return TrainOptions(**{**base, **kw})


@pytest.fixture(scope="session")
def tiny_run(faces: Path, tmp_path_factory: pytest.TempPathFactory):
    """One finished 3-epoch face run: (TrainOptions, TrainResult)."""
    from cunet.train.trainer import train

    opts = tiny_options(faces, tmp_path_factory.mktemp("run") / "run")
    return opts, train(opts)

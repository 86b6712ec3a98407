"""ModelMeta: validation, JSON round trip, flip permutation, TensorRT manifest reading — no export needed."""

import dataclasses
import json

import numpy as np
import pytest

from cunet.errors import CunetError
from cunet.model import CUNetConfig
from cunet.runtime.meta import META_FORMAT_VERSION, ModelMeta, read_engine_meta

CFG = CUNetConfig(layers=1, order=0, channels=16, growth=8, input_size=64, num_landmarks=16)


def pose_meta(**over) -> ModelMeta:
    ckpt = {"task": "pose", "config": CFG.to_dict(), "args": {"sigma": 2.0}}
    return dataclasses.replace(ModelMeta.from_checkpoint(ckpt, source_sha256="ab" * 32), **over)


def test_from_checkpoint_uses_the_spec_and_preprocessing():
    from cunet.data.preprocess import MEAN, STD
    from cunet.data.spec import get_spec

    meta = pose_meta()
    spec = get_spec("pose")
    assert meta.landmark_names == tuple(spec.names) and meta.flip_pairs == tuple(map(tuple, spec.flip_pairs))
    assert meta.mean == MEAN and meta.std == STD and meta.sigma == 2.0
    assert (meta.input_size, meta.heatmap_stride, meta.heatmap_size) == (64, 4, 16)
    assert (meta.color, meta.layout, meta.precision) == ("RGB", "NCHW", "fp32")
    assert meta.format_version == META_FORMAT_VERSION


def test_sigma_is_null_without_training_args():
    assert ModelMeta.from_checkpoint({"task": "pose", "config": CFG.to_dict()}).sigma is None


def test_landmark_count_must_match_the_spec():
    with pytest.raises(CunetError, match="16 landmarks"):
        ModelMeta.from_checkpoint({"task": "face", "config": CFG.to_dict()})


def test_json_round_trip_and_required_keys():
    meta = pose_meta()
    d = json.loads(meta.to_json())
    assert set(d) == {
        "format_version", "task", "num_landmarks", "landmark_names", "flip_pairs", "input_size", "heatmap_stride",
        "mean", "std", "color", "layout", "config", "cunet_version", "source_sha256", "sigma", "precision",
    }  # fmt: skip
    assert ModelMeta.from_dict(d) == meta
    with pytest.raises(CunetError, match="missing \\['task'\\]"):
        ModelMeta.from_dict({k: v for k, v in d.items() if k != "task"})
    with pytest.raises(CunetError, match="newer"):
        ModelMeta.from_dict({**d, "format_version": META_FORMAT_VERSION + 1})
    with pytest.raises(CunetError, match="precision"):
        ModelMeta.from_dict({**d, "precision": "int4"})


def test_flip_permutation_is_an_involution_that_swaps_pairs():
    meta = pose_meta()
    perm = meta.flip_permutation
    np.testing.assert_array_equal(perm[perm], np.arange(16))
    for a, b in meta.flip_pairs:
        assert perm[a] == b and perm[b] == a
    assert perm[9] == 9  # head top has no partner


def test_engine_manifest(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0")
    with pytest.raises(CunetError, match="manifest.json"):
        read_engine_meta(engine)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CunetError, match="not valid JSON"):
        read_engine_meta(engine)
    meta = pose_meta(precision="int8")
    (tmp_path / "manifest.json").write_text(json.dumps({"cunet": meta.to_dict(), "builder": "anything"}))
    assert read_engine_meta(engine) == meta

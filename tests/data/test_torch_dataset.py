"""LandmarkDataset: item shapes and dtypes, determinism per (seed, epoch, index), and targets that decode back to
the annotated points on real MPII fixture images."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cunet.data.augment import AugmentConfig
from cunet.data.dataset import Sample
from cunet.data.decode import decode, heatmap_to_image
from cunet.data.preprocess import Box, box_from_center_scale, crop_affine
from cunet.data.spec import get_spec
from cunet.data.torch_dataset import HEATMAP_STRIDE, LandmarkDataset

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
S, K = 64, 16
PERM = get_spec("pose").flip_permutation


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    out = []
    for i in range(4):
        path = root / f"{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (90, 110, 3), dtype=np.uint8))
        points = rng.uniform(30, 80, size=(K, 2))
        visible = np.ones(K, bool)
        points[3], visible[3] = np.nan, False
        out.append(Sample(image=path, key=path.name, points=points, visible=visible, box=Box(55.0, 45.0, 70.0)))
    return out


def test_items_have_the_documented_shapes_and_dtypes(samples: list[Sample]) -> None:
    item = LandmarkDataset(samples, S, train=True, flip_perm=PERM)[2]
    expected = {
        "image": ((3, S, S), torch.float32),
        "target": ((K, S // 4, S // 4), torch.float32),
        "mask": ((K,), torch.float32),
        "affine": ((2, 3), torch.float64),
        "points": ((K, 2), torch.float64),
        "index": ((), torch.int64),
    }
    assert {k: (tuple(v.shape), v.dtype) for k, v in item.items()} == expected
    assert int(item["index"]) == 2
    assert torch.isnan(item["points"][3]).all()
    assert torch.equal(item["points"][0], torch.from_numpy(samples[2].points[0]))
    # Joint 3 is unannotated; after a flip it sits at PERM[3] = 2. Either way exactly one mask entry is 0 for it.
    assert float(item["mask"].sum()) <= K - 1


def test_evaluation_items_are_the_plain_crop(samples: list[Sample]) -> None:
    ds = LandmarkDataset(samples, S, train=False)
    item = ds[0]
    np.testing.assert_array_equal(item["affine"].numpy(), crop_affine(samples[0].box, S))
    ds.set_epoch(5)
    assert torch.equal(ds[0]["image"], item["image"])
    assert item["mask"][3] == 0 and item["target"][3].abs().sum() == 0


def test_items_depend_only_on_seed_epoch_and_index(samples: list[Sample]) -> None:
    a = LandmarkDataset(samples, S, train=True, flip_perm=PERM, seed=11)
    b = LandmarkDataset(samples, S, train=True, flip_perm=PERM, seed=11)
    b.set_epoch(1)
    b_items = {i: b[i] for i in (3, 1)}  # a different instance, access order and epoch history
    a.set_epoch(1)
    for i in (1, 3):
        for key, value in a[i].items():
            torch.testing.assert_close(value, b_items[i][key], rtol=0, atol=0, equal_nan=True, msg=key)
    a.set_epoch(2)
    assert not torch.equal(a[1]["affine"], b_items[1]["affine"])
    other = LandmarkDataset(samples, S, train=True, flip_perm=PERM, seed=12)
    other.set_epoch(1)
    assert not torch.equal(other[1]["affine"], b_items[1]["affine"])


def test_batches_are_the_same_with_and_without_workers(samples: list[Sample]) -> None:
    ds = LandmarkDataset(samples, S, train=True, flip_perm=PERM, seed=3)
    ds.set_epoch(4)
    batches = [next(iter(DataLoader(ds, batch_size=4, num_workers=w))) for w in (0, 2)]
    assert batches[0]["image"].shape == (4, 3, S, S)
    for key in batches[0]:
        torch.testing.assert_close(batches[0][key], batches[1][key], rtol=0, atol=0, equal_nan=True, msg=key)


def test_bad_arguments(samples: list[Sample]) -> None:
    with pytest.raises(ValueError, match="flip_perm"):
        LandmarkDataset(samples, S, train=True)
    with pytest.raises(ValueError, match="multiple of 4"):
        LandmarkDataset(samples, 66, train=False)
    LandmarkDataset(samples, S, train=True, augment=AugmentConfig(flip_prob=0.0))  # no flips: no permutation needed


def test_targets_decode_back_to_the_annotations_on_real_mpii_images() -> None:
    ann = FIXTURES / "mpii" / "test_mpii.json"
    if not ann.is_file():
        pytest.skip(f"fixtures not found at {FIXTURES}")
    samples = []
    for i, rec in enumerate(json.loads(ann.read_text())):
        joints = np.asarray(rec["joints"], dtype=np.float64) - 1.0  # MPII JSON is 1-based
        visible = np.asarray(rec["joints_vis"], dtype=bool)
        joints[~visible] = np.nan
        center = (rec["center"][0] - 1.0, rec["center"][1] - 1.0)
        samples.append(Sample(image=FIXTURES / "mpii" / rec["image"], key=f"{rec['image']}#{i}", points=joints,
                              visible=visible, box=box_from_center_scale(center, rec["scale"])))
    ds = LandmarkDataset(samples, 128, train=True, flip_perm=PERM, augment=AugmentConfig(rotation_prob=1.0))
    batch = next(iter(DataLoader(ds, batch_size=len(samples))))
    coords, _ = decode(batch["target"].numpy())
    back = heatmap_to_image(coords, batch["affine"].numpy(), HEATMAP_STRIDE)
    # Augmented targets (rotation, scale, flip) → DARK → original image: the annotations within 0.05 heatmap px,
    # i.e. 0.05 × stride / (crop scale) original pixels, the crop scale being sqrt(|det|) of the affine.
    mask = batch["mask"].numpy().astype(bool)
    dets = np.linalg.det(batch["affine"].numpy()[:, :, :2])  # negative when the crop is mirrored
    assert (dets < 0).any() and (dets > 0).any()
    for n, sample in enumerate(samples):
        gt = sample.points[PERM] if dets[n] < 0 else sample.points
        tol = 0.05 * HEATMAP_STRIDE / np.sqrt(abs(dets[n]))
        np.testing.assert_allclose(back[n][mask[n]], gt[mask[n]], atol=tol)
    assert mask.sum() > 0.8 * sum(s.visible.sum() for s in samples)

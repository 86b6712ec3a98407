"""The PyTorch view of a landmark dataset: crop, augment, normalise and build heatmap targets per sample.

Every random choice of an item comes from a generator seeded by (seed, epoch, index), never from global or
per-worker state, so an epoch's batches are identical whatever the number of DataLoader workers or their order,
and a resumed run sees exactly the data the interrupted one would have (call `set_epoch` before each epoch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cunet.data.augment import IDENTITY, AugmentConfig, augment_sample, sample_augment
from cunet.data.dataset import Sample, read_image
from cunet.data.heatmaps import default_sigma, gaussian_targets, input_to_heatmap
from cunet.data.preprocess import to_input

__all__ = ["HEATMAP_STRIDE", "LandmarkDataset"]

#: CU-Net's heatmaps are 4× smaller than its input (stem conv/2 + maxpool/2).
HEATMAP_STRIDE = 4


class LandmarkDataset(Dataset):
    """Samples → network inputs, heatmap targets and the affines that map predictions back.

    Each item is a dict of tensors:
        "image": [3, S, S] float32, normalised RGB (`preprocess.to_input`).
        "target": [K, S/4, S/4] float32 Gaussian heatmaps.
        "mask": [K] float32, 1 where the landmark is annotated and inside the heatmap.
        "affine": [2, 3] float64, original image → input crop (augmentation and flip included).
        "points": [K, 2] float64 original-image points, NaN where not annotated (for evaluation).
        "index": int64 scalar, the sample's index in `samples`.
    The default DataLoader collate stacks them.

    Args:
        samples: the annotated samples (`cunet.data.dataset.load_samples(...).samples`).
        input_size: S, the network input side (a multiple of 4).
        train: augment when True; the plain crop when False.
        augment: the augmentation distributions when training (None: the original CU-Net defaults).
        sigma: target Gaussian sigma in heatmap pixels (None: 2.0 at 64², proportional to the heatmap size).
        flip_perm: [K] left/right permutation (`LandmarkSpec.flip_permutation`); needed when flips can happen.
        seed: base seed of the per-item generators.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        input_size: int,
        train: bool,
        augment: AugmentConfig | None = None,
        sigma: float | None = None,
        flip_perm: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        if input_size <= 0 or input_size % HEATMAP_STRIDE:
            raise ValueError(f"input_size must be a positive multiple of {HEATMAP_STRIDE}, got {input_size}")
        self.samples = list(samples)
        self.input_size = int(input_size)
        self.train = bool(train)
        self.augment = (augment if augment is not None else AugmentConfig()) if train else None
        self.heatmap_size = self.input_size // HEATMAP_STRIDE
        self.sigma = default_sigma(self.heatmap_size) if sigma is None else float(sigma)
        self.flip_perm = None if flip_perm is None else np.asarray(flip_perm, dtype=np.int64)
        if self.augment is not None and self.augment.flip_prob > 0 and self.flip_perm is None:
            raise ValueError("training with flips needs flip_perm (the landmark spec's flip_permutation)")
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations `__getitem__` draws (call before each epoch's DataLoader pass)."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The generator of item `index` in the current epoch, a pure function of (seed, epoch, index)."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index]
        image = read_image(sample.image)
        aug = sample_augment(self.rng(index), self.augment) if self.augment is not None else IDENTITY
        crop, points, visible, affine = augment_sample(
            image, sample.points, sample.visible, sample.box, aug, self.input_size, self.flip_perm
        )
        target, mask = gaussian_targets(
            input_to_heatmap(points, HEATMAP_STRIDE), visible, self.heatmap_size, self.sigma
        )
        return {
            "image": torch.from_numpy(to_input(crop[None])[0]),
            "target": torch.from_numpy(target),
            "mask": torch.from_numpy(mask),
            "affine": torch.from_numpy(affine),
            "points": torch.from_numpy(np.asarray(sample.points, dtype=np.float64).copy()),
            "index": torch.tensor(index, dtype=torch.int64),
        }

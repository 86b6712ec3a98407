"""`--decode original` against the original code's decoding worked out by hand, and cunet's default decoder on the
same hand-built maps: 64² heatmaps of a 256² crop of the box centred at (100.3, 80.7) (0-based) with side 220."""

from __future__ import annotations

import numpy as np

from cunet.data.decode import decode, heatmap_to_image, original_to_image
from cunet.data.preprocess import crop_affines

NOMINAL = crop_affines(np.array([[100.3, 80.7]]), [220.0], 256)  # [1, 2, 3]


def _gaussian(x: float, y: float, sigma: float = 1.5) -> np.ndarray:
    yy, xx = np.mgrid[0:64, 0:64]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))


def test_original_decoder_by_hand() -> None:
    """Map 0 peaks at (20, 30) with the right and the upper neighbour larger; map 1 is never positive.

    The original (1-based): argmax (21, 31); quarter (21.25, 30.75); + 0.5 → (21.75, 31.25); minus 1 and the inverse
    crop transform with its centre (101.3, 81.7) and side 220 (3.4375 px per heatmap px):
    x = (20.75 - 32) * 3.4375 + 101.3 = 62.628125, y = (30.25 - 32) * 3.4375 + 81.7 = 75.684375; truncated and
    + 1: (63, 76), 0-based (62, 75). Map 1: its maximum is not positive, so the original takes (0, 0):
    x = (-0.5 - 32) * 3.4375 + 101.3 = -10.41875 → -10 → -9 (1-based) → -10; y = -30.01875 → -30 → -29 → -30.
    """
    hm = np.zeros((1, 2, 64, 64))
    hm[0, 0, 30, 20], hm[0, 0, 30, 21], hm[0, 0, 30, 19], hm[0, 0, 29, 20], hm[0, 0, 31, 20] = 1.0, 0.6, 0.2, 0.7, 0.3
    hm[0, 1] = -0.5
    coords, _ = decode(hm, "original")
    np.testing.assert_array_equal(coords[0], [[20.25, 29.75], [-1.0, -1.0]])
    np.testing.assert_array_equal(original_to_image(coords, NOMINAL, 4)[0], [[62.0, 75.0], [-10.0, -30.0]])


def test_default_and_original_decoders_on_a_gaussian() -> None:
    """A Gaussian at (20.3, 29.6): DARK finds it, and cunet maps it to x = (20.3 + 0.5 - 32) * 3.4375 + 100.3 = 61.8,
    y = (29.6 + 0.5 - 32) * 3.4375 + 80.7 = 74.16875. The original's argmax is (20, 30) with the right and upper
    neighbours larger: the map of the test above, so (62, 75)."""
    hm = _gaussian(20.3, 29.6)[None, None]
    coords, _ = decode(hm, "dark", sigma=1.5)
    np.testing.assert_allclose(heatmap_to_image(coords, NOMINAL, 4)[0, 0], [61.8, 74.16875], atol=0.01)
    np.testing.assert_array_equal(original_to_image(decode(hm, "original")[0], NOMINAL, 4)[0, 0], [62.0, 75.0])

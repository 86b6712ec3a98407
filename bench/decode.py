"""Post-processing speed: today's vectorised decoder against the decoder it replaced, on the demo model's shapes.

Usage:
    .venv/bin/python bench/decode.py [--iters 300] [--out bench/results/decode.json]

The timed path is the Predictor's `postprocess`: decode heatmaps [N, K, H, W] → heatmap pixels → inverse crop affine
→ original-image points. Shapes: cunet-tiny (the demo model: 68 landmarks, 128² input, 32² heatmaps) at batch 1 and
8, and cunet-face-8's 64² heatmaps at batch 1. The maps are the training targets (Gaussians at random sub-pixel
points, σ as in training) plus N(0, 0.02) noise, float32 as every runtime returns them; the time does not depend on
the content beyond which DARK branch each point takes. Old and new calls alternate call by call (the machine is
shared), and every row checks that both give the same landmarks (max |difference| is reported).

The previous decoder (before the vectorised gather) is kept here, and only here, for this comparison: it converted
the whole map stack to float64, smoothed the 3×3 neighbourhood with [3, H] full-height blur matrices rebuilt on
every call, gathered neighbours with fancy indexing and inverted the affine with LAPACK.
Writes the JSON (and prints it) and a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from cunet.data.decode import decode, heatmap_to_image
from cunet.data.heatmaps import default_sigma, gaussian_targets, heatmap_to_input
from cunet.data.preprocess import Box, apply_affine, crop_affine

# ------------------------------------------------------------------------------------- the previous decoder


def _old_decode(heatmaps: np.ndarray, method: str, sigma: float | None) -> tuple[np.ndarray, np.ndarray]:
    hm = np.asarray(heatmaps)
    n, k, h, w = hm.shape
    hm = hm.astype(np.float64, copy=False)
    flat_idx = np.argmax(np.where(np.isfinite(hm), hm, -np.inf).reshape(n, k, h * w), axis=-1)
    y, x = np.divmod(flat_idx, w)
    scores = np.take_along_axis(hm.reshape(n, k, h * w), flat_idx[..., None], axis=-1)[..., 0]
    coords = np.stack([x, y], axis=-1).astype(np.float64)
    if method == "quarter":
        coords += _old_quarter(hm, x, y)
    elif method == "dark":
        coords += _old_dark(hm, x, y, default_sigma(w) if sigma is None else float(sigma))
    bad = ~np.isfinite(hm).all(axis=(2, 3))
    coords[bad] = np.nan
    scores = np.where(bad, np.nan, scores)
    return coords, scores


def _old_quarter(hm, x, y):
    h, w = hm.shape[-2:]
    left, right = _old_at(hm, y, np.clip(x - 1, 0, w - 1)), _old_at(hm, y, np.clip(x + 1, 0, w - 1))
    up, down = _old_at(hm, np.clip(y - 1, 0, h - 1), x), _old_at(hm, np.clip(y + 1, 0, h - 1), x)
    dx = np.where((x > 0) & (x < w - 1), 0.25 * np.sign(right - left), 0.0)
    dy = np.where((y > 0) & (y < h - 1), 0.25 * np.sign(down - up), 0.0)
    return np.stack([dx, dy], axis=-1)


def _old_dark(hm, x, y, sigma):
    h, w = hm.shape[-2:]
    radius = max(1, math.ceil(3.0 * sigma))
    steps = np.arange(-1, 2)
    ys, xs = np.clip(y[..., None] + steps, 0, h - 1), np.clip(x[..., None] + steps, 0, w - 1)
    clear_y = (y - 1 - radius >= 0) & (y + 1 + radius <= h - 1)
    clear_x = (x - 1 - radius >= 0) & (x + 1 + radius <= w - 1)
    rows = np.where(clear_y[..., None, None], _old_blur_matrix(h, sigma)[ys], np.eye(h)[ys])
    cols = np.where(clear_x[..., None, None], _old_blur_matrix(w, sigma)[xs], np.eye(w)[xs])
    patch = (rows @ np.nan_to_num(hm)) @ np.swapaxes(cols, -1, -2)
    lg = np.log(np.maximum(patch, 1e-10))
    gxv = 0.5 * (lg[..., 1, 2] - lg[..., 1, 0])
    gyv = 0.5 * (lg[..., 2, 1] - lg[..., 0, 1])
    hxx = lg[..., 1, 2] - 2.0 * lg[..., 1, 1] + lg[..., 1, 0]
    hyy = lg[..., 2, 1] - 2.0 * lg[..., 1, 1] + lg[..., 0, 1]
    hxy = 0.25 * (lg[..., 2, 2] - lg[..., 2, 0] - lg[..., 0, 2] + lg[..., 0, 0])
    det = hxx * hyy - hxy**2
    safe_det = np.where(det > 1e-8, det, 1.0)
    dx = -(hyy * gxv - hxy * gyv) / safe_det
    dy = -(hxx * gyv - hxy * gxv) / safe_det
    inside_x, inside_y = (x > 0) & (x < w - 1), (y > 0) & (y < h - 1)
    ok = inside_x & inside_y & (hxx < 0) & (det > 1e-8) & (np.abs(dx) <= 1.0) & (np.abs(dy) <= 1.0)
    quarter = _old_quarter(hm, x, y)
    dx = np.where(ok, dx, _old_newton_1d(gxv, hxx, inside_x, quarter[..., 0]))
    dy = np.where(ok, dy, _old_newton_1d(gyv, hyy, inside_y, quarter[..., 1]))
    return np.stack([dx, dy], axis=-1)


def _old_newton_1d(grad, curv, inside, fallback):
    usable = inside & (curv < 0)
    step = -grad / np.where(usable, curv, -1.0)
    return np.where(usable & (np.abs(step) <= 1.0), step, fallback)


def _old_blur_matrix(n, sigma):
    radius = max(1, math.ceil(3.0 * sigma))
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-(taps**2) / (2.0 * sigma**2))
    kernel /= kernel.sum()
    src = np.arange(n)[:, None] + taps[None, :]
    period = 2 * (n - 1)
    src = np.abs(src) % period
    src = np.where(src > n - 1, period - src, src)
    mat = np.zeros((n, n))
    np.add.at(mat, (np.repeat(np.arange(n), len(taps)), src.ravel()), np.tile(kernel, n))
    return mat


def _old_at(hm, y, x):
    n, k = hm.shape[:2]
    return hm[np.arange(n)[:, None], np.arange(k)[None, :], y, x]


def _old_invert_affine(m):
    full = np.zeros(m.shape[:-2] + (3, 3))
    full[..., :2, :] = m
    full[..., 2, 2] = 1.0
    return np.linalg.inv(full)[..., :2, :]


def old_postprocess(hm: np.ndarray, affines: np.ndarray, method: str, sigma: float, stride: int) -> np.ndarray:
    coords, _ = _old_decode(hm, method, sigma)
    return apply_affine(heatmap_to_input(coords, stride), _old_invert_affine(affines))


def new_postprocess(hm: np.ndarray, affines: np.ndarray, method: str, sigma: float, stride: int) -> np.ndarray:
    coords, _ = decode(hm, method, sigma)
    return heatmap_to_image(coords, affines, stride)


# ------------------------------------------------------------------------------------------------- the bench


def _maps(n: int, k: int, size: int, rng: np.random.Generator) -> np.ndarray:
    pts = rng.uniform(1.0, size - 2.0, size=(n, k, 2))
    hm = np.stack([gaussian_targets(p, np.ones(k, bool), size)[0] for p in pts])
    return (hm + rng.normal(0.0, 0.02, hm.shape)).astype(np.float32)


CASES = [  # (name, batch, landmarks, heatmap side, method)
    ("cunet-tiny b1 dark", 1, 68, 32, "dark"),
    ("cunet-tiny b1 quarter", 1, 68, 32, "quarter"),
    ("cunet-tiny b8 dark", 8, 68, 32, "dark"),
    ("cunet-face-8 b1 dark", 1, 68, 64, "dark"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "decode.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for name, n, k, size, method in CASES:
        hm = _maps(n, k, size, rng)
        affines = np.stack([crop_affine(Box(320.0, 240.0, 480.0), size * 4)] * n)
        sigma = default_sigma(size)
        fns = {"old": old_postprocess, "new": new_postprocess}
        out = {key: f(hm, affines, method, sigma, 4) for key, f in fns.items()}
        times: dict[str, list[int]] = {key: [] for key in fns}
        for _ in range(args.iters):
            for key, f in fns.items():
                t = time.perf_counter_ns()
                f(hm, affines, method, sigma, 4)
                times[key].append(time.perf_counter_ns() - t)
        old_ms, new_ms = (float(np.median(times[key])) / 1e6 for key in ("old", "new"))
        rows.append({"case": name, "batch": n, "landmarks": k, "heatmap": size, "method": method,
                     "old_p50_ms": old_ms, "new_p50_ms": new_ms, "speedup": old_ms / new_ms,
                     "max_abs_diff_px": float(np.max(np.abs(out["old"] - out["new"])))})
    report = {"iters": args.iters, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    print(f"{'case':24} {'old ms':>8} {'new ms':>8} {'speedup':>8} {'max |diff| px':>14}", file=sys.stderr)
    for r in rows:
        print(f"{r['case']:24} {r['old_p50_ms']:8.3f} {r['new_p50_ms']:8.3f} {r['speedup']:7.2f}× "
              f"{r['max_abs_diff_px']:14.3g}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

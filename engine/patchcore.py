"""Memory-bank patch scoring (PatchCore-style) in plain numpy.

A bank holds patch features of normal images; a patch's anomaly is its distance to the nearest
bank patch, found exactly by one matrix multiplication per chunk of patches.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

BANK_SIZE = 2048  # patches kept in a bank; inference cost grows linearly with it (1024-4096 score alike)
# Patches that enter the greedy selection at most. Greedy k-center costs pool x bank, so the pool
# is capped too (per image, see `build_bank`) to keep fitting linear in the number of images.
POOL_SIZE = 65536
PROJECTION_DIM = 32  # the greedy selection compares random projections, not full features
_CHUNK = 2048  # query patches per matrix multiplication: bounds the (chunk, bank) distance matrix


def greedy_coreset(points: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `size` points chosen by greedy k-center (farthest point first).

    points: (N, D) float32. Keeps the rare patches that random sampling would drop, which are the
    ones that would otherwise become false alarms.
    """
    n = points.shape[0]
    if size >= n:
        return np.arange(n)
    squared = np.einsum("nd,nd->n", points, points)
    chosen = np.empty(size, dtype=np.int64)
    chosen[0] = rng.integers(n)
    nearest = np.full(n, np.inf, dtype=np.float32)  # squared distance to the closest chosen point
    for i in range(1, size + 1):
        c = chosen[i - 1]
        distance = squared - 2.0 * (points @ points[c]) + squared[c]
        np.minimum(nearest, distance, out=nearest)
        if i < size:
            chosen[i] = int(np.argmax(nearest))
    return chosen


def build_bank(features: Sequence[np.ndarray], *, seed: int, size: int = BANK_SIZE) -> np.ndarray:
    """Memory bank from the patch features of normal images.

    features: one (h, w, C) float32 array per image. Returns (M, C) float32, M <= size.
    """
    if not features:
        raise ValueError("a bank needs at least one image")
    rng = np.random.default_rng(seed)
    dim = features[0].shape[-1]
    projection = rng.standard_normal((dim, PROJECTION_DIM)).astype(np.float32) / math.sqrt(PROJECTION_DIM)
    per_image = max(1, POOL_SIZE // len(features))
    pool, projected = [], []
    for f in features:
        patches = f.reshape(-1, dim)
        p = patches @ projection
        if patches.shape[0] > per_image:
            keep = greedy_coreset(p, per_image, rng)
            patches, p = patches[keep], p[keep]
        pool.append(patches)
        projected.append(p)
    all_patches = np.concatenate(pool)
    keep = greedy_coreset(np.concatenate(projected), size, rng)
    return np.ascontiguousarray(all_patches[keep], dtype=np.float32)


def nearest_distance(patches: np.ndarray, bank: np.ndarray, bank_squared: np.ndarray) -> np.ndarray:
    """Euclidean distance of each patch to its nearest bank patch.

    patches: (N, C) float32; bank: (M, C) float32; bank_squared: (M,) its squared norms.
    Returns (N,) float32.
    """
    out = np.empty(patches.shape[0], dtype=np.float32)
    for start in range(0, patches.shape[0], _CHUNK):
        q = patches[start : start + _CHUNK]
        # |q - b|^2 = |q|^2 - 2 q.b + |b|^2; the min over b does not depend on |q|^2.
        d = bank_squared[None, :] - 2.0 * (q @ bank.T)  # (chunk, M)
        out[start : start + _CHUNK] = d.min(axis=1) + np.einsum("nc,nc->n", q, q)
    # Rounding can leave tiny negatives where a patch equals a bank patch.
    return np.sqrt(np.maximum(out, 0.0, out=out), out=out)


def gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def smooth(grid: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a (h, w) float32 map with edge padding."""
    if sigma <= 0:
        return grid
    k = gaussian_kernel(sigma)
    r = k.size // 2
    padded = np.pad(grid, r, mode="edge")
    h, w = grid.shape
    # Rows then columns, each as a sum of shifted copies: the kernel has a handful of taps.
    rows = sum(k[i] * padded[:, i : i + w] for i in range(k.size))  # (h + 2r, w)
    return sum(k[i] * rows[i : i + h, :] for i in range(k.size)).astype(np.float32)  # (h, w)


def distance_map(features: np.ndarray, bank: np.ndarray, bank_squared: np.ndarray, sigma: float) -> np.ndarray:
    """(h, w, C) patch features -> (h, w) float32 smoothed distance to the nearest bank patch."""
    h, w, c = features.shape
    return smooth(nearest_distance(features.reshape(-1, c), bank, bank_squared).reshape(h, w), sigma)

"""Memory-bank patch scoring (PatchCore-style) in plain numpy.

A bank holds patch features of normal images; a patch's anomaly is its distance to the nearest
bank patch, found exactly by one matrix multiplication per chunk of patches. A second, small bank
holds the most anomalous patches of the training anomalies: a patch that resembles a known defect
more than any normal patch has its distance raised, by at most DEFECT_WEIGHT, so that defects like
the known ones stand out more while defects never seen keep their unsupervised score.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Patches kept in a bank; inference cost grows linearly with it. 4096 rather than 2048: LFV-30
# aliens AUROC 0.9956 -> 0.9964 (mean of 3 splits x 3 coreset seeds), others unchanged, ~4 ms more
# per 256x256 image.
BANK_SIZE = 4096
# Patches that enter the greedy selection at most. Greedy k-center costs pool x bank, so the pool
# is capped too (per image, see `build_bank`) to keep fitting linear in the number of images.
POOL_SIZE = 65536
PROJECTION_DIM = 32  # the greedy selection compares random projections, not full features
_CHUNK = 2048  # query patches per matrix multiplication: bounds the (chunk, bank) distance matrix
# A search on several threads splits each chunk's rows at multiples of this, from the chunk's
# start: OpenBLAS's sgemm tiles a product's rows in blocks, and a cut inside a block rounds some
# rows' last bit differently from the one product. Measured on random (1024, 153) @ (153, 4296):
# the AVX2 kernel ("Haswell") keeps every row at cuts that are multiples of 48, the AVX-512 one
# ("SkylakeX") at every cut that leaves at least 2 rows on each side (one row is a matrix-vector
# product); 96 suits both (docs/benchmarks.md).
SPLIT_ROWS = 96

_helpers: ThreadPoolExecutor | None = None
_helpers_lock = threading.Lock()


def _helper_pool() -> ThreadPoolExecutor:
    global _helpers
    with _helpers_lock:
        if _helpers is None:
            _helpers = ThreadPoolExecutor(thread_name_prefix="kenpin-search")
        return _helpers


def row_cuts(n: int, parts: int) -> list[int]:
    """Row offsets 0 < c_1 < ... < n splitting n rows into at most `parts` near-equal blocks, each
    cut at a multiple of SPLIT_ROWS; [0, n] when the rows are too few to split."""
    step = max(1, round(n / parts / SPLIT_ROWS)) * SPLIT_ROWS
    cuts = list(range(step, n - SPLIT_ROWS + 1, step))[: parts - 1]
    return [0, *cuts, n]


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


# A known-defect match raises a patch's distance by up to this fraction. LFV-30 image AUROC for
# 0 / 0.25 / 0.5 / 1 (3 splits x 3 coreset seeds): solar cells 0.937 / 0.941 / 0.943 / 0.943,
# aliens 0.9964 / 0.9961 / 0.9958 / 0.9949, cookies 1.000 throughout.
DEFECT_WEIGHT = 0.5
DEFECT_SHARE = 50  # each anomalous image gives its 1/DEFECT_SHARE patches farthest from normal
DEFECT_MIN_PATCHES = 4
DEFECT_BANK_SIZE = 1024  # known-defect patches kept at most, so the bank stays cheap to search


class NearestNeighbours:
    """Exact distances from query patches to their nearest patch in each of one or more banks.

    |q - b|^2 = |q|^2 + |b|^2 - 2 q.b. The banks lie side by side in one (C + 1, M) matrix whose
    columns hold -2 b above |b|^2, and each chunk of query patches gets a column of ones, so that
    one (chunk, C + 1) @ (C + 1, M) product gives |b|^2 - 2 q.b for every bank at once, with no
    pass to add |b|^2 and no second product for a second bank. Measured on the cookie and
    ball_screw models' features (one thread, docs/benchmarks.md): 10.1 / 10.6 ms against 11.2 /
    12.7 ms for a product per bank with |b|^2 added afterwards, bit-identical distances.
    """

    def __init__(self, *banks: np.ndarray):
        self.banks = [np.ascontiguousarray(b, dtype=np.float32) for b in banks]  # each (M_i, C)
        self.bank = self.banks[0]
        ends = np.cumsum([b.shape[0] for b in self.banks])
        self._parts = list(zip([0, *ends[:-1].tolist()], ends.tolist()))  # each bank's columns
        stacked = np.concatenate(self.banks)  # (M, C)
        self.augmented = np.empty((stacked.shape[1] + 1, stacked.shape[0]), dtype=np.float32)  # (C + 1, M)
        self.augmented[:-1] = -2.0 * stacked.T
        self.augmented[-1] = np.einsum("mc,mc->m", stacked, stacked)

    def distances(self, patches: np.ndarray, *, threads: int = 1) -> list[np.ndarray]:
        """(N, C) float32 patches -> one (N,) float32 Euclidean distance to the nearest patch per bank.

        `threads` > 1 splits each chunk's rows between this thread and helper threads (numpy
        releases the GIL in the product and the minima), at multiples of SPLIT_ROWS, so that the
        distances are the same to the last bit as on one thread."""
        n = patches.shape[0]
        out = [np.empty(n, dtype=np.float32) for _ in self.banks]
        for start in range(0, n, _CHUNK):
            cuts = [start + c for c in row_cuts(min(_CHUNK, n - start), threads)]
            blocks = list(zip(cuts[:-1], cuts[1:]))
            helpers = [_helper_pool().submit(self._rows, patches, first, end, out) for first, end in blocks[:-1]]
            self._rows(patches, *blocks[-1], out)
            for helper in helpers:
                helper.result()
        # Rounding can leave tiny negatives where a patch equals a bank patch.
        return [np.sqrt(np.maximum(o, 0.0, out=o), out=o) for o in out]

    def _rows(self, patches: np.ndarray, first: int, end: int, out: list[np.ndarray]) -> None:
        """Squared nearest distances of patches[first:end] into each of `out`'s rows first:end."""
        q = patches[first:end]
        c = q.shape[1]
        with_one = np.empty((q.shape[0], c + 1), dtype=np.float32)  # (rows, C + 1)
        with_one[:, :c] = q
        with_one[:, c] = 1.0
        d = with_one @ self.augmented  # (rows, M)
        # The min over bank patches does not depend on |q|^2, so it is added afterwards.
        squared = np.einsum("nc,nc->n", q, q)
        for (bank_first, bank_end), o in zip(self._parts, out):
            o[first:end] = d[:, bank_first:bank_end].min(axis=1) + squared

    def distance(self, patches: np.ndarray) -> np.ndarray:
        """(N, C) float32 patches -> (N,) float32 Euclidean distance to the nearest patch of the first bank."""
        return self.distances(patches)[0]


def farthest_patches(features: np.ndarray, normal: NearestNeighbours, keep: int) -> np.ndarray:
    """(min(keep, N), C) float32: the patches of (..., C) `features` farthest from the normal bank."""
    patches = features.reshape(-1, features.shape[-1])
    return patches[np.argsort(normal.distance(patches))[-keep:]]


def defect_patch_count(features: np.ndarray) -> int:
    """Patches an anomalous image with (h, w, C) features gives to the defect bank."""
    return max(DEFECT_MIN_PATCHES, features.shape[0] * features.shape[1] // DEFECT_SHARE)


def build_defect_bank(picked: Sequence[np.ndarray], *, seed: int) -> np.ndarray | None:
    """Known-defect bank from each anomalous image's (k, C) picked patches; None without any.

    Many anomalous images would make it larger than the normal bank and slow every prediction,
    so a greedy coreset thins it to DEFECT_BANK_SIZE.
    """
    if not picked:
        return None
    return build_bank(picked, seed=seed, size=DEFECT_BANK_SIZE)


class PatchScorer:
    """Anomaly maps from a normal bank and an optional known-defect bank."""

    def __init__(
        self, normal: NearestNeighbours, defects: np.ndarray | None = None, defect_weight: float = DEFECT_WEIGHT
    ):
        self.normal = normal
        self.defects = np.ascontiguousarray(defects, dtype=np.float32) if defects is not None and len(defects) else None
        # Both banks in one search (see NearestNeighbours); the normal bank's matrix is held twice,
        # 2.5 MB for 4,096 patches.
        self.search = normal if self.defects is None else NearestNeighbours(normal.bank, self.defects)
        self.defect_weight = defect_weight

    @property
    def defect_bank(self) -> np.ndarray:
        """(K, C) float32 known-defect patch features; K = 0 without any."""
        if self.defects is None:
            return np.empty((0, self.normal.bank.shape[1]), dtype=np.float32)
        return self.defects

    def distance_map(self, features: np.ndarray, sigma: float, *, threads: int = 1) -> np.ndarray:
        """(h, w, C) patch features -> (h, w) float32 smoothed anomaly distance (the search on
        `threads` threads, NearestNeighbours.distances)."""
        h, w, c = features.shape
        patches = features.reshape(-1, c)
        distances = self.search.distances(patches, threads=threads)
        distance = distances[0]
        if self.defects is not None:
            # Ratio of the distance to the nearest known defect to the distance to normal: near 0
            # where a patch is a known defect, large where it is closer to normal than to any.
            ratio = distances[1] / np.maximum(distance, 1e-6)
            distance *= 1.0 + self.defect_weight * np.exp(-np.square(ratio))
        return smooth(distance.reshape(h, w), sigma)


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

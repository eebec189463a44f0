"""A small per-cell classifier on the frozen backbone features: the part of a model that learns
from what people label.

Each feature cell (8x8 px of model input) becomes one input row: its backbone features and its
distance to the normal bank (the unsupervised evidence, which keeps defects of kinds never
labelled visible). The head is a one-hidden-layer perceptron with a softmax over background and
the K anomaly classes, trained in numpy with Adam on soft targets (the share of each cell a
mask covers) and class-balanced weights. A few tens of thousands of cells train in a second or
two on one core. A stride-4 head (engine.model.head_inputs with the stride-4 features) maps
cells of 4x4 px of input, each reading its own stride-4 features and the stride-8 ones
interpolated to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Capacity and training: mini-batches of BATCH rows (drawn by class-balanced weight), STEPS Adam
# steps, HIDDEN units on the inputs' COMPONENTS leading principal components. Against 200 full-batch
# steps with 32 / 32 (LFV-30 with masks, seeds 0-2, stride-8 head): ball_screw mask IoU 0.187 ->
# 0.240, image AUROC 0.897 -> 0.930; cookies IoU 0.550 -> 0.554; with image labels alone every set
# within its seed spread (docs/benchmarks.md, Engine II). Same CPU time per fit.
HIDDEN = 64
COMPONENTS = 64
STEPS = 800
BATCH = 512
LEARNING_RATE = 0.01
WEIGHT_DECAY = 1e-3  # L2 on the weights (not biases), per unit of mean loss
MAX_ROWS = 8_000  # training rows at most: background rows are subsampled beyond this


@dataclass
class PixelHead:
    """(N, D) cell inputs -> (N, K + 1) class probabilities; class 0 is background."""

    mean: np.ndarray  # (D,) float32 input standardisation
    scale: np.ndarray  # (D,) float32
    w1: np.ndarray  # (D, H) float32
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (H, K + 1)
    b2: np.ndarray  # (K + 1,)

    @property
    def n_classes(self) -> int:
        """K + 1, background included."""
        return int(self.w2.shape[1])

    def logits(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale
        hidden = np.maximum(z @ self.w1 + self.b1, 0.0)
        return hidden @ self.w2 + self.b2  # (N, K + 1)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x))

    def fine_logits(self, fine: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        """logits(engine.model.head_inputs(...)) of a stride-4 head, from (2h, 2w, C4) fine and
        (h, w, C + 1) coarse inputs, at a quarter of the arithmetic: standardising and the first
        layer are linear, and so is the bilinear doubling, so the coarse inputs go through the first
        layer on their own grid and only the (h, w, H) result is doubled. (2h * 2w, K + 1)."""
        c4 = fine.shape[-1]
        h, w, c = coarse.shape
        zf = (fine.reshape(-1, c4) - self.mean[:c4]) / self.scale[:c4]
        zc = (coarse.reshape(-1, c) - self.mean[c4:]) / self.scale[c4:]
        from_coarse = double((zc @ self.w1[c4:]).reshape(h, w, -1)).reshape(4 * h * w, -1)
        hidden = np.maximum(zf @ self.w1[:c4] + from_coarse + self.b1, 0.0)
        return hidden @ self.w2 + self.b2

    def to_tensors(self, prefix: str = "head.") -> dict[str, np.ndarray]:
        names = ("mean", "scale", "w1", "b1", "w2", "b2")
        return {prefix + n: np.ascontiguousarray(getattr(self, n), dtype=np.float32) for n in names}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], prefix: str = "head.") -> PixelHead | None:
        if prefix + "w1" not in tensors:
            return None
        return cls(**{n: tensors[prefix + n] for n in ("mean", "scale", "w1", "b1", "w2", "b2")})


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def fit_head(
    x: np.ndarray,
    targets: np.ndarray,
    *,
    seed: int,
    hidden: int = HIDDEN,
    components: int = COMPONENTS,
    steps: int = STEPS,
    learning_rate: float = LEARNING_RATE,
    weight_decay: float = WEIGHT_DECAY,
    max_rows: int = MAX_ROWS,
    batch: int | None = BATCH,
) -> PixelHead:
    """Fit a head on (N, D) float32 inputs and (N, K + 1) soft targets (rows sum to 1).

    Background-only rows are subsampled to keep at most `max_rows`; each class then gets the
    same total weight, so that a defect covering 0.1 % of the cells still counts as much as the
    background. The perceptron is trained on the standardised inputs' first `components`
    principal components (a tenth of the arithmetic for 153 inputs); the projection is then
    folded into the first layer, so the saved head takes the inputs as they are.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.float32)
    anomalous = targets[:, 0] < 1.0
    background = np.flatnonzero(~anomalous)
    room = max(max_rows - int(anomalous.sum()), max_rows // 4)
    if background.size > room:
        keep = np.sort(np.r_[np.flatnonzero(anomalous), rng.choice(background, room, replace=False)])
        x, targets = x[keep], targets[keep]

    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-3
    z = (x - mean) / scale
    sample = z[rng.choice(z.shape[0], min(z.shape[0], 4096), replace=False)]
    _, _, vt = np.linalg.svd(sample - sample.mean(axis=0), full_matrices=False)
    projection = np.ascontiguousarray(vt[:components].T)  # (D, r)
    z = z @ projection
    n, d = z.shape
    k = targets.shape[1]
    # Class-balanced weights: each class present gets equal total weight; rows weigh by their
    # target mass in each class.
    mass = targets.sum(axis=0)  # (K + 1,)
    class_weight = np.where(mass > 0, n / (np.count_nonzero(mass) * np.maximum(mass, 1e-9)), 0.0)
    row_weight = (targets * class_weight).sum(axis=1).astype(np.float32)
    row_weight /= row_weight.sum()

    params = {
        "w1": rng.standard_normal((d, hidden)).astype(np.float32) * math.sqrt(2.0 / d),
        "b1": np.zeros(hidden, np.float32),
        "w2": rng.standard_normal((hidden, k)).astype(np.float32) * math.sqrt(1.0 / hidden),
        "b2": np.zeros(k, np.float32),
    }
    adam = {name: (np.zeros_like(p), np.zeros_like(p)) for name, p in params.items()}
    beta1, beta2 = 0.9, 0.999
    for step in range(1, steps + 1):
        if batch is not None and batch < n:
            rows = rng.choice(n, batch, replace=False, p=row_weight)
            zb, tb, wb = z[rows], targets[rows], np.full(batch, 1.0 / batch, np.float32)
        else:
            zb, tb, wb = z, targets, row_weight
        pre = zb @ params["w1"] + params["b1"]  # (n, H)
        hid = np.maximum(pre, 0.0)
        probs = softmax(hid @ params["w2"] + params["b2"])
        g_logits = (probs - tb) * wb[:, None]  # d(weighted mean CE)/d logits
        grads = {"w2": hid.T @ g_logits, "b2": g_logits.sum(axis=0)}
        g_hid = (g_logits @ params["w2"].T) * (pre > 0)
        grads["w1"] = zb.T @ g_hid
        grads["b1"] = g_hid.sum(axis=0)
        grads["w1"] += weight_decay * params["w1"]
        grads["w2"] += weight_decay * params["w2"]
        for name, p in params.items():
            m, v = adam[name]
            m *= beta1
            m += (1 - beta1) * grads[name]
            v *= beta2
            v += (1 - beta2) * grads[name] ** 2
            m_hat = m / (1 - beta1**step)
            v_hat = v / (1 - beta2**step)
            p -= learning_rate * m_hat / (np.sqrt(v_hat) + 1e-8)
    params["w1"] = projection @ params["w1"]  # (D, H): the head takes the standardised inputs
    return PixelHead(mean=mean, scale=scale, **params)


def cell_targets(mask: np.ndarray | None, grid: tuple[int, int], n_classes: int) -> np.ndarray:
    """(h * w, K + 1) float32 share of each feature cell covered by each class.

    mask: (H, W) uint8 class ids (0 background), or None for a normal image (all background).
    Cells are the image's area divided into an h x w grid (the image may be stretched to the
    model input; the grid follows it).
    """
    h, w = grid
    out = np.zeros((h * w, n_classes), dtype=np.float32)
    if mask is None:
        out[:, 0] = 1.0
        return out
    for k in range(n_classes):
        out[:, k] = area_shares(mask == k, (h, w)).ravel()
    out /= np.maximum(out.sum(axis=1, keepdims=True), 1e-9)
    return out


def area_shares(binary: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(h, w) float32 share of each grid cell that `binary` (H, W) covers (box averaging)."""
    h, w = grid
    height, width = binary.shape
    # Integral image: exact areas for cell borders at fractional pixel positions (rounded).
    integral = np.zeros((height + 1, width + 1), dtype=np.float64)
    integral[1:, 1:] = np.cumsum(np.cumsum(binary, axis=0, dtype=np.float64), axis=1)
    ys = np.round(np.linspace(0, height, h + 1)).astype(int)
    xs = np.round(np.linspace(0, width, w + 1)).astype(int)
    area = integral[ys[1:]][:, xs[1:]] - integral[ys[:-1]][:, xs[1:]] - integral[ys[1:]][:, xs[:-1]]
    area += integral[ys[:-1]][:, xs[:-1]]
    cells = np.outer(np.diff(ys), np.diff(xs))
    return (area / np.maximum(cells, 1)).astype(np.float32)


def double(grid: np.ndarray) -> np.ndarray:
    """(h, w, C) -> (2h, 2w, C) float32, bilinear (pixel centres aligned, edges repeated), as the
    stride-8 cells are interpolated onto the stride-4 ones."""
    grid = np.asarray(grid, dtype=np.float32)
    for axis in (0, 1):
        before = np.concatenate([grid.take([0], axis), grid.take(range(grid.shape[axis] - 1), axis)], axis)
        after = np.concatenate([grid.take(range(1, grid.shape[axis]), axis), grid.take([-1], axis)], axis)
        stacked = np.stack([0.75 * grid + 0.25 * before, 0.75 * grid + 0.25 * after], axis=axis + 1)
        shape = list(grid.shape)
        shape[axis] *= 2
        grid = stacked.reshape(shape)
    return grid

"""Training: fit a model on normal images, calibrate its threshold, evaluate it honestly.

Every reported number comes from images the evaluated model did not see: the test dataset when
there is one, otherwise stratified k-fold cross-validation over the training images. The
threshold is always chosen from out-of-fold scores of the training images (never from the test
images, which would flatter the evaluation), and the final model is fit on all normal training
images.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageDraw

from engine import metrics as m
from engine.backbones import BACKBONES, DEFAULT_BACKBONE
from engine.discriminant import POOLS, Discriminant, pooled
from engine.familiarity import Familiarity, embedding, image_stats
from engine.features import MAX_STRETCH, STRIDE, FeatureExtractor
from engine.head import PixelHead, area_shares, cell_targets, fit_head
from engine.model import (
    DEFAULT_CLASSES,
    DEFAULT_THRESHOLD,
    AnomalyModel,
    Calibration,
    Guide,
    Mix,
    anomaly_logit,
    guided_map,
    head_inputs,
    image_raw,
    upsample,
)
from engine.patchcore import (
    NearestNeighbours,
    PatchScorer,
    build_bank,
    build_defect_bank,
    defect_patch_count,
    farthest_patches,
)

MIN_NORMAL = 2  # one to fit on and one to check against, at the least
# Folds of the cross-validation. Out-of-fold normal scores come from banks built without a tenth
# of the normal images, so they run a little higher than the final model's; 10 folds keep that
# bias smaller than 5 (solar cells: test F1 0.846 -> 0.864) for about a second more of fitting.
MAX_FOLDS = 10
# Where the threshold sits in the gap between the best-F1 cut's highest normal and lowest anomaly
# out-of-fold score, when that cut is used (fewer than 3 images of a class; else the expected-F1
# threshold, see calibrate). LFV-30 F1 at 0.1 / 0.25 / 0.5 / 0.75 of the gap (with the defect
# bank and square inputs): cookies 0.989 / 0.995 / 1.000 / 0.994, aliens 0.971 / 0.971 / 0.974 /
# 0.963, solar cells 0.858 / 0.858 / 0.858 / 0.848. (Before the defect bank, 0.25 had been best.)
GAP_FRACTION = 0.5
# Feature cells (8 px of model input) of smoothing before taking the map's peak. 0.5 vs 1.0 on
# LFV-30: F1 cookies 0.971 vs 0.959, aliens 0.967 vs 0.958, solar cells 0.866 vs 0.864, AUROC equal.
SIGMA = 0.5
# Calibration puts the median out-of-fold normal image at this score, so typical good parts read
# as clearly normal and the threshold sits at 0.5.
NORMAL_MEDIAN_SCORE = 0.1
# Normal-only threshold: robust standard deviations above the median out-of-fold normal score.
# 3 kept the false-positive rate at 2-5% on the shared data sets with recall 0.65-0.98.
NORMAL_ONLY_SPREADS = 3.0
# Candidate defect patches per anomalous image, as a multiple of what it gives (see _Fitter).
DEFECT_CANDIDATES = 4
PIXEL_AUROC_SIDE = 256  # px: maps and masks are compared at this long side for pixel AUROC
# px: long side of the grid on which predicted masks are compared with the true ones (mask IoU,
# per-class results) and returned per evaluated image (ImageResult.class_map).
EVAL_SIDE = 512
# A head learns from masks when at least this many training anomalies have one: each fold of the
# cross-validation then still trains on one.
MIN_MASKED = 2
# Folds of the head's own cross-validation (bank folds are grouped into these): each costs one
# head fit, and five out-of-fold maps calibrate as well as ten.
HEAD_FOLDS = 5
# Weights of the unsupervised part tried when mixing it with the head (see engine.model.Mix).
MIX_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
# Without masks the unsupervised distance keeps at least this much of the score: a head taught by
# ten image labels and painted defects must not hide defects of kinds it never saw.
WEAK_MIX_WEIGHTS = (0.5, 0.75, 1.0)
# Without masks (weak supervision): the share of an anomalous training image's cells, those farthest
# from normal, that the head takes as its defect; and synthetic defects painted per normal image.
# LFV-30 AUROC / F1, seeds 0-2, at 0.01 / 0.03 / 0.05: ball_screw 0.895 / 0.829, 0.909 / 0.848,
# 0.904 / 0.844; solar cells 0.943 / 0.840, 0.950 / 0.830, 0.954 / 0.837; aliens 0.995 / 0.963,
# 0.996 / 0.970 at 0.03; cookies 1.000 at both. Three synthetic defects instead of one: level.
WEAK_SHARE = 0.03
# The same share for an unmasked anomaly in a project whose other anomalies have masks: there the
# masks teach what a defect's extent is, and a wider guess teaches background as defect (cookies,
# 1-3 of 10 anomalies unmasked, mask IoU seeds 0-2: 0.643 at 0.01, 0.616 at 0.03).
MIXED_WEAK_SHARE = 0.01
SYNTHETIC_PER_NORMAL = 1
# px of input per cell of the head's map, with masks and without: 8 (the patch features' grid) or
# 4 (the head also reads the backbone's stride-4 stage; the distance is interpolated to it).
# LFV-30 seeds 0-2 with masks, 8 -> 4: mask IoU ball_screw 0.240 -> 0.342, cookies 0.554 -> 0.643,
# image AUROC ball_screw 0.930 -> 0.911 (within its seed spread), cookies 1.000. Without masks 4
# gained nothing and cost F1 (solar cells 0.840 -> 0.822): the weak head stays at 8.
HEAD_STRIDE = 4
WEAK_HEAD_STRIDE = 8
# A model with masks scores an image by the mean of this share of its raw map's highest cells
# (engine.model.image_raw), choosing its mix by the same score; None: by the peak.
POOL = 0.01
# The whole-image discriminant (engine.discriminant) joins the image score with one of these
# weights, chosen on out-of-fold scores (0: left out, as where it does not help). LFV-30 image
# labels, seeds 0-2, (0, 0.25, 0.5) / (..., 0.75): ball_screw AUROC 0.909 -> 0.939 / 0.957 (F1
# 0.848 -> 0.848 / 0.834); the other sets chose 0 on every seed. With masks, to 0.75: ball_screw
# 0.946 -> 0.961, F1 0.809 -> 0.831. The patch scores keep at least a quarter of the score.
DISCRIMINANT_WEIGHTS = (0.0, 0.25, 0.5, 0.75)
# Images of each class it needs, below which ten folds' choice of a weight would be noise.
DISCRIMINANT_MIN_IMAGES = 5
PIXEL_THRESHOLDS = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2))  # head probabilities tried for masks
# Shares of an image's highest head probability a mask pixel must also reach, tried with them.
PIXEL_RATIOS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
# A segmentation model's masks follow the photo's edges: its head's probabilities are filtered with
# the photo as guide (engine.model.guided_map) before the pixel threshold, out of fold and served.
# LFV-30 with masks, seeds 0-2, mask IoU: ball_screw 0.351 -> 0.394, cookies 0.643 -> 0.680. Radius
# and eps had the best out-of-fold IoU of both sets together among radius 1-2.5 cells and eps
# 3e-5-1e-3 (docs/benchmarks.md). The guide is the model's input, which the backbone was given anyway
# (a tiled model's, the photo).
GUIDE = Guide(radius=1.5, eps=3e-5, on_input=True)

Progress = Callable[[str, float], None]


class TrainingError(Exception):
    """The data cannot produce a model; `message` tells a quality engineer what to change."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class Sample:
    key: str  # the caller's id, echoed in per-image results
    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: int  # 0 normal, 1 anomaly
    # None, or (H, W) bool (True on the defect: one class), or (H, W) uint8 class ids (0
    # background, k = the k-th of train()'s `classes`). A normal image's mask is ignored.
    mask: np.ndarray | None = None


@dataclass
class ImageResult:
    key: str
    label: int
    score: float  # calibrated, 0..1
    is_anomalous: bool
    confidence: float
    anomaly_map: np.ndarray  # (h, w) float32 calibrated scores on the model's map grid (stride 8 or 4)
    # (h, w) uint8 predicted class ids on a reduced grid (long side <= EVAL_SIDE), for drawing the
    # predicted mask over the image; all 0 when the image is not flagged.
    class_map: np.ndarray | None = None
    class_fractions: dict[str, float] = field(default_factory=dict)  # {class name: share of the image}


@dataclass
class TrainResult:
    model: AnomalyModel
    evaluation: str  # "test_dataset" | "cross_validation"
    metrics: dict
    per_image: list[ImageResult] = field(default_factory=list)


def long_side_for(images: Sequence[np.ndarray]) -> int:
    """Model input long side (px) for a project's images.

    256 px is where the shared data sets score best (measured 256-512, docs/benchmarks.md). Much
    larger photos get a proportionally larger input, at most 4x downscaling up to 1024 px, so a
    defect a few dozen pixels wide still covers a feature cell instead of vanishing.
    """
    median = float(np.median([max(i.shape[:2]) for i in images]))
    return int(min(1024, max(256, 32 * round(median / 4 / 32))))


# Tiling. Photos that stretching cannot bring near a square (line-scan strips, more than
# TILE_ASPECT times longer than wide) or more than MAX_DOWNSCALE times larger than the input
# would lose every defect smaller than a feature cell if shrunk whole into the input: a project
# of such photos gets a tiled model instead, at the scale its training photos suggest.
TILE_ASPECT = 4.0
MAX_DOWNSCALE = 4.0
STRIP_SHORT = 256  # px of input a strip's short side keeps (or its own size, if smaller)
MIN_TILE_GAIN = 1.25  # tiles scale the photo at least this much more than the whole input would


def tile_scale_for(images: Sequence[np.ndarray], long_side: int) -> float | None:
    """Input px per photo px at which a project's photos are tiled, or None when its typical
    (median) photo goes whole into the `long_side` input as today: shrunk at most MAX_DOWNSCALE
    times, a strip's short side kept at STRIP_SHORT px, never enlarged."""
    height = float(np.median([i.shape[0] for i in images]))
    width = float(np.median([i.shape[1] for i in images]))
    long, short = max(height, width), min(height, width)
    strip = long > TILE_ASPECT * short
    scale = min(1.0, max(long_side / long, 1 / MAX_DOWNSCALE, STRIP_SHORT / short if strip else 0.0))
    # Only where tiles see the photo much finer than the whole input would: a photo just past the
    # 4x (2200 px at a 544 px input) loses the stretch to a square for nothing.
    return scale if scale >= MIN_TILE_GAIN * long_side / long else None


def _class_names(classes: Sequence[str]) -> tuple[str, ...]:
    names = tuple(str(c).strip() for c in classes) or DEFAULT_CLASSES
    if any(not n for n in names) or len(set(names)) != len(names):
        raise TrainingError(f"Anomaly class names must be distinct and not empty; got {list(classes)}.")
    return names


def _class_mask(sample: Sample, n_classes: int, named: bool) -> np.ndarray | None:
    """The sample's mask as (H, W) uint8 class ids, or None (no mask, an empty one, or a normal image).

    A bool mask, or any mask when no classes were named, is class 1 wherever it is set.
    """
    if sample.mask is None or sample.label == 0:
        return None
    mask = np.asarray(sample.mask)
    if mask.dtype == bool or not named:
        mask = (mask > 0).astype(np.uint8)
    else:
        if not np.issubdtype(mask.dtype, np.integer) or mask.min() < 0 or mask.max() > n_classes:
            raise TrainingError(
                f"The mask of image {sample.key} has class ids up to {mask.max()}, but there are "
                f"{n_classes} anomaly classes; each pixel must be 0 (background) or 1..{n_classes}."
            )
        mask = mask.astype(np.uint8)
    return mask if mask.any() else None


def _validate(samples: Sequence[Sample], what: str) -> None:
    for s in samples:
        image = s.image
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
            raise TypeError(
                f"{what} sample {s.key!r}: image must be (H, W, 3) uint8, got {getattr(image, 'shape', None)}"
            )
        if s.label not in (0, 1):
            raise TrainingError(f"Image {s.key} has label {s.label!r}; a label must be normal (0) or anomaly (1).")
        if s.mask is not None and s.mask.shape != image.shape[:2]:
            raise TrainingError(
                f"The mask of image {s.key} is {s.mask.shape[1]}x{s.mask.shape[0]} pixels but the image is "
                f"{image.shape[1]}x{image.shape[0]}; a mask must have its image's size."
            )


def _folds(labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified fold number for each image: each class spread evenly over the k folds."""
    fold = np.empty(labels.size, dtype=np.int64)
    for label in (0, 1):
        idx = np.flatnonzero(labels == label)
        fold[idx] = rng.permutation(np.arange(idx.size) % k)
    return fold


class _Fitter:
    """Fits scorers on subsets of one training set's features (the folds, then all of it).

    A defect bank takes each anomalous image's patches farthest from the normal bank it is used
    with. Measuring every patch of every anomaly against every fold's bank would cost as much as
    the cross-validation itself, so each anomaly's candidates (DEFECT_CANDIDATES times as many as
    it gives) are found once against the final normal bank, and each fold re-ranks only those.
    """

    def __init__(self, features: Sequence[np.ndarray], labels: np.ndarray, final_normal: NearestNeighbours):
        self.features = features
        self.labels = labels
        self.candidates = {
            i: farthest_patches(features[i], final_normal, DEFECT_CANDIDATES * defect_patch_count(features[i]))
            for i in np.flatnonzero(labels == 1)
        }

    def fit(self, use: np.ndarray, seed: int, normal: NearestNeighbours | None = None) -> PatchScorer:
        """Scorer from the training images where `use` (bool per image) is set."""
        if normal is None:
            normal = NearestNeighbours(
                build_bank([self.features[i] for i in np.flatnonzero(use & (self.labels == 0))], seed=seed)
            )
        picked = [
            farthest_patches(self.candidates[i], normal, defect_patch_count(self.features[i]))
            for i in np.flatnonzero(use & (self.labels == 1))
        ]
        return PatchScorer(normal, build_defect_bank(picked, seed=seed))


def calibrate(normal: np.ndarray, anomalous: np.ndarray) -> tuple[Calibration, str]:
    """Calibration from out-of-fold raw image scores, and how the threshold was chosen.

    With anomalies: the threshold of best expected F1 under a normal distribution fitted to each
    class's asinh(score / the normal scores' robust spread), steadier than the best-F1 cut between
    two of ~30 scores (measured in docs/benchmarks.md, "The image threshold from fitted score
    distributions"); with fewer than 3 images of a class, no spread or a non-finite score, that
    best-F1 cut, and the returned method says which ("expected_f1" or "best_f1"). Normal images
    only: the median normal score plus NORMAL_ONLY_SPREADS robust standard deviations (1.4826 x
    median absolute deviation). Robust, because one odd photo among 20 normal ones is common and
    a max-based rule then passes nearly every defect (measured in docs/benchmarks.md: recall 0.19
    vs 0.98 on cookies).
    """
    median = float(np.median(normal))
    if anomalous.size:
        raw = np.concatenate([normal, anomalous])
        labels = np.r_[np.zeros(normal.size), np.ones(anomalous.size)]
        threshold, how = m.expected_f1_method(raw, labels, gap_fraction=GAP_FRACTION)
    else:
        sigma = m.robust_spread(normal)
        if not sigma > 0:
            # Half or more of the normal images scored identically (duplicates); fall back to
            # the plain spread, or to a fraction of the score itself.
            sigma = float(np.std(normal)) or 0.1 * abs(median) or 1.0
        threshold = median + NORMAL_ONLY_SPREADS * sigma
        how = "normal_only"
    spread = threshold - median
    if not spread > 0:
        # The anomalies scored below typical normal images (mislabelled data, or defects the
        # backbone cannot see); keep the scale readable rather than exploding.
        spread = float(np.std(np.r_[normal, anomalous])) or 1.0
    scale = spread / math.log((1 - NORMAL_MEDIAN_SCORE) / NORMAL_MEDIAN_SCORE)
    return Calibration(raw_threshold=float(threshold), raw_scale=float(scale)), how


def pixel_auroc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float | None:
    """Pixel AUROC of calibrated maps against (H, W) bool masks, compared at a reduced size."""
    scores, truth = [], []
    for anomaly_map, mask in zip(maps, masks):
        h, w = mask.shape
        factor = min(1.0, PIXEL_AUROC_SIDE / max(h, w))
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        up = Image.fromarray(anomaly_map.astype(np.float32)).resize(size, Image.Resampling.BILINEAR)
        small = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
        scores.append(np.asarray(up).ravel())
        truth.append(np.asarray(small).ravel() > 127)
    if not scores:
        return None
    return m.roc_auc(np.concatenate(scores), np.concatenate(truth))


def evaluate(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """All image-level metrics of calibrated `scores` at `threshold`, JSON-serialisable."""
    out = m.metrics_at_threshold(scores, labels, threshold)
    out["threshold"] = float(threshold)
    out["roc_auc"] = m.roc_auc(scores, labels)
    out["average_precision"] = m.average_precision(scores, labels)
    if labels.any() and not labels.all():
        fpr, tpr = m.roc_curve(scores, labels)
        roc = m.downsample_curve(fpr, tpr)
        precision, recall = m.pr_curve(scores, labels)
        pr = m.downsample_curve(precision, recall)
        out["roc_curve"] = {"fpr": roc["x"], "tpr": roc["y"]}
        out["pr_curve"] = {"precision": pr["x"], "recall": pr["y"]}
    else:
        out["roc_curve"] = {"fpr": [], "tpr": []}
        out["pr_curve"] = {"precision": [], "recall": []}
    out["n_normal"] = int((labels == 0).sum())
    out["n_anomaly"] = int((labels == 1).sum())
    return out


def reduced_size(height: int, width: int) -> tuple[int, int]:
    """(h, w) of the grid on which masks are evaluated and drawn: long side at most EVAL_SIDE."""
    factor = min(1.0, EVAL_SIDE / max(height, width))
    return max(1, round(height * factor)), max(1, round(width * factor))


def _reduce_mask(mask: np.ndarray, n_classes: int) -> np.ndarray:
    """(H, W) uint8 class ids -> the reduced grid, each cell taking the class covering most of it."""
    size = reduced_size(*mask.shape)
    if size == mask.shape:
        return mask
    shares = np.stack([area_shares(mask == k, size) for k in range(n_classes + 1)])
    return shares.argmax(axis=0).astype(np.uint8)


def mask_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two (h, w) bool masks; 1.0 when both are empty."""
    union = np.count_nonzero(predicted | truth)
    return float(np.count_nonzero(predicted & truth) / union) if union else 1.0


class _Head:
    """Trains the per-cell head for one training set: out of fold for calibration, then on all.

    What teaches it, each tied to the training image it came from (so that a fold's head never
    sees anything of the images it maps): normal images (every cell background), anomalies with
    a mask (the mask's share of each cell), anomalies without one (their cells farthest from
    normal are taken as the defect, the rest left out: weak supervision from the image label),
    and synthetic defects painted on normal images (their painted masks).
    """

    def __init__(self, features, fines, distances, masks, labels, n_classes: int, share: float = WEAK_SHARE):
        """fines: each image's (2h, 2w, C4) stride-4 features for a stride-4 head, else None each;
        share: of an unmasked anomaly's cells, those taken as its defect (weak_cells)."""
        self.n_classes = n_classes  # K + 1
        self.grids = [d.shape if fine is None else fine.shape[:2] for d, fine in zip(distances, fines)]
        # (cells, inputs) each; the last column is the log distance (engine.model.head_inputs)
        self.inputs = [head_inputs(f, d, fine) for f, d, fine in zip(features, distances, fines)]
        self.items: list[tuple[int, np.ndarray, np.ndarray]] = []  # (source image, inputs, targets)
        for i, (label, mask) in enumerate(zip(labels, masks)):
            if label == 0 or mask is not None:
                self.items.append((i, self.inputs[i], cell_targets(mask, self.grids[i], n_classes)))
            else:
                top = weak_cells(self.inputs[i][:, -1], share)
                targets = np.zeros((top.size, n_classes), np.float32)
                targets[:, 1] = 1.0
                self.items.append((i, self.inputs[i][top], targets))

    def add_synthetic(self, source: int, features, fine, distance: np.ndarray, mask: np.ndarray) -> None:
        """A synthetic defect painted on training image `source`: (h, w, C) features, (2h, 2w, C4)
        stride-4 features or None, (h, w) distance, (H, W) mask."""
        grid = distance.shape if fine is None else fine.shape[:2]
        self.items.append((source, head_inputs(features, distance, fine), cell_targets(mask, grid, self.n_classes)))

    def fit(self, use: np.ndarray, seed: int) -> PixelHead:
        chosen = [(x, y) for source, x, y in self.items if use[source]]
        return fit_head(np.concatenate([x for x, _ in chosen]), np.concatenate([y for _, y in chosen]), seed=seed)

    def probabilities(self, head: PixelHead, i: int) -> np.ndarray:
        """(h', w', K + 1) class probabilities of training image i on the head's grid."""
        return head.probabilities(self.inputs[i]).reshape(*self.grids[i], self.n_classes)

    def log_distance(self, i: int) -> np.ndarray:
        """(h', w') log distance to normal of training image i on the head's grid."""
        return self.inputs[i][:, -1].reshape(self.grids[i])


def weak_cells(distance: np.ndarray, share: float = WEAK_SHARE) -> np.ndarray:
    """Flat indices of an unmasked anomaly's cells taken as its defect: those farthest from normal."""
    k = max(1, math.ceil(share * distance.size))
    return np.argsort(distance.ravel())[-k:]


def synthetic_defect(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A copy of (H, W, 3) uint8 `image` with one painted defect, and its (H, W) uint8 mask (1 on it).

    Three kinds taken at random, each a few per cent of the image across, so that the head learns
    "unlike its surroundings" rather than one look: a patch of the image cut from elsewhere and
    pasted (flipped), a blob of noise in a random colour, and a thin scratch.
    """
    height, width = image.shape[:2]
    out = image.copy()
    side = max(height, width)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    kind = int(rng.integers(3))
    cx, cy = rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height
    if kind == 2:
        length, angle = rng.uniform(0.05, 0.2) * side, rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=max(2, round(0.008 * side)))
    else:
        rx, ry = rng.uniform(0.015, 0.06, 2) * side
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    where = np.asarray(canvas) > 0
    if kind == 0:
        # The same-shaped region from a random other place of the image, mirrored.
        sy, sx = int(rng.integers(-height // 3, height // 3)), int(rng.integers(-width // 3, width // 3))
        shifted = np.roll(np.roll(image[::-1, ::-1], sy, axis=0), sx, axis=1)
        out[where] = shifted[where]
    else:
        colour = rng.uniform(0, 255, 3)
        noise = rng.normal(0, rng.uniform(5, 40), (int(where.sum()), 3))
        out[where] = np.clip(colour + noise, 0, 255).astype(np.uint8)
    return out, where.astype(np.uint8)


def _peaks(maps: Sequence[np.ndarray], pool: float | None = None) -> np.ndarray:
    return np.array([image_raw(m, pool) for m in maps])


def _robust_centre_spread(values: np.ndarray) -> tuple[float, float]:
    centre = float(np.median(values))
    spread = m.robust_spread(values)
    return centre, spread if spread > 1e-6 else float(np.std(values)) or 1.0


def choose_mix(
    u_maps, h_maps, labels: np.ndarray, weights: Sequence[float] = MIX_WEIGHTS, pool: float | None = None
) -> tuple[Mix, dict]:
    """The Mix whose out-of-fold image scores (image_raw with `pool`) rank anomalies above normals best.

    Each part is standardised by its normal images' peaks; ties between weights go to the one
    nearest 0.5, which keeps both kinds of evidence.
    """
    u_centre, u_spread = _robust_centre_spread(_peaks(u_maps)[labels == 0])
    h_centre, h_spread = _robust_centre_spread(_peaks(h_maps)[labels == 0])
    tried = {}
    for weight in weights:
        mix = Mix(weight, u_centre, u_spread, h_centre, h_spread)
        tried[weight] = m.roc_auc(_peaks([mix(u, h) for u, h in zip(u_maps, h_maps)], pool), labels) or 0.0
    best = max(weights, key=lambda w: (round(tried[w], 6), -abs(w - 0.5)))
    return Mix(best, u_centre, u_spread, h_centre, h_spread), tried


def choose_discriminant(
    features: Sequence[np.ndarray], labels: np.ndarray, fold: np.ndarray, patch_scores: np.ndarray
) -> tuple[Discriminant | None, np.ndarray | None, dict]:
    """The whole-image discriminant and its out-of-fold terms of the raw image scores, or (None,
    None) when it does not rank the out-of-fold images better than the patch scores alone.

    features: each training image's (h, w, C) patch features; fold: its fold (the patch scores'
    folds, so that each image's value comes from a discriminant that did not see it);
    patch_scores: the out-of-fold raw image scores. Both parts are standardised by their normal
    images' scores and weight w ranks by (1 - w) * patch + w * whole, ties going to the smaller w.
    """
    vectors = np.stack([pooled(f, POOLS) for f in features])
    value = np.empty(len(features))
    for f in np.unique(fold):
        value[fold == f] = Discriminant.fit(vectors[fold != f], labels[fold != f]).value(vectors[fold == f])
    p_centre, p_spread = _robust_centre_spread(patch_scores[labels == 0])
    v_centre, v_spread = _robust_centre_spread(value[labels == 0])
    tried = {}
    for weight in DISCRIMINANT_WEIGHTS:
        mixed = (1 - weight) * (patch_scores - p_centre) / p_spread + weight * (value - v_centre) / v_spread
        tried[weight] = m.roc_auc(mixed, labels) or 0.0
    best = max(DISCRIMINANT_WEIGHTS, key=lambda w: (round(tried[w], 6), -w))
    if best == 0:
        return None, None, tried
    discriminant = Discriminant.fit(vectors, labels)
    # In the patch scores' raw units: patch + gain * (value - offset) ranks as the weighted sum.
    discriminant.offset = v_centre
    discriminant.gain = best / (1 - best) * p_spread / v_spread
    return discriminant, discriminant.gain * (value - v_centre), tried


def choose_pixel_threshold(anomaly_maps: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> tuple[float, float]:
    """(head anomaly probability, share of each image's highest) that maximise the mean IoU of
    out-of-fold masks with the true ones; ties go to the smaller share, then the lower threshold.

    anomaly_maps: (h, w) head anomaly probabilities on the feature grid, or guided_map's finer grid;
    truths: (H', W') bool on the reduced grid. Each map is upsampled to its truth's grid once, then
    every candidate tried.
    """
    ups = [upsample(a, t.shape) for a, t in zip(anomaly_maps, truths)]
    peaks = [float(a.max()) for a in anomaly_maps]
    best, best_iou = (float(PIXEL_THRESHOLDS[0]), 0.0), -1.0
    for ratio in PIXEL_RATIOS:
        for t in PIXEL_THRESHOLDS:
            iou = np.mean([mask_iou(u >= max(t, ratio * p), truth) for u, p, truth in zip(ups, peaks, truths)])
            if iou > best_iou + 1e-9:
                best, best_iou = (float(t), float(ratio)), iou
    return best


def train(
    *,
    train: Sequence[Sample],
    test: Sequence[Sample] | None = None,
    classes: Sequence[str] = (),
    backbone: str = DEFAULT_BACKBONE,
    progress: Progress | None = None,
    seed: int = 0,
) -> TrainResult:
    """Fit, calibrate and evaluate a model. Raises TrainingError when the data is unusable.

    `classes` names the anomaly classes 1..K that masks use (default: one class, "anomaly").
    With at least MIN_MASKED masked training anomalies the model learns a per-cell head from the
    masks and becomes a segmentation model; otherwise it is a classification model.
    `progress(stage, fraction)` is called with stage "features", "fitting", "evaluating" and the
    fraction done within that stage; an exception it raises (a cancelled job) propagates.
    """
    report = progress or (lambda stage, fraction: None)
    started = time.perf_counter()
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    test = list(test) if test else []
    names = _class_names(classes)
    _validate(train, "training")
    _validate(test, "test")
    labels = np.array([s.label for s in train], dtype=np.int64)
    n_normal = int((labels == 0).sum())
    if n_normal < MIN_NORMAL:
        raise TrainingError(
            f"The training dataset has {n_normal} normal image(s); at least {MIN_NORMAL} are needed, and "
            "20 or more give a reliable model. Add photos of good products labelled normal."
        )
    train_masks = [_class_mask(s, len(names), bool(classes)) for s in train]
    test_masks = [_class_mask(s, len(names), bool(classes)) for s in test]
    segmentation = sum(mask is not None for mask in train_masks) >= MIN_MASKED
    # Without masks a head still learns from the image labels and synthetic defects; with only
    # normal images (or several class names and no masks to tell them apart) the model is the
    # unsupervised one alone.
    weak = not segmentation and len(names) == 1 and int((labels == 1).sum()) >= MIN_MASKED

    long_side = long_side_for([s.image for s in train])
    tile_scale = tile_scale_for([s.image for s in train], long_side)
    extractor = FeatureExtractor(backbone, long_side, MAX_STRETCH, tile_scale=tile_scale)
    everything = list(train) + test
    head_stride = HEAD_STRIDE if segmentation else WEAK_HEAD_STRIDE
    # The stride-4 features are kept only for a stride-4 head (None otherwise).
    keep_fine = (segmentation or weak) and head_stride != STRIDE
    features, fines = [], []
    for i, s in enumerate(everything):
        f, fine = extractor.extract(s.image)  # (h, w, C), (2h, 2w, C4) float32
        features.append(f)
        fines.append(fine if keep_fine else None)
        report("features", (i + 1) / len(everything))
    train_features, test_features = features[: len(train)], features[len(train) :]
    train_fines, test_fines = fines[: len(train)], fines[len(train) :]
    # (source image, (h, w, C) features, stride-4 features or None, (H, W) mask)
    synthetic: list[tuple[int, np.ndarray, np.ndarray | None, np.ndarray]] = []
    if weak:
        painter = np.random.default_rng(seed + 7919)
        for i in np.flatnonzero(labels == 0):
            for _ in range(SYNTHETIC_PER_NORMAL):
                image, mask = synthetic_defect(train[i].image, painter)
                f, fine = extractor.extract(image)
                synthetic.append((int(i), f, fine if keep_fine else None, mask))

    # Out-of-fold raw maps of every training image: the threshold's calibration data, and the
    # evaluation itself when there is no test dataset.
    rng = np.random.default_rng(seed)
    k = min(MAX_FOLDS, n_normal)
    fold = _folds(labels, k, rng)
    oof_distance: list[np.ndarray | None] = [None] * len(train)
    final_normal = NearestNeighbours(
        build_bank([train_features[i] for i in np.flatnonzero(labels == 0)], seed=seed + k)
    )
    fitter = _Fitter(train_features, labels, final_normal)
    head_fold = fold % HEAD_FOLDS
    head_k = min(HEAD_FOLDS, k)
    steps = k + head_k + 1 if segmentation or weak else k + 1
    synthetic_distance: list[np.ndarray | None] = [None] * len(synthetic)
    for f in range(k):
        scorer = fitter.fit(fold != f, seed + f)
        for i in np.flatnonzero(fold == f):
            oof_distance[i] = scorer.distance_map(train_features[i], SIGMA)
        for j, (source, feats, _, _) in enumerate(synthetic):
            if fold[source] == f:
                synthetic_distance[j] = scorer.distance_map(feats, SIGMA)
        report("fitting", (f + 1) / steps)
    scorer = fitter.fit(np.ones(len(train), dtype=bool), seed + k, final_normal)

    head = mix = pixel_threshold = pool = guide = None
    pixel_ratio = 0.0
    oof_probs: list[np.ndarray | None] = [None] * len(train)
    fit_info: dict = {}
    if segmentation or weak:
        # The head learns from the out-of-fold distances (a training image's own patches are in
        # the final bank, so its final distances would be near zero). Its own out-of-fold maps
        # come from heads that did not see the image's fold.
        share = MIXED_WEAK_SHARE if segmentation else WEAK_SHARE
        heads = _Head(train_features, train_fines, oof_distance, train_masks, labels, len(names) + 1, share)
        for (source, feats, fine, mask), distance in zip(synthetic, synthetic_distance):
            heads.add_synthetic(source, feats, fine, distance, mask)
        for f in range(head_k):
            fold_head = heads.fit(head_fold != f, seed + f)
            for i in np.flatnonzero(head_fold == f):
                oof_probs[i] = heads.probabilities(fold_head, i)
            report("fitting", (k + f + 1) / steps)
        head = heads.fit(np.ones(len(train), dtype=bool), seed + k)
        u_maps = [heads.log_distance(i) for i in range(len(train))]
        h_maps = [anomaly_logit(p.reshape(-1, p.shape[-1])).reshape(p.shape[:2]) for p in oof_probs]
        pool = POOL if segmentation else None
        mix, tried = choose_mix(u_maps, h_maps, labels, MIX_WEIGHTS if segmentation else WEAK_MIX_WEIGHTS, pool)
        oof_raw = [mix(u, h) for u, h in zip(u_maps, h_maps)]
        fit_info = {"mix_weight": mix.weight, "mix_auroc": tried, "synthetic_defects": len(synthetic)}
        if segmentation:
            masked = [i for i, mask in enumerate(train_masks) if mask is not None]
            guide = GUIDE if tile_scale is None else replace(GUIDE, on_input=False)
            seen = [extractor.resize(train[i].image) if guide.on_input else train[i].image for i in masked]
            pixel_threshold, pixel_ratio = choose_pixel_threshold(
                [guided_map(1.0 - oof_probs[i][..., 0], image, guide) for i, image in zip(masked, seen)],
                [_reduce_mask(train_masks[i], len(names)) > 0 for i in masked],
            )
            fit_info["pixel_threshold"] = pixel_threshold
            fit_info["pixel_ratio"] = pixel_ratio
    else:
        oof_raw = oof_distance
    oof_scores = _peaks(oof_raw, pool)
    discriminant = oof_whole = None
    if min(n_normal, int((labels == 1).sum())) >= DISCRIMINANT_MIN_IMAGES:
        discriminant, oof_whole, tried = choose_discriminant(train_features, labels, fold, oof_scores)
        fit_info["discriminant_auroc"] = tried
        if discriminant is not None:
            oof_scores = oof_scores + oof_whole
    calibration, how = calibrate(oof_scores[labels == 0], oof_scores[labels == 1])
    report("fitting", 1.0)

    model = AnomalyModel(
        backbone=backbone,
        long_side=long_side,
        max_stretch=MAX_STRETCH,
        tile_scale=tile_scale,
        discriminant=discriminant,
        bank=scorer.normal.bank,
        defects=scorer.defect_bank,
        calibration=calibration,
        sigma=SIGMA,
        head=head,
        mix=mix,
        pixel_threshold=pixel_threshold,
        pixel_ratio=pixel_ratio,
        guide=guide,
        head_stride=head_stride,
        pool=pool,
        classes=names,
        graph=extractor.graph,
        # What the training photos look like, so that a photo unlike all of them is told apart.
        familiarity=Familiarity.fit(
            [image_stats(s.image) for s in train], np.stack([embedding(f) for f in train_features])
        ),
        info={
            "n_normal": n_normal,
            "n_anomaly": int((labels == 1).sum()),
            "n_masked": sum(mask is not None for mask in train_masks),
            "threshold_method": how,
            "seed": seed,
            **fit_info,
        },
    )

    if test:
        evaluation = "test_dataset"
        evaluated, evaluated_masks = test, test_masks
        maps, wholes = [], []
        for i, (f, fine) in enumerate(zip(test_features, test_fines)):
            maps.append(model.maps(f, fine))
            wholes.append(model.whole_image(f))
            report("evaluating", (i + 1) / len(test))
    else:
        evaluation = "cross_validation"
        evaluated, evaluated_masks = list(train), train_masks
        maps = list(zip(oof_raw, oof_probs))
        wholes = list(oof_whole) if discriminant is not None else [None] * len(train)
        report("evaluating", 1.0)
    model.info["evaluation"] = evaluation

    threshold = DEFAULT_THRESHOLD
    per_image = []
    for s, (raw, probs), whole in zip(evaluated, maps, wholes):
        small = model.prediction(
            raw, probs, reduced_size(*s.image.shape[:2]), threshold, whole=whole, image=model.guide_image(s.image)
        )
        per_image.append(
            ImageResult(
                key=s.key,
                label=int(s.label),
                score=small.score,
                is_anomalous=small.is_anomalous,
                confidence=small.confidence,
                anomaly_map=small.anomaly_map,
                class_map=small.class_mask,
                class_fractions=small.class_fractions,
            )
        )
    metrics = evaluate_results(per_image, evaluated, evaluated_masks, names, threshold, model.kind, seed=seed)
    metrics["threshold_method"] = how
    metrics["fit_seconds"] = round(time.perf_counter() - started, 3)
    return TrainResult(model=model, evaluation=evaluation, metrics=metrics, per_image=per_image)


def evaluate_results(
    per_image: Sequence[ImageResult],
    samples: Sequence[Sample],
    masks: Sequence[np.ndarray | None],
    classes: Sequence[str],
    threshold: float,
    kind: str,
    *,
    seed: int = 0,
) -> dict:
    """Every metric of an evaluation, with 95 % intervals and the number of images behind it.

    masks: each evaluated sample's (H, W) uint8 class mask or None (normal, or no mask given).
    """
    scores = np.array([r.score for r in per_image])
    labels = np.array([r.label for r in per_image])
    metrics = evaluate(scores, labels, threshold)
    metrics["ci"] = m.image_intervals(scores, labels, threshold, seed=seed)
    metrics["evaluated_images"] = len(per_image)
    metrics["model_kind"] = kind
    metrics["classes"] = list(classes)

    # Masks at the reduced grid of their image: (result, truth class ids) of anomalies with a mask.
    judged = [(r, _reduce_mask(mask, len(classes))) for r, mask in zip(per_image, masks) if mask is not None]
    ious = [mask_iou(r.class_map > 0, truth > 0) for r, truth in judged]
    metrics["mask_iou"] = float(np.mean(ious)) if ious else None
    metrics["mask_iou_images"] = len(ious)
    metrics["ci"]["mask_iou"] = m.mean_interval(ious, seed=seed)
    metrics["pixel_auroc"] = None
    if judged:
        # Normal images count with an empty mask; anomalies without a mask cannot be judged.
        pairs = [
            (r.anomaly_map, mask if mask is not None else np.zeros(s.image.shape[:2], dtype=bool))
            for r, s, mask in zip(per_image, samples, masks)
            if mask is not None or s.label == 0
        ]
        metrics["pixel_auroc"] = pixel_auroc([p[0] for p in pairs], [p[1] > 0 for p in pairs])
    metrics["per_class"] = per_class_results(per_image, masks, classes, seed=seed) if kind == "segmentation" else {}
    return metrics


def per_class_results(
    per_image: Sequence[ImageResult], masks: Sequence[np.ndarray | None], classes: Sequence[str], *, seed: int = 0
) -> dict:
    """{class: {precision, recall, f1, iou, images, ci}} of a segmentation model's evaluation.

    Image level: an image has class k when its true mask (or, predicted, its class map) contains
    k; normal images have none, and anomalies without a mask are left out (their classes are
    unknown). iou is the mean over images that truly have k of the IoU of class k's pixels.
    """
    rows = [(r, mask) for r, mask in zip(per_image, masks) if mask is not None or r.label == 0]
    out = {}
    for k, name in enumerate(classes, start=1):
        truth = np.array([mask is not None and bool((mask == k).any()) for _, mask in rows])
        predicted = np.array([bool((r.class_map == k).any()) for r, _ in rows])
        counts = m.metrics_at_threshold(predicted.astype(float), truth, 0.5)
        ious = [
            mask_iou(r.class_map == k, _reduce_mask(mask, len(classes)) == k)
            for (r, mask), has in zip(rows, truth)
            if has
        ]
        cm = counts["confusion_matrix"]
        ci = m.image_intervals(predicted.astype(float), truth, 0.5, seed=seed)
        out[name] = {
            "precision": counts["precision"],
            "recall": counts["recall"],
            "f1": counts["f1"],
            "iou": float(np.mean(ious)) if ious else None,
            "images": int(truth.sum()),
            "ci": {
                "precision": ci["precision"],
                "recall": ci["recall"],
                "f1": ci["f1"],
                "iou": m.mean_interval(ious, seed=seed),
            },
            "confusion_matrix": cm,
        }
    return out

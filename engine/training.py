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
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from engine import metrics as m
from engine.backbones import BACKBONES, DEFAULT_BACKBONE
from engine.features import MAX_STRETCH, FeatureExtractor
from engine.model import AnomalyModel, Calibration, confidence
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
# out-of-fold score. LFV-30 F1 at 0.1 / 0.25 / 0.5 / 0.75 of the gap (with the defect bank and
# square inputs): cookies 0.989 / 0.995 / 1.000 / 0.994, aliens 0.971 / 0.971 / 0.974 / 0.963,
# solar cells 0.858 / 0.858 / 0.858 / 0.848. (Before the defect bank, 0.25 had been best.)
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
    mask: np.ndarray | None = None  # (H, W) bool, True on the defect


@dataclass
class ImageResult:
    key: str
    label: int
    score: float  # calibrated, 0..1
    is_anomalous: bool
    confidence: float
    anomaly_map: np.ndarray  # (h, w) float32 calibrated scores on the stride-8 feature grid


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

    With anomalies: the best-F1 threshold. Normal images only: the median normal score plus
    NORMAL_ONLY_SPREADS robust standard deviations (1.4826 x median absolute deviation). Robust,
    because one odd photo among 20 normal ones is common and a max-based rule then passes nearly
    every defect (measured in docs/benchmarks.md: recall 0.19 vs 0.98 on cookies).
    """
    median = float(np.median(normal))
    if anomalous.size:
        raw = np.concatenate([normal, anomalous])
        labels = np.r_[np.zeros(normal.size), np.ones(anomalous.size)]
        threshold = m.best_f1_threshold(raw, labels, gap_fraction=GAP_FRACTION)
        how = "best_f1"
    else:
        sigma = 1.4826 * float(np.median(np.abs(normal - median)))
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


def train(
    *,
    train: Sequence[Sample],
    test: Sequence[Sample] | None = None,
    backbone: str = DEFAULT_BACKBONE,
    progress: Progress | None = None,
    seed: int = 0,
) -> TrainResult:
    """Fit, calibrate and evaluate a model. Raises TrainingError when the data is unusable.

    `progress(stage, fraction)` is called with stage "features", "fitting", "evaluating" and the
    fraction done within that stage; an exception it raises (a cancelled job) propagates.
    """
    report = progress or (lambda stage, fraction: None)
    started = time.perf_counter()
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    test = list(test) if test else []
    _validate(train, "training")
    _validate(test, "test")
    labels = np.array([s.label for s in train], dtype=np.int64)
    n_normal = int((labels == 0).sum())
    if n_normal < MIN_NORMAL:
        raise TrainingError(
            f"The training dataset has {n_normal} normal image(s); at least {MIN_NORMAL} are needed, and "
            "20 or more give a reliable model. Add photos of good products labelled normal."
        )

    long_side = long_side_for([s.image for s in train])
    extractor = FeatureExtractor(backbone, long_side, MAX_STRETCH)
    everything = list(train) + test
    features = []
    for i, s in enumerate(everything):
        features.append(extractor(s.image))  # (h, w, C) float32
        report("features", (i + 1) / len(everything))
    train_features, test_features = features[: len(train)], features[len(train) :]

    # Out-of-fold raw maps of every training image: the threshold's calibration data, and the
    # evaluation itself when there is no test dataset.
    rng = np.random.default_rng(seed)
    k = min(MAX_FOLDS, n_normal)
    fold = _folds(labels, k, rng)
    oof_maps: list[np.ndarray | None] = [None] * len(train)
    final_normal = NearestNeighbours(
        build_bank([train_features[i] for i in np.flatnonzero(labels == 0)], seed=seed + k)
    )
    fitter = _Fitter(train_features, labels, final_normal)
    for f in range(k):
        scorer = fitter.fit(fold != f, seed + f)
        for i in np.flatnonzero(fold == f):
            oof_maps[i] = scorer.distance_map(train_features[i], SIGMA)
        report("fitting", (f + 1) / (k + 1))
    oof_scores = np.array([float(r.max()) for r in oof_maps])
    calibration, how = calibrate(oof_scores[labels == 0], oof_scores[labels == 1])
    scorer = fitter.fit(np.ones(len(train), dtype=bool), seed + k, final_normal)
    report("fitting", 1.0)

    if test:
        evaluation = "test_dataset"
        evaluated = test
        raw_maps = []
        for i, features in enumerate(test_features):
            raw_maps.append(scorer.distance_map(features, SIGMA))
            report("evaluating", (i + 1) / len(test))
    else:
        evaluation = "cross_validation"
        evaluated = list(train)
        raw_maps = oof_maps
        report("evaluating", 1.0)

    threshold = 0.5
    per_image = []
    for s, raw in zip(evaluated, raw_maps):
        anomaly_map = calibration(raw)  # (h, w) float32
        score = float(anomaly_map.max())
        per_image.append(
            ImageResult(
                key=s.key,
                label=int(s.label),
                score=score,
                is_anomalous=score >= threshold,
                confidence=confidence(score, threshold),
                anomaly_map=anomaly_map,
            )
        )
    scores = np.array([r.score for r in per_image])
    eval_labels = np.array([r.label for r in per_image])
    metrics = evaluate(scores, eval_labels, threshold)
    metrics["pixel_auroc"] = None
    if any(s.mask is not None for s in evaluated):
        # Normal images count with an empty mask; anomalies without a mask cannot be judged.
        pairs = [
            (r.anomaly_map, s.mask if s.mask is not None else np.zeros(s.image.shape[:2], dtype=bool))
            for r, s in zip(per_image, evaluated)
            if s.mask is not None or s.label == 0
        ]
        metrics["pixel_auroc"] = pixel_auroc([p[0] for p in pairs], [p[1] for p in pairs])
    metrics["threshold_method"] = how
    metrics["fit_seconds"] = round(time.perf_counter() - started, 3)

    model = AnomalyModel(
        backbone=backbone,
        long_side=long_side,
        max_stretch=MAX_STRETCH,
        bank=scorer.normal.bank,
        defects=scorer.defect_bank,
        calibration=calibration,
        sigma=SIGMA,
        graph=extractor.graph,
        info={
            "n_normal": n_normal,
            "n_anomaly": int((labels == 1).sum()),
            "threshold_method": how,
            "evaluation": evaluation,
            "seed": seed,
        },
    )
    return TrainResult(model=model, evaluation=evaluation, metrics=metrics, per_image=per_image)

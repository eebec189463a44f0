"""A trained anomaly model: what it stores, how it scores an image, how it is saved.

A model scores each feature cell by its distance to a bank of normal patches (unsupervised) and,
when it learned from labelled anomalies, by a small head on the same features (engine.head);
the two make one raw map, and the image score may add a whole-image term learned from the labels
(engine.discriminant). Scores are calibrated: a raw value r becomes
sigmoid((r - raw_threshold) / raw_scale), so the threshold chosen at training sits at 0.5 and a
person can read 0.9 as "well past it". The calibration is fixed at training; moving the
threshold later never changes any score.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata

import numpy as np
from PIL import Image
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from engine.backbones import BACKBONES
from engine.discriminant import Discriminant
from engine.familiarity import Assessment, Familiarity, embedding, image_stats
from engine.features import (
    GRAPH_VERSION,
    MAX_STRETCH,
    SAME_FEATURES,
    STRIDE,
    BackboneUnavailable,
    FeatureExtractor,
    graph_sha256,
)
from engine.head import PixelHead, double, softmax
from engine.patchcore import DEFECT_WEIGHT, NearestNeighbours, PatchScorer

# 2: optional head, classes, pixel threshold; 3: optional whole-image discriminant, which an
# engine that reads only 2 would silently leave out of the score; 4: optional guide for masks,
# without which a pixel threshold chosen on guided maps draws other masks; 5: the guide may be the
# model's input rather than the photo (Guide.on_input), which a reader of 4 would not accept, so
# only a model whose guide is on its input is written as 5: the others stay readable by an engine
# rolled back one release. Older files load unchanged.
FORMAT_VERSION = 5
READABLE_FORMATS = (1, 2, 3, 4, 5)
# The files a saved model consists of (AnomalyModel.to_files / from_files).
MODEL_FILES = ("model.safetensors", "model.json", "backbone.onnx")
DEFAULT_THRESHOLD = 0.5  # calibrated units: where the trained threshold sits by construction
DEFAULT_CLASSES = ("anomaly",)  # a mask without named classes is one class
# A guided filter (guided_map) draws a segmentation model's mask on a grid GUIDE_SCALE times finer
# than its head's map (for a stride-4 head: the model's input), from a fit on a grid GUIDE_FIT_SCALE
# times finer (He and Sun's "fast guided filter"). ball_screw / cookies mask IoU, seeds 0-2, offline:
# fitted at 2x 0.394 / 0.681, at 4x 0.392 / 0.679 for 4x the arithmetic; drawn at 2x 0.367 / 0.682.
GUIDE_SCALE = 4
GUIDE_FIT_SCALE = 2


@dataclass
class Prediction:
    is_anomalous: bool
    confidence: float  # 0.5..1, confidence in the verdict (Lookout for Vision's meaning)
    score: float  # 0..1 calibrated anomaly score
    anomaly_map: np.ndarray  # (h, w) float32 calibrated scores on the map grid (stride 8, or the head's 4)
    mask: np.ndarray  # (H, W) bool at image size: class_mask > 0
    anomalous_fraction: float  # share of image pixels in the mask
    class_mask: np.ndarray = field(default=None)  # (H, W) uint8: 0 background, k = classes[k - 1]
    class_fractions: dict[str, float] = field(default_factory=dict)  # {class name: share of the image}
    # How the photo compares with the training photos (None for models saved without that).
    familiarity: Assessment | None = None


@dataclass(frozen=True)
class Calibration:
    raw_threshold: float  # raw value that maps to 0.5
    raw_scale: float  # raw units per logit unit

    def __call__(self, raw: np.ndarray | float) -> np.ndarray:
        z = (np.asarray(raw, dtype=np.float64) - self.raw_threshold) / self.raw_scale
        return (1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))).astype(np.float32)


@dataclass(frozen=True)
class Guide:
    """A guided filter's settings (He, Sun and Tang, "Guided Image Filtering", 2013; guided_map)."""

    radius: float  # cells of the head's map: the filter's windows are 2 * radius + 1 cells across
    eps: float  # (grey level 0..1)^2: photo variation below this in a window is smoothed over, not followed
    # True: the guide is the model's input (the photo as the backbone saw it, FeatureExtractor.resize),
    # which a detect call has already made, instead of the photo resized a second time: 1.4 ms less CPU
    # per flagged 768x576 photo, masks the same to the third decimal of IoU (docs/benchmarks.md).
    # False (models saved before it): the photo. Untiled models only.
    on_input: bool = False


@dataclass(frozen=True)
class Mix:
    """How a model with a head makes its raw map from the two kinds of evidence per cell.

    u = log of the smoothed normal-bank distance, h = the head's anomaly logit; each is
    standardised by the peaks of the out-of-fold normal training images (centre, spread) and the
    raw map is weight * u' + (1 - weight) * h'. The weight is chosen at training on out-of-fold
    image scores.
    """

    weight: float
    u_centre: float
    u_spread: float
    h_centre: float
    h_spread: float

    def __call__(self, u: np.ndarray, h: np.ndarray) -> np.ndarray:
        a = (u - self.u_centre) / self.u_spread
        b = (h - self.h_centre) / self.h_spread
        return (self.weight * a + (1.0 - self.weight) * b).astype(np.float32)


def confidence(score: float, threshold: float) -> float:
    """Confidence in the verdict: 0.5 at the threshold, rising linearly to 1 at score 0 or 1."""
    if score >= threshold:
        return 0.5 + 0.5 * (score - threshold) / max(1e-9, 1.0 - threshold)
    return 0.5 + 0.5 * (threshold - score) / max(1e-9, threshold)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that made the model (torch and timm are absent on serving nodes)."""
    versions = {}
    for name in ("numpy", "onnxruntime", "timm", "torch", "safetensors"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


class AnomalyModel:
    """Scores images against a bank of normal patch features, and with a head where it learned one.

    `threshold` is in calibrated units (0.5 as trained); changing it only changes verdicts.
    `kind` is "segmentation" for a model that learned from masks (its masks come from the head
    at a pixel threshold chosen on out-of-fold masks), else "classification".
    """

    def __init__(
        self,
        *,
        backbone: str,
        long_side: int,
        bank: np.ndarray,
        defects: np.ndarray | None = None,
        defect_weight: float = DEFECT_WEIGHT,
        max_stretch: float = MAX_STRETCH,
        calibration: Calibration,
        sigma: float,
        threshold: float = DEFAULT_THRESHOLD,
        head: PixelHead | None = None,
        mix: Mix | None = None,
        pixel_threshold: float | None = None,
        pixel_ratio: float = 0.0,
        guide: Guide | None = None,
        head_stride: int = STRIDE,
        pool: float | None = None,
        classes: tuple[str, ...] | list[str] = DEFAULT_CLASSES,
        info: Mapping | None = None,
        graph: bytes | None = None,
        familiarity: Familiarity | None = None,
        tile_scale: float | None = None,
        discriminant: Discriminant | None = None,
    ):
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}")
        if (head is None) != (mix is None):
            raise ValueError("a head needs its mix, and a mix its head")
        if head is not None and head.n_classes != len(classes) + 1:
            raise ValueError(f"the head has {head.n_classes - 1} anomaly classes but {len(classes)} names")
        if guide is not None and guide.on_input and tile_scale is not None:
            raise ValueError("a tiled model has no single input to guide its masks by; guide by the photo")
        self.backbone = backbone
        self.long_side = long_side  # px: images are resized so their long side has this length
        self.max_stretch = max_stretch  # the short side's scale, at most this times the long side's
        # None: photos are shrunk whole into the input; else input px per photo px at which they are
        # cut into tiles (strips and very large photos: engine.training.tile_scale_for).
        self.tile_scale = tile_scale
        self.scorer = PatchScorer(NearestNeighbours(bank), defects, defect_weight)
        self.calibration = calibration
        self.sigma = sigma  # feature cells; smoothing of the distance map before scoring
        self.threshold = float(threshold)
        self.head = head
        self.mix = mix
        # px of input per cell of the head's map: 8 (the patch features' grid) or FINE_STRIDE (a
        # head that also reads the stride-4 stage, so that its masks are twice as fine).
        self.head_stride = int(head_stride) if head is not None else STRIDE
        # The image score: None, the raw map's peak; a share, the mean of that share of its
        # highest cells (engine.model.image_raw).
        self.pool = pool
        # None, or a whole-image score learned from the image labels, which adds its term to the
        # image score (not to the map): engine.discriminant.
        self.discriminant = discriminant
        # Anomaly probability (0..1, from the head) at which a pixel belongs to the mask; None:
        # the mask is where the calibrated map reaches the image threshold.
        self.pixel_threshold = pixel_threshold
        # A mask pixel also needs this share of the image's highest anomaly probability, so that
        # a faint blob around a small defect's sure peak is left out (0: the fixed threshold alone).
        self.pixel_ratio = float(pixel_ratio)
        # None, or how the head's anomaly probabilities are filtered with the photo as guide before
        # the mask is drawn, so that its edges follow the defect's edges in the photo (guided_map).
        self.guide = guide
        self.classes = list(classes)
        self.familiarity = familiarity  # what the training photos look like (engine.familiarity)
        self.info = dict(info or {})  # training summary stored alongside (JSON)
        self._graph = graph  # ONNX bytes of the backbone graph it was trained with
        self._extractor: FeatureExtractor | None = None

    @property
    def kind(self) -> str:
        return "segmentation" if self.pixel_threshold is not None else "classification"

    @property
    def bank(self) -> np.ndarray:
        return self.scorer.normal.bank  # (M, C) float32 normal patch features

    @property
    def defects(self) -> np.ndarray:
        """(K, C) float32 known-defect patch features; K = 0 when trained without anomalies."""
        return self.scorer.defect_bank

    @property
    def extractor(self) -> FeatureExtractor:
        # Created on first use, so that loading a model for its metadata starts no session.
        if self._extractor is None:
            try:
                self._extractor = FeatureExtractor(
                    self.backbone, self.long_side, self.max_stretch, graph=self._graph, tile_scale=self.tile_scale
                )
            except BackboneUnavailable as exc:
                # Only a model saved before models carried their graph gets here.
                raise BackboneUnavailable(
                    f"This model was saved without its backbone graph (backbone.onnx), and this machine "
                    f"cannot export the {self.backbone} graph (it needs the training install with torch "
                    f"and timm). Retrain the model, or load it where the training install is."
                ) from exc
            self._graph = self._extractor.graph
        return self._extractor

    @property
    def graph(self) -> bytes:
        """ONNX bytes of the backbone graph this model runs."""
        return self._graph if self._graph is not None else self.extractor.graph

    def maps(
        self, features: np.ndarray, fine: np.ndarray | None = None, *, threads: int = 1
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(h, w, C) patch features [and (2h, 2w, C4) stride-4 features, which a stride-4 head
        needs] -> (raw map (h', w') float32, class probabilities (h', w', K + 1) or None), on the
        head's grid: (h, w), or (2h, 2w) for a stride-4 head. `threads`: the neighbour search's."""
        distance = self.scorer.distance_map(features, self.sigma, threads=threads)
        if self.head is None:
            return distance, None
        if self.head_stride != STRIDE and fine is None:
            raise ValueError("this model's head reads the stride-4 features; pass them (FeatureExtractor.extract)")
        log_distance = np.log(np.maximum(distance, 1e-6))  # (h, w)
        if self.head_stride == STRIDE:
            h, w = distance.shape
            probs = self.head.probabilities(head_inputs(features, distance))
            u = log_distance
        else:
            h, w = fine.shape[:2]
            coarse = np.concatenate([features, log_distance[..., None]], axis=-1)
            probs = softmax(self.head.fine_logits(fine, coarse))
            u = double(log_distance[..., None])[..., 0]
        return self.mix(u, anomaly_logit(probs).reshape(h, w)), probs.reshape(h, w, -1)

    def raw_map(self, features: np.ndarray, fine: np.ndarray | None = None) -> np.ndarray:
        """(h, w, C) patch features -> (h', w') float32 raw anomaly map (before calibration)."""
        return self.maps(features, fine)[0]

    @property
    def guides_on_input(self) -> bool:
        """Whether `prediction` takes the model's input (FeatureExtractor.resize of the photo) as
        image=, rather than the photo."""
        return self.guide is not None and self.guide.on_input

    def guide_image(self, image: np.ndarray) -> np.ndarray:
        """What `prediction` takes as image= for the (H, W, 3) uint8 photo `image`."""
        return self.extractor.resize(image) if self.guides_on_input else image

    def predict(self, image: np.ndarray, *, threshold: float | None = None, threads: int | None = None) -> Prediction:
        """Score one (H, W, 3) uint8 RGB image; `threshold` overrides the stored one.

        `threads`: how many threads the features and the neighbour search use for this image
        (None: onnxruntime's default and one for the search). The answer is the same to the last
        bit on any number: a second onnxruntime session computes the same graph, and the search
        splits its rows where one product would tile them (engine.patchcore.SPLIT_ROWS)."""
        threshold = self.threshold if threshold is None else float(threshold)
        seen = self.guide_image(image)  # on the input: resized once, for the backbone and the guide
        if self.guides_on_input:
            features, fine = self.extractor.extract_input(seen, threads=threads)
        else:
            features, fine = self.extractor.extract(image, threads=threads)
        raw, probs = self.maps(features, fine, threads=threads or 1)
        prediction = self.prediction(
            raw, probs, image.shape[:2], threshold, whole=self.whole_image(features), image=seen
        )
        if self.familiarity is not None:
            prediction.familiarity = self.familiarity.assess(image_stats(image), embedding(features))
        return prediction

    def whole_image(self, features: np.ndarray) -> float | None:
        """(h, w, C) patch features -> the whole image's term of the raw image score (see
        `prediction`), or None for a model without one."""
        return None if self.discriminant is None else self.discriminant.term(features)

    def prediction(
        self,
        raw: np.ndarray,
        probs: np.ndarray | None,
        size: tuple[int, int],
        threshold: float,
        *,
        whole: float | None = None,
        image: np.ndarray | None = None,
    ) -> Prediction:
        """The prediction from an image's maps (see `maps`) and, for a model that scores the whole
        image too, its `whole_image` term, with its masks at `size` (H, W). A model with a guide
        needs the (H', W', 3) uint8 photo, or its input for a guide on the input (`guide_image`),
        to draw its masks."""
        if (whole is None) != (self.discriminant is None):
            raise ValueError("pass whole=model.whole_image(features) exactly when the model has a whole-image score")
        if image is None and self.guide is not None:
            raise ValueError("this model draws its masks along the photo's edges; pass image=")
        anomaly_map = self.calibration(raw)  # (h, w) float32
        score = float(self.calibration(image_raw(raw, self.pool) + (whole or 0.0)))
        is_anomalous = score >= threshold
        class_mask = self.class_mask(raw, probs, size, threshold, image) if is_anomalous else np.zeros(size, np.uint8)
        mask = class_mask > 0
        return Prediction(
            is_anomalous=is_anomalous,
            confidence=confidence(score, threshold),
            score=score,
            anomaly_map=anomaly_map,
            mask=mask,
            anomalous_fraction=float(mask.mean()),
            class_mask=class_mask,
            class_fractions=class_fractions(class_mask, self.classes),
        )

    def class_mask(
        self,
        raw: np.ndarray,
        probs: np.ndarray | None,
        size: tuple[int, int],
        threshold: float,
        image: np.ndarray | None = None,
    ) -> np.ndarray:
        """(H, W) uint8 class ids of a flagged image at `size`: where the defect is, and which class.

        A segmentation model marks where its head's anomaly probability (filtered with `image` as
        guide, for a model with a guide: the photo, or the model's input, see `guide_image`) reaches
        the pixel threshold, each pixel with its most likely class. Where the head marks nothing (the
        image was flagged by its distance to normal: a defect unlike the labelled ones), and for
        classification models, the mask is where the calibrated map reaches the threshold.
        """
        height, width = size
        mask = None
        if probs is not None and self.pixel_threshold is not None:
            anomaly = 1.0 - probs[..., 0]
            if self.guide is not None:
                anomaly = guided_map(anomaly, image, self.guide)
            mask = upsample(anomaly, size) >= max(self.pixel_threshold, self.pixel_ratio * float(anomaly.max()))
            if not mask.any():
                mask = None
        if mask is None:
            # Calibration is monotonic, so thresholding the raw map at the raw equivalent of
            # `threshold` gives the same mask at a fraction of the cost.
            mask = upsample(raw, size) >= self._raw_at(threshold)
        if not mask.any():
            # Bilinear upsampling can lower a single-cell peak below the threshold; the
            # verdict comes from the map, so its peak cell is marked.
            y, x = np.unravel_index(int(np.argmax(raw)), raw.shape)
            mask[
                int(y * height / raw.shape[0]) : int(math.ceil((y + 1) * height / raw.shape[0])),
                int(x * width / raw.shape[1]) : int(math.ceil((x + 1) * width / raw.shape[1])),
            ] = True
        if probs is None or probs.shape[-1] == 2:
            return mask.astype(np.uint8)
        # Several classes: each masked pixel takes the class the head finds most likely there.
        best = np.stack([upsample(probs[..., k], size) for k in range(1, probs.shape[-1])]).argmax(axis=0)
        return np.where(mask, best + 1, 0).astype(np.uint8)

    def _raw_at(self, threshold: float) -> float:
        """Raw value at which the calibrated score equals `threshold`."""
        t = min(max(threshold, 1e-6), 1 - 1e-6)
        return self.calibration.raw_threshold + self.calibration.raw_scale * math.log(t / (1 - t))

    def to_files(self) -> dict[str, bytes]:
        """The model as {"model.safetensors": tensors, "model.json": everything else,
        "backbone.onnx": the backbone graph it runs}; no pickle."""
        backbone = BACKBONES[self.backbone]
        graph = self.graph
        meta = {
            "format_version": FORMAT_VERSION if self.guides_on_input else 4,
            "backbone": self.backbone,
            "timm_architecture": backbone.timm_name,
            "graph_version": GRAPH_VERSION,
            "graph_sha256": graph_sha256(graph),
            "input": {
                "long_side": self.long_side,
                "max_stretch": self.max_stretch,
                "tile_scale": self.tile_scale,
                "stride": STRIDE,
                "mean": backbone.mean,
                "std": backbone.std,
            },
            "threshold": self.threshold,
            "calibration": {"raw_threshold": self.calibration.raw_threshold, "raw_scale": self.calibration.raw_scale},
            "sigma": self.sigma,
            "defect_weight": self.scorer.defect_weight,
            "kind": self.kind,
            "classes": self.classes,
            "mix": asdict(self.mix) if self.mix is not None else None,
            "pixel_threshold": self.pixel_threshold,
            "pixel_ratio": self.pixel_ratio,
            "guide": self._guide_json(),
            "head_stride": self.head_stride,
            "pool": self.pool,
            "discriminant": self.discriminant.to_json() if self.discriminant is not None else None,
            "libraries": library_versions(),
            "info": self.info,
            "familiarity": self.familiarity.to_json() if self.familiarity is not None else None,
        }
        tensors = {"bank": self.bank, "defects": self.defects}
        if self.head is not None:
            tensors.update(self.head.to_tensors())
        if self.familiarity is not None:
            tensors.update(self.familiarity.tensors())
        if self.discriminant is not None:
            tensors.update(self.discriminant.to_tensors())
        return {
            "model.safetensors": save_tensors(tensors),
            "model.json": json.dumps(meta, indent=2, sort_keys=True).encode(),
            "backbone.onnx": graph,
        }

    def _guide_json(self) -> dict | None:
        if self.guide is None:
            return None
        # Without on_input when it is False: a format-4 reader would refuse the unknown key.
        return asdict(self.guide) if self.guide.on_input else {"radius": self.guide.radius, "eps": self.guide.eps}

    @classmethod
    def from_files(cls, files: Mapping[str, bytes]) -> AnomalyModel:
        """Load what `to_files` wrote. Needs no torch: the model runs its own backbone.onnx.

        A model saved before models carried their graph (no backbone.onnx) runs this engine's
        export of its backbone, which must then be the same graph version.
        """
        meta = json.loads(files["model.json"])
        if meta.get("format_version") not in READABLE_FORMATS:
            raise ValueError(f"model format {meta.get('format_version')} is not supported by this engine")
        graph = files.get("backbone.onnx")
        if graph is not None:
            if graph_sha256(graph) != meta.get("graph_sha256"):
                raise ValueError("backbone.onnx is not the graph this model was trained with (sha256 differs)")
        elif meta["graph_version"] not in SAME_FEATURES:
            raise ValueError(
                f"model was trained with backbone graph v{meta['graph_version']}, this engine has "
                f"v{GRAPH_VERSION}; retrain the model"
            )
        tensors = load_tensors(files["model.safetensors"])
        mix = meta.get("mix")
        return cls(
            backbone=meta["backbone"],
            long_side=int(meta["input"]["long_side"]),
            # Models saved before the stretch existed kept the aspect ratio.
            max_stretch=float(meta["input"].get("max_stretch", 1.0)),
            tile_scale=meta["input"].get("tile_scale"),  # models saved before tiling shrink photos whole
            bank=tensors["bank"],
            defects=tensors.get("defects"),
            defect_weight=float(meta.get("defect_weight", DEFECT_WEIGHT)),
            calibration=Calibration(**meta["calibration"]),
            sigma=float(meta["sigma"]),
            threshold=float(meta["threshold"]),
            head=PixelHead.from_tensors(tensors),
            mix=Mix(**mix) if mix else None,
            pixel_threshold=meta.get("pixel_threshold"),
            pixel_ratio=float(meta.get("pixel_ratio", 0.0)),  # models saved before it: the threshold alone
            guide=Guide(**meta["guide"]) if meta.get("guide") else None,  # models saved before it: none
            head_stride=int(meta.get("head_stride", STRIDE)),
            pool=meta.get("pool"),
            classes=meta.get("classes", DEFAULT_CLASSES),
            info=meta.get("info"),
            graph=graph,
            familiarity=Familiarity.from_json(meta["familiarity"], tensors) if meta.get("familiarity") else None,
            # Models saved before the whole-image score have none and score as they did.
            discriminant=Discriminant.from_files(meta["discriminant"], tensors) if meta.get("discriminant") else None,
        )


def head_inputs(features: np.ndarray, distance: np.ndarray, fine: np.ndarray | None = None) -> np.ndarray:
    """Float32 head inputs, one row per cell of the head's grid; the last column is always the
    cell's log distance to normal.

    Without `fine`: (h * w, C + 1), each stride-8 cell's features and log distance. With the
    (2h, 2w, C4) stride-4 features: (4 * h * w, C4 + C + 1), each stride-4 cell's own features,
    then the stride-8 features and log distance interpolated to it.
    """
    c = features.shape[-1]
    log_distance = np.log(np.maximum(distance, 1e-6))[..., None]  # (h, w, 1)
    if fine is None:
        return np.concatenate([features.reshape(-1, c), log_distance.reshape(-1, 1)], axis=1)
    coarse = double(np.concatenate([features, log_distance], axis=-1))  # (2h, 2w, C + 1)
    return np.concatenate([fine.reshape(-1, fine.shape[-1]), coarse.reshape(-1, c + 1)], axis=1)


def image_raw(raw: np.ndarray, pool: float | None) -> float:
    """An image's raw score from its (h, w) raw map: the peak, or the mean of the `pool` share of
    its highest cells (at least one)."""
    if pool is None:
        return float(raw.max())
    k = max(1, math.ceil(pool * raw.size))
    return float(np.partition(raw.ravel(), raw.size - k)[-k:].mean())


def anomaly_logit(probs: np.ndarray) -> np.ndarray:
    """(N, K + 1) class probabilities -> (N,) log-odds of "some anomaly class" against background."""
    p = np.clip(1.0 - probs[:, 0], 1e-6, 1 - 1e-6)
    return np.log(p / (1.0 - p)).astype(np.float32)


def upsample(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) float map -> (H, W) float32 by bilinear interpolation."""
    height, width = size
    return np.asarray(Image.fromarray(grid.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR))


def guided_map(anomaly: np.ndarray, image: np.ndarray, guide: Guide) -> np.ndarray:
    """(h, w) anomaly probabilities -> (GUIDE_SCALE * h, GUIDE_SCALE * w) float32, filtered with the
    grey levels of the (H, W, 3) uint8 photo, or of the model's input (for a stride-4 head already
    GUIDE_SCALE * h by GUIDE_SCALE * w, so not resized again), as guide.

    The head sees a small pit as a soft blob a cell or two wide; the guided filter makes the map,
    window by window, the linear function of the photo's grey level that best fits the blob, so
    that the map's edges move onto the pit's dark rim.
    """
    h, w = anomaly.shape
    fit, out = (GUIDE_FIT_SCALE * h, GUIDE_FIT_SCALE * w), (GUIDE_SCALE * h, GUIDE_SCALE * w)
    fine_grey = Image.fromarray(image).convert("L").resize(out[::-1], Image.Resampling.BILINEAR)
    # 2x2 means of the finer guide: resizing the photo a second time would cost 1.3 ms more.
    g = np.asarray(fine_grey.reduce(GUIDE_SCALE // GUIDE_FIT_SCALE), np.float32) / 255.0  # (2h, 2w) 0..1
    p = upsample(anomaly, fit)
    r = max(1, round(guide.radius * GUIDE_FIT_SCALE))  # px of the fitting grid
    g_mean, p_mean, gp_mean, gg_mean = box_mean(np.stack([g, p, g * p, g * g]), r)
    a = (gp_mean - g_mean * p_mean) / (gg_mean - g_mean * g_mean + guide.eps)  # per window: p ~ a * g + b
    a_mean, b_mean = box_mean(np.stack([a, p_mean - a * g_mean]), r)
    fine = np.asarray(fine_grey, np.float32) / 255.0  # (4h, 4w)
    # Still a probability: the linear fit can overshoot at strong edges.
    return np.clip(upsample(a_mean, out) * fine + upsample(b_mean, out), 0.0, 1.0)


def box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """(..., h, w) -> the mean of each (2r + 1, 2r + 1) window of the last two axes, windows clipped
    at the borders."""
    out = x
    for _ in range(2):
        # Each pass sums shifted slices along the second-last axis, which numpy adds 4x faster
        # than the last axis's (numpy's cumsum is slower still), then transposes, contiguously: the
        # second pass does the other axis and transposes back.
        n = out.shape[-2]
        k = min(r, n - 1)
        padded = np.pad(out, [(0, 0)] * (out.ndim - 2) + [(k, k), (0, 0)])
        sums = sum(padded[..., d : d + n, :] for d in range(2 * k + 1))
        i = np.arange(n)
        counts = (np.minimum(i + k, n - 1) - np.maximum(i - k, 0) + 1).astype(x.dtype)
        out = np.ascontiguousarray(np.swapaxes(sums / counts[:, None], -1, -2))
    return out


def class_fractions(class_mask: np.ndarray, classes: list[str]) -> dict[str, float]:
    """{class name: share of the image's pixels} of a (H, W) uint8 class mask."""
    if len(classes) == 1:
        # One class: counting its pixels costs 0.02 ms at 576x768, the histogram 2.5 ms (it
        # widens every pixel to 64 bits), on every detect call. Same counts, same shares.
        return {classes[0]: float(np.count_nonzero(class_mask) / class_mask.size)}
    counts = np.bincount(class_mask.ravel(), minlength=len(classes) + 1)
    return {name: float(counts[k + 1] / class_mask.size) for k, name in enumerate(classes)}

"""A trained anomaly model: what it stores, how it scores an image, how it is saved.

Scores are calibrated: a raw patch distance d becomes sigmoid((d - raw_threshold) / raw_scale),
so the threshold chosen at training sits at 0.5 and a person can read 0.9 as "well past it".
The calibration is fixed at training; moving the threshold later never changes any score.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata

import numpy as np
from PIL import Image
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from engine.backbones import BACKBONES
from engine.features import GRAPH_VERSION, MAX_STRETCH, STRIDE, BackboneUnavailable, FeatureExtractor, graph_sha256
from engine.patchcore import DEFECT_WEIGHT, NearestNeighbours, PatchScorer

FORMAT_VERSION = 1
# The files a saved model consists of (AnomalyModel.to_files / from_files).
MODEL_FILES = ("model.safetensors", "model.json", "backbone.onnx")
DEFAULT_THRESHOLD = 0.5  # calibrated units: where the trained threshold sits by construction


@dataclass
class Prediction:
    is_anomalous: bool
    confidence: float  # 0.5..1, confidence in the verdict (Lookout for Vision's meaning)
    score: float  # 0..1 calibrated anomaly score
    anomaly_map: np.ndarray  # (h, w) float32 calibrated scores on the feature grid (stride 8)
    mask: np.ndarray  # (H, W) bool at image size, True where the map is at/above the threshold
    anomalous_fraction: float  # share of image pixels in the mask


@dataclass(frozen=True)
class Calibration:
    raw_threshold: float  # raw patch distance that maps to 0.5
    raw_scale: float  # raw distance per logit unit

    def __call__(self, raw: np.ndarray | float) -> np.ndarray:
        z = (np.asarray(raw, dtype=np.float64) - self.raw_threshold) / self.raw_scale
        return (1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))).astype(np.float32)


def confidence(score: float, threshold: float) -> float:
    """Confidence in the verdict: 0.5 at the threshold, rising linearly to 1 at score 0 or 1."""
    if score >= threshold:
        return 0.5 + 0.5 * (score - threshold) / max(1e-9, 1.0 - threshold)
    return 0.5 + 0.5 * (threshold - score) / max(1e-9, threshold)


def library_versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in ("numpy", "onnxruntime", "timm", "torch", "safetensors")}


class AnomalyModel:
    """Scores images against a bank of normal patch features.

    `threshold` is in calibrated units (0.5 as trained); changing it only changes verdicts.
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
        info: Mapping | None = None,
        graph: bytes | None = None,
    ):
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}")
        self.backbone = backbone
        self.long_side = long_side  # px: images are resized so their long side has this length
        self.max_stretch = max_stretch  # the short side's scale, at most this times the long side's
        self.scorer = PatchScorer(NearestNeighbours(bank), defects, defect_weight)
        self.calibration = calibration
        self.sigma = sigma  # feature cells; smoothing of the distance map before scoring
        self.threshold = float(threshold)
        self.info = dict(info or {})  # training summary stored alongside (JSON)
        self._graph = graph  # ONNX bytes of the backbone graph it was trained with
        self._extractor: FeatureExtractor | None = None

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
                self._extractor = FeatureExtractor(self.backbone, self.long_side, self.max_stretch, graph=self._graph)
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

    def raw_map(self, features: np.ndarray) -> np.ndarray:
        """(h, w, C) patch features -> (h, w) float32 smoothed anomaly distance."""
        return self.scorer.distance_map(features, self.sigma)

    def predict(self, image: np.ndarray, *, threshold: float | None = None) -> Prediction:
        """Score one (H, W, 3) uint8 RGB image; `threshold` overrides the stored one."""
        threshold = self.threshold if threshold is None else float(threshold)
        raw = self.raw_map(self.extractor(image))
        return self._prediction(raw, image.shape[:2], threshold)

    def _prediction(self, raw: np.ndarray, size: tuple[int, int], threshold: float) -> Prediction:
        anomaly_map = self.calibration(raw)  # (h, w) float32
        score = float(anomaly_map.max())
        is_anomalous = score >= threshold
        height, width = size
        if is_anomalous:
            # Upsample the raw map (calibration is monotonic, so thresholding the raw map at the
            # raw equivalent of `threshold` gives the same mask at a fraction of the cost).
            upsampled = Image.fromarray(raw).resize((width, height), Image.Resampling.BILINEAR)
            mask = np.asarray(upsampled) >= self._raw_at(threshold)
            if not mask.any():
                # Bilinear upsampling can lower a single-cell peak below the threshold; the
                # verdict comes from the map, so its peak cell is marked.
                y, x = np.unravel_index(int(np.argmax(raw)), raw.shape)
                mask[
                    int(y * height / raw.shape[0]) : int(math.ceil((y + 1) * height / raw.shape[0])),
                    int(x * width / raw.shape[1]) : int(math.ceil((x + 1) * width / raw.shape[1])),
                ] = True
        else:
            mask = np.zeros((height, width), dtype=bool)
        return Prediction(
            is_anomalous=is_anomalous,
            confidence=confidence(score, threshold),
            score=score,
            anomaly_map=anomaly_map,
            mask=mask,
            anomalous_fraction=float(mask.mean()),
        )

    def _raw_at(self, threshold: float) -> float:
        """Raw distance at which the calibrated score equals `threshold`."""
        t = min(max(threshold, 1e-6), 1 - 1e-6)
        return self.calibration.raw_threshold + self.calibration.raw_scale * math.log(t / (1 - t))

    def to_files(self) -> dict[str, bytes]:
        """The model as {"model.safetensors": tensors, "model.json": everything else,
        "backbone.onnx": the backbone graph it runs}; no pickle."""
        backbone = BACKBONES[self.backbone]
        graph = self.graph
        meta = {
            "format_version": FORMAT_VERSION,
            "backbone": self.backbone,
            "timm_architecture": backbone.timm_name,
            "graph_version": GRAPH_VERSION,
            "graph_sha256": graph_sha256(graph),
            "input": {
                "long_side": self.long_side,
                "max_stretch": self.max_stretch,
                "stride": STRIDE,
                "mean": backbone.mean,
                "std": backbone.std,
            },
            "threshold": self.threshold,
            "calibration": {"raw_threshold": self.calibration.raw_threshold, "raw_scale": self.calibration.raw_scale},
            "sigma": self.sigma,
            "defect_weight": self.scorer.defect_weight,
            "libraries": library_versions(),
            "info": self.info,
        }
        return {
            "model.safetensors": save_tensors({"bank": self.bank, "defects": self.defects}),
            "model.json": json.dumps(meta, indent=2, sort_keys=True).encode(),
            "backbone.onnx": graph,
        }

    @classmethod
    def from_files(cls, files: Mapping[str, bytes]) -> AnomalyModel:
        """Load what `to_files` wrote. Needs no torch: the model runs its own backbone.onnx.

        A model saved before models carried their graph (no backbone.onnx) runs this engine's
        export of its backbone, which must then be the same graph version.
        """
        meta = json.loads(files["model.json"])
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"model format {meta.get('format_version')} is not supported by this engine")
        graph = files.get("backbone.onnx")
        if graph is not None:
            if graph_sha256(graph) != meta.get("graph_sha256"):
                raise ValueError("backbone.onnx is not the graph this model was trained with (sha256 differs)")
        elif meta["graph_version"] != GRAPH_VERSION:
            raise ValueError(
                f"model was trained with backbone graph v{meta['graph_version']}, this engine has "
                f"v{GRAPH_VERSION}; retrain the model"
            )
        tensors = load_tensors(files["model.safetensors"])
        return cls(
            backbone=meta["backbone"],
            long_side=int(meta["input"]["long_side"]),
            # Models saved before the stretch existed kept the aspect ratio.
            max_stretch=float(meta["input"].get("max_stretch", 1.0)),
            bank=tensors["bank"],
            defects=tensors.get("defects"),
            defect_weight=float(meta.get("defect_weight", DEFECT_WEIGHT)),
            calibration=Calibration(**meta["calibration"]),
            sigma=float(meta["sigma"]),
            threshold=float(meta["threshold"]),
            info=meta.get("info"),
            graph=graph,
        )

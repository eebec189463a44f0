"""Whether a photo is like the photos a model was trained on: size, proportions, brightness and
content. A verdict on a photo unlike all of them (another product, another framing, the lights
off) may not apply, and people should be told so rather than read "95 % anomalous" as a fact.

Plain numpy. A `Familiarity` is fitted on the training photos' `ImageStats` and, for content, on
one embedding per photo (the mean of its patch features, which the model computes anyway); it
is saved with the model and asked about each photo the model scores. Without embeddings it
judges size, proportions and brightness alone (as the upload page does, from the stored rows).

Content: a photo is unlike the training photos when its embedding is farther from the nearest
training photo's than CONTENT_RATIO times the training photos' own typical (median) distance to
their nearest neighbour. Measured with lite0 on the four shared sets (20 normal + 10 anomalous
training photos, three random draws each): unseen normal photos reach 2.7 at most and unseen
anomalous ones 4.1 (one aliens photo; all others below 3.5), while photos of another product
reach 5.8 or more, a centre crop 3.6-9.4 and the photo shrunk inside a grey border 7.6-20.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine.metrics import robust_spread

CONTENT_RATIO = 3.5
SIZE_FACTOR = 4.0  # pixel count: more than 4x (2x per side) larger or smaller than any training photo
ASPECT_TOLERANCE = 1.15  # proportions: 15 % wider or taller than any training photo
# Brightness: this many grey levels (0-255) beyond the training photos' range, or this many robust
# standard deviations of theirs if more. Unseen photos of the shared sets fell up to 23 (cookies)
# and 34 (solar cells, 1.8 deviations) outside the range of 30 random training photos.
BRIGHTNESS_MARGIN = 40.0
BRIGHTNESS_SPREADS = 6.0
MIN_PHOTOS = 5  # fewer training photos say too little about what is usual


@dataclass(frozen=True)
class ImageStats:
    width: int  # px
    height: int  # px
    brightness: float | None  # mean grey level, 0-255; None when not measured


def brightness(image: np.ndarray) -> float:
    """Mean grey level (0-255, Rec. 601 luma) of an (H, W, 3) uint8 image, on at most ~256 px a side."""
    step = max(1, max(image.shape[:2]) // 256)
    small = image[::step, ::step].astype(np.float32)
    return float((small @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())


def image_stats(image: np.ndarray) -> ImageStats:
    return ImageStats(width=int(image.shape[1]), height=int(image.shape[0]), brightness=brightness(image))


def embedding(features: np.ndarray) -> np.ndarray:
    """(h, w, C) patch features -> (C,) float32: the photo's content in one vector."""
    return features.reshape(-1, features.shape[-1]).mean(axis=0).astype(np.float32)


@dataclass(frozen=True)
class Finding:
    code: str  # "size" | "aspect" | "brightness" | "content"
    message: str  # for people: what differs, with the training photos' values


@dataclass(frozen=True)
class Assessment:
    findings: list[Finding] = field(default_factory=list)

    @property
    def unlike(self) -> bool:
        return bool(self.findings)

    @property
    def reasons(self) -> list[str]:
        return [f.code for f in self.findings]

    @property
    def message(self) -> str:
        if not self.findings:
            return ""
        return "Unlike the training photos: " + "; ".join(f.message for f in self.findings) + "."


def _describe_ratio(aspect: float) -> str:
    """Proportions in words people use: "4:3", "1:1", "2:3 (portrait)"."""
    for a, b in ((1, 1), (4, 3), (3, 2), (16, 9), (5, 4), (2, 1), (3, 1)):
        for w, h in ((a, b), (b, a)):
            if abs(math.log(aspect / (w / h))) < 0.03:
                return f"{w}:{h}" + (" (portrait)" if w < h else "")
    return f"{aspect:.2f}:1" if aspect >= 1 else f"1:{1 / aspect:.2f} (portrait)"


def _size(width: float, height: float) -> str:
    return f"{round(width)}×{round(height)} px"


class Familiarity:
    """What the training photos look like, to tell a photo unlike all of them."""

    def __init__(
        self,
        *,
        sizes: np.ndarray,
        brightness: np.ndarray,
        embeddings: np.ndarray | None = None,
        reference_distance: float | None = None,
    ):
        self.sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)  # (N, 2) width, height px
        self.brightness = np.asarray(brightness, dtype=np.float64).ravel()  # (M,) measured ones
        self.embeddings = None if embeddings is None else np.asarray(embeddings, dtype=np.float32)  # (N, C)
        self.reference_distance = reference_distance  # median nearest-neighbour distance among them

    @classmethod
    def fit(cls, stats: list[ImageStats], embeddings: np.ndarray | None = None) -> Familiarity:
        """From the training photos' stats and, optionally, their (N, C) embeddings."""
        sizes = np.array([(s.width, s.height) for s in stats], dtype=np.float64)
        light = np.array([s.brightness for s in stats if s.brightness is not None], dtype=np.float64)
        reference = None
        if embeddings is not None and len(embeddings) >= 2:
            e = np.asarray(embeddings, dtype=np.float32)
            squared = (e * e).sum(axis=1)
            distance = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * e @ e.T, 0.0))
            np.fill_diagonal(distance, np.inf)
            reference = float(np.median(distance.min(axis=1)))
        return cls(sizes=sizes, brightness=light, embeddings=embeddings, reference_distance=reference)

    def assess(self, stats: ImageStats, embedding: np.ndarray | None = None) -> Assessment:
        """What sets this photo apart from every training photo; no finding when nothing does,
        or when there were fewer than MIN_PHOTOS training photos to judge by."""
        findings = []
        if len(self.sizes) >= MIN_PHOTOS:
            findings += self._shape_findings(stats)
        if stats.brightness is not None and len(self.brightness) >= MIN_PHOTOS:
            findings += self._brightness_findings(stats.brightness)
        if embedding is not None and self.embeddings is not None and len(self.embeddings) >= MIN_PHOTOS:
            findings += self._content_findings(np.asarray(embedding, dtype=np.float32))
        return Assessment(findings)

    def _shape_findings(self, stats: ImageStats) -> list[Finding]:
        findings = []
        areas = self.sizes[:, 0] * self.sizes[:, 1]
        area = stats.width * stats.height
        typical = _size(*np.median(self.sizes, axis=0))
        if area > areas.max() * SIZE_FACTOR or area < areas.min() / SIZE_FACTOR:
            span = "" if areas.min() == areas.max() else " or so"
            findings.append(Finding("size", f"{_size(stats.width, stats.height)}, the training photos {typical}{span}"))
        aspects = self.sizes[:, 0] / self.sizes[:, 1]
        aspect = stats.width / stats.height
        if aspect > aspects.max() * ASPECT_TOLERANCE or aspect < aspects.min() / ASPECT_TOLERANCE:
            findings.append(
                Finding(
                    "aspect",
                    f"proportions {_describe_ratio(aspect)}, the training photos "
                    f"{_describe_ratio(float(np.median(aspects)))}",
                )
            )
        return findings

    def _brightness_findings(self, value: float) -> list[Finding]:
        low, high = float(self.brightness.min()), float(self.brightness.max())
        spread = robust_spread(self.brightness)
        margin = max(BRIGHTNESS_MARGIN, BRIGHTNESS_SPREADS * spread)
        if low - margin <= value <= high + margin:
            return []
        word = "darker" if value < low else "brighter"
        return [
            Finding(
                "brightness",
                f"{word} (mean brightness {value:.0f} of 255, the training photos {low:.0f} to {high:.0f})",
            )
        ]

    def content_ratio(self, embedding: np.ndarray) -> float | None:
        """Distance to the nearest training photo in units of their own typical distance."""
        if self.embeddings is None or not self.reference_distance:
            return None
        nearest = float(np.sqrt(((self.embeddings - embedding) ** 2).sum(axis=1).min()))
        return nearest / self.reference_distance

    def _content_findings(self, embedding: np.ndarray) -> list[Finding]:
        ratio = self.content_ratio(embedding)
        if ratio is None or ratio <= CONTENT_RATIO:
            return []
        return [
            Finding("content", f"what it shows differs from every training photo ({ratio:.1f}× their usual difference)")
        ]

    # --- Saving, beside the model: a JSON part and one tensor -------------------------------------

    def to_json(self) -> dict:
        return {
            "sizes": self.sizes.astype(int).tolist(),
            "brightness": [round(float(b), 2) for b in self.brightness],
            "reference_distance": self.reference_distance,
        }

    def tensors(self) -> dict[str, np.ndarray]:
        return {} if self.embeddings is None else {"familiarity_embeddings": self.embeddings}

    @classmethod
    def from_json(cls, meta: dict, tensors: dict[str, np.ndarray]) -> Familiarity:
        return cls(
            sizes=np.array(meta["sizes"], dtype=np.float64),
            brightness=np.array(meta["brightness"], dtype=np.float64),
            embeddings=tensors.get("familiarity_embeddings"),
            reference_distance=meta.get("reference_distance"),
        )

"""Amazon Lookout for Vision's DetectAnomalies answer: its mask format and its response, field for field."""

import functools
import io

import numpy as np
from PIL import Image as PILImage

# Lookout for Vision names each class of a mask and gives it a colour, which the response's
# `Anomalies` list repeats. Background white, as in LFV's answers; a classification model's one
# class is red.
MASK_COLORS = {"background": "#FFFFFF", "anomaly": "#FF0000"}


def lfv_mask_png(class_mask: np.ndarray, colors: list[str] | None = None) -> bytes:
    """(H, W) class ids (0 background, k the k-th of `colors`; bool: one class) -> PNG of the
    same size, each pixel the colour of its class on white.

    A palette image, which PNG stores at one to eight bits per pixel: small to send, quick to
    encode. (engine.mask_png's 0/255 greyscale is the upload format, not LFV's colours.)
    """
    colors = tuple(colors or [MASK_COLORS["anomaly"]])
    class_mask = np.asarray(class_mask, dtype=np.uint8)
    if not class_mask.any():
        # Most photos of a working line are normal: their all-background mask depends only on
        # the size, so it is encoded once per size, not per call.
        return _blank_mask_png(class_mask.shape, colors)
    return _mask_png(class_mask, colors)


def _mask_png(class_mask: np.ndarray, colors: tuple[str, ...]) -> bytes:
    palette = [MASK_COLORS["background"], *colors]
    image = PILImage.fromarray(class_mask, mode="P")
    image.putpalette([int(c[i : i + 2], 16) for c in palette for i in (1, 3, 5)])
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@functools.lru_cache(maxsize=64)
def _blank_mask_png(shape: tuple[int, int], colors: tuple[str, ...]) -> bytes:
    return _mask_png(np.zeros(shape, dtype=np.uint8), colors)


def detect_anomalies_response(detection) -> dict:
    """Lookout for Vision's DetectAnomalies response for an inference.detection.Detection.

    A segmentation model lists `background` and then every class it knows, found or not, each
    with its share of the image (they sum to 1) and its colour in AnomalyMask; a classification
    model lists `anomaly` only when its mask has defect pixels.
    """
    anomalies = [
        {
            "Name": "background",
            "PixelAnomaly": {
                "TotalPercentageArea": 1.0 - detection.anomalous_fraction,
                "Color": MASK_COLORS["background"],
            },
        }
    ]
    if detection.classes:
        anomalies += [
            {"Name": c["name"], "PixelAnomaly": {"TotalPercentageArea": c["area"], "Color": c["color"].upper()}}
            for c in detection.classes
        ]
    elif detection.anomalous_fraction > 0:
        anomalies.append(
            {
                "Name": "anomaly",
                "PixelAnomaly": {"TotalPercentageArea": detection.anomalous_fraction, "Color": MASK_COLORS["anomaly"]},
            }
        )
    return {
        "DetectAnomalyResult": {
            "Source": {"Type": "direct"},
            "IsAnomalous": detection.is_anomalous,
            "Confidence": detection.confidence,
            "AnomalyMask": detection.mask_png,
            "Anomalies": anomalies,
        }
    }

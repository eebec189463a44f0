"""Amazon Lookout for Vision's DetectAnomalies answer: its mask format and its response, field for field."""

import io

import numpy as np
from PIL import Image as PILImage

# Lookout for Vision names each class of a mask and gives it a colour, which the response's
# `Anomalies` list repeats; Kenpin's models find one class. Background white, as in LFV's answers.
MASK_COLORS = {"background": "#FFFFFF", "anomaly": "#FF0000"}


def lfv_mask_png(mask: np.ndarray) -> bytes:
    """(H, W) bool mask -> PNG of the same size, each pixel the colour of its class.

    A two-colour palette image, which PNG stores at one bit per pixel: small to send, quick to
    encode. (engine.mask_png's 0/255 greyscale is the upload format, not LFV's colours.)
    """
    image = PILImage.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette([int(c[i : i + 2], 16) for c in MASK_COLORS.values() for i in (1, 3, 5)])
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def detect_anomalies_response(detection) -> dict:
    """Lookout for Vision's DetectAnomalies response for an inference.detection.Detection."""
    anomalies = [
        {
            "Name": "background",
            "PixelAnomaly": {
                "TotalPercentageArea": 1.0 - detection.anomalous_fraction,
                "Color": MASK_COLORS["background"],
            },
        }
    ]
    if detection.anomalous_fraction > 0:
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

"""PNG renderings of anomaly maps and masks for the browser and the API."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Colour ramp over calibrated scores: blue (clearly normal) through yellow to red (clearly
# anomalous), the threshold 0.5 falling on orange so that "past the threshold" reads as warm.
_STOPS = np.array([0.0, 0.3, 0.5, 0.75, 1.0], dtype=np.float32)
_COLOURS = np.array([[40, 60, 200], [60, 200, 220], [255, 170, 0], [255, 60, 0], [200, 0, 0]], dtype=np.float32)
# Opacity: transparent where the product looks normal, so the photo stays visible beneath.
_ALPHA_START, _ALPHA_FULL, _ALPHA_MAX = 0.25, 0.5, 170


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def heatmap_png(anomaly_map: np.ndarray, *, width: int, height: int) -> bytes:
    """RGBA overlay PNG (width x height) of a (h, w) map of calibrated scores in 0..1."""
    grid = np.clip(np.asarray(anomaly_map, dtype=np.float32), 0.0, 1.0)
    values = np.asarray(Image.fromarray(grid).resize((width, height), Image.Resampling.BILINEAR))
    rgb = np.stack([np.interp(values, _STOPS, _COLOURS[:, c]) for c in range(3)], axis=-1)
    alpha = np.clip((values - _ALPHA_START) / (_ALPHA_FULL - _ALPHA_START), 0.0, 1.0) * _ALPHA_MAX
    rgba = np.concatenate([rgb, alpha[..., None]], axis=-1).round().astype(np.uint8)  # (H, W, 4)
    return _png(Image.fromarray(rgba, mode="RGBA"))


def mask_png(mask: np.ndarray) -> bytes:
    """Single-channel PNG of a (H, W) bool mask: 255 on the defect, 0 elsewhere.

    The same format as the masks people upload (and decode_mask reads), so a predicted mask can
    be turned into a label without conversion.
    """
    return _png(Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, mode="L"))

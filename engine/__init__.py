"""Kenpin's anomaly-detection engine: plain Python, no Django, no torch at run time.

Typical use:

    result = train(train=[Sample(key, image, label), ...])
    files = result.model.to_files()          # store these bytes
    model = AnomalyModel.from_files(files)
    prediction = model.predict(decode_image(data))
"""

from engine.backbones import BACKBONES, DEFAULT_BACKBONE
from engine.images import ImageError, decode_image, decode_mask, probe_image, thumbnail_jpeg
from engine.metrics import metrics_at_threshold
from engine.model import AnomalyModel, Prediction
from engine.render import heatmap_png, mask_png
from engine.training import ImageResult, Sample, TrainingError, TrainResult, train

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "AnomalyModel",
    "ImageError",
    "ImageResult",
    "Prediction",
    "Sample",
    "TrainResult",
    "TrainingError",
    "decode_image",
    "decode_mask",
    "heatmap_png",
    "mask_png",
    "metrics_at_threshold",
    "probe_image",
    "thumbnail_jpeg",
    "train",
]

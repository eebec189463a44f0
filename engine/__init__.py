"""Kenpin's anomaly-detection engine: plain Python, no Django, no torch at run time.

Typical use:

    result = train(train=[Sample(key, image, label), ...])
    files = result.model.to_files()          # store these bytes
    model = AnomalyModel.from_files(files)
    prediction = model.predict(decode_image(data))

The names below are imported on first use (PEP 562), so that `import engine.images` in a web
process that only checks uploads loads numpy and Pillow, not onnxruntime and safetensors.
"""

from __future__ import annotations

import importlib

# name -> submodule that defines it
_EXPORTS = {
    "BACKBONES": "engine.backbones",
    "DEFAULT_BACKBONE": "engine.backbones",
    "ImageError": "engine.images",
    "decode_image": "engine.images",
    "decode_mask": "engine.images",
    "probe_image": "engine.images",
    "thumbnail_jpeg": "engine.images",
    "metrics_at_threshold": "engine.metrics",
    "AnomalyModel": "engine.model",
    "Prediction": "engine.model",
    "heatmap_png": "engine.render",
    "mask_png": "engine.render",
    "ImageResult": "engine.training",
    "Sample": "engine.training",
    "TrainingError": "engine.training",
    "TrainResult": "engine.training",
    "train": "engine.training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

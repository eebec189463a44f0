"""Trained models kept loaded in a worker process, so that they are read once, not per image."""

import threading
from collections import OrderedDict

from django.conf import settings

from training.models import ModelVersion

_lock = threading.Lock()
_models: "OrderedDict[tuple[int, str], object]" = OrderedDict()


def load_model(model_version: ModelVersion):
    """The engine model of a trained version, from this process's cache or from storage.

    Keyed by the weights file too, so that a version whose files changed is read again.
    At most KENPIN_MODELS_PER_WORKER stay loaded; the least recently used goes first.
    """
    from engine import AnomalyModel

    key = (model_version.pk, model_version.weights_file.name)
    with _lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
    files = {}
    for name, field in (("model.safetensors", model_version.weights_file), ("model.json", model_version.config_file)):
        with field.open("rb") as f:
            files[name] = f.read()
    model = AnomalyModel.from_files(files)
    with _lock:
        _models[key] = model
        _models.move_to_end(key)
        while len(_models) > settings.KENPIN_MODELS_PER_WORKER:
            _models.popitem(last=False)
    return model


def unload_model(model_version_id: int) -> None:
    with _lock:
        for key in [k for k in _models if k[0] == model_version_id]:
            del _models[key]


def loaded_model_ids() -> list[int]:
    with _lock:
        return [pk for pk, _ in _models]

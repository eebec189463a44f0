"""Trained models kept loaded in a worker process, so that they are read once, not per image.

Two kinds of residents: *hosted* models, pinned while their version is HOSTED (detect calls
must never wait for a load), and *cached* ones, kept for trial detections in a small LRU.
Pinned models do not count against the LRU, so a batch of trials never evicts a hosted model.
"""

import threading
from collections import OrderedDict

from django.conf import settings

from training.models import ModelVersion

_lock = threading.Lock()
_models: "OrderedDict[tuple[int, str], object]" = OrderedDict()
_hosted: dict[int, tuple[str, object]] = {}  # model version pk -> (weights file name, model)


def _read(model_version: ModelVersion):
    from engine import AnomalyModel

    files = {}
    for name, field in model_version.artifact_files.items():
        with field.open("rb") as f:
            files[name] = f.read()
    return AnomalyModel.from_files(files)


def load_model(model_version: ModelVersion):
    """The engine model of a trained version, from this process's memory or from storage.

    Keyed by the weights file too, so that a version whose files changed is read again.
    At most KENPIN_MODELS_PER_WORKER unpinned models stay loaded; the least recently used goes.
    """
    key = (model_version.pk, model_version.weights_file.name)
    with _lock:
        hosted = _hosted.get(model_version.pk)
        if hosted and hosted[0] == key[1]:
            return hosted[1]
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
    model = _read(model_version)
    with _lock:
        _models[key] = model
        _models.move_to_end(key)
        while len(_models) > settings.KENPIN_MODELS_PER_WORKER:
            _models.popitem(last=False)
    return model


def pin_model(model_version: ModelVersion):
    """Load a version for hosting and keep it until `unload_model`; returns the model.

    Reading happens outside the lock, so that loading one model never stalls detect calls on
    the others. Two threads pinning the same version at once both read it; the second wins,
    which costs one extra read and is harmless.
    """
    name = model_version.weights_file.name
    with _lock:
        hosted = _hosted.get(model_version.pk)
        if hosted and hosted[0] == name:
            return hosted[1]
        cached = _models.pop((model_version.pk, name), None)
    model = cached if cached is not None else _read(model_version)
    with _lock:
        _hosted[model_version.pk] = (name, model)
    return model


def hosted_model(model_version_id: int, weights_name: str):
    """The pinned model of a version, or None when this process does not host it (yet)."""
    with _lock:
        hosted = _hosted.get(model_version_id)
    if hosted and hosted[0] == weights_name:
        return hosted[1]
    return None


def unload_model(model_version_id: int) -> bool:
    """Forget a version in this process, hosted or cached; True if it was hosted here."""
    with _lock:
        for key in [k for k in _models if k[0] == model_version_id]:
            del _models[key]
        return _hosted.pop(model_version_id, None) is not None


def loaded_model_ids() -> list[int]:
    with _lock:
        return sorted({pk for pk, _ in _models} | set(_hosted))


def hosted_model_ids() -> list[int]:
    with _lock:
        return sorted(_hosted)

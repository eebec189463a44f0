"""The training worker's side of a model version: claim the queued row, beat its heartbeat, run
the engine with live progress, store the artifacts and per-image results, and write every
outcome to the row (training.tasks.train_model_version calls model_version_train)."""

import logging
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import close_old_connections, connection, transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import Invalid
from engine.images import ImageError, decode_image
from engine.render import heatmap_png
from projects.images import preview_size
from projects.masks import MaskClass, overlay_png
from projects.models import IMPLICIT_CLASS_COLOR, Label, project_files_prefix
from projects.selectors import image_mask_indices
from training.models import ModelVersion, ModelVersionImage, Status

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10

# Share of the progress bar each stage of the engine takes, in the order they usually run.
# The engine reports features, then fitting (the cross-validation folds and the final bank, the
# longest part), then evaluating.
STAGES = {"preparing": (0, 10), "features": (10, 55), "fitting": (55, 90), "evaluating": (90, 95), "saving": (95, 100)}


class TrainingCancelled(Exception):
    """The version's row left TRAINING while the worker was busy (cancelled, swept, deleted)."""


def _claim(model_version_id: int) -> bool:
    """Take the queued row for this worker. Returns False when there is nothing to do.

    A conditional UPDATE is race-free: of two deliveries of the same task, one claims the row.
    The other decides from the row: a training with a fresh heartbeat is running elsewhere;
    one with a stale heartbeat lost its worker and is reported as failed, never retried.
    """
    now = timezone.now()
    claimed = ModelVersion.objects.filter(pk=model_version_id, status=Status.QUEUED).update(
        status=Status.TRAINING,
        started_at=now,
        heartbeat_at=now,
        progress=0,
        stage="preparing",
        status_message="Training started.",
    )
    if claimed:
        return True
    mv = ModelVersion.objects.filter(pk=model_version_id).first()
    if mv and mv.status == Status.TRAINING and _is_stale(mv.heartbeat_at, now):
        _fail_stale(ModelVersion.objects.filter(pk=mv.pk, heartbeat_at=mv.heartbeat_at))
    return False


def _is_stale(heartbeat_at, now) -> bool:
    return heartbeat_at is None or heartbeat_at < now - timedelta(seconds=settings.KENPIN_STALE_AFTER)


STALE_MESSAGE = (
    "The training stopped: its worker has not reported for {minutes} minutes. It was probably "
    "stopped, killed or ran out of memory. Start the training again; if this happens again, give "
    "the training worker more memory or check its log."
)


def _fail_stale(rows) -> int:
    minutes = max(1, round(settings.KENPIN_STALE_AFTER / 60))
    return rows.filter(status=Status.TRAINING).update(
        status=Status.TRAINING_FAILED, status_message=STALE_MESSAGE.format(minutes=minutes), ended_at=timezone.now()
    )


def trainings_queued_too_long() -> list[int]:
    """Trainings queued for longer than KENPIN_STALE_AFTER, to be sent again (at most once per
    that time each: `heartbeat_at` notes the sending).

    Their message may be lost (dropped by a Redis that was killed, or held by a worker that died
    before starting it); claiming makes a second copy harmless.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.KENPIN_STALE_AFTER)
    lost = ModelVersion.objects.filter(status=Status.QUEUED).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    return [
        pk
        for pk in lost.values_list("pk", flat=True)
        if ModelVersion.objects.filter(pk=pk, status=Status.QUEUED).update(heartbeat_at=now)
    ]


def model_version_sweep_stale() -> int:
    """Declare failed every training whose worker died (no heartbeat for KENPIN_STALE_AFTER)."""
    cutoff = timezone.now() - timedelta(seconds=settings.KENPIN_STALE_AFTER)
    return _fail_stale(ModelVersion.objects.filter(heartbeat_at__lt=cutoff))


class _Progress:
    """Turns the engine's (stage, fraction) reports into the row's progress and heartbeat.

    Writes at most twice a second, and only while the row is still TRAINING: when someone
    cancelled the training, the update touches no row and TrainingCancelled stops the work.
    """

    def __init__(self, model_version_id: int):
        self.pk = model_version_id
        self.percent = 0
        self.stage = ""
        self.written_at = 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        low, high = STAGES.get(stage, (self.percent, self.percent))
        percent = max(self.percent, min(high, int(low + (high - low) * max(0.0, min(1.0, fraction)))))
        now = time.monotonic()
        if stage == self.stage and now - self.written_at < (0.5 if percent != self.percent else 5.0):
            return
        self.percent, self.stage, self.written_at = percent, stage, now
        updated = ModelVersion.objects.filter(pk=self.pk, status=Status.TRAINING).update(
            stage=stage, progress=percent, heartbeat_at=timezone.now()
        )
        if not updated:
            raise TrainingCancelled


@contextmanager
def _heartbeat(model_version_id: int):
    """Beat the row's heartbeat from a thread while the work runs, even inside long engine calls.

    The thread dies with the process, so a killed worker stops beating and the sweep notices.
    """
    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(HEARTBEAT_SECONDS):
                ModelVersion.objects.filter(pk=model_version_id, status=Status.TRAINING).update(
                    heartbeat_at=timezone.now()
                )
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{model_version_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _class_ids(model_version: ModelVersion) -> np.ndarray | None:
    """A lookup table from the project's class indices (mask pixels) to the engine's class ids
    1..K, in the order of the classes snapshotted at the start; None when the project had no
    classes (every mask pixel is the one implicit class)."""
    classes = model_version.options.get("classes") or []
    if not classes:
        return None
    lut = np.zeros(256, dtype=np.uint8)
    for k, c in enumerate(classes, start=1):
        lut[c["index"]] = k
    return lut


def _samples(model_version: ModelVersion):
    """Decode the snapshot's images and masks through default_storage (never a local path)."""
    from engine import Sample  # deferred for cost, as in model_version_train

    lut = _class_ids(model_version)
    samples = {"train": [], "test": []}
    rows = list(model_version.images.select_related("image"))
    for row in rows:
        if row.image is None or row.image.sha256 != row.sha256:
            raise Invalid(
                f"The image “{row.original_name or row.sha256[:12]}” was deleted after this training was "
                "started. Start a new training.",
                code="image_deleted",
            )
        try:
            with row.image.file.open("rb") as f:
                array = decode_image(f.read())
            # (H, W) uint8: the engine's class ids (a class deleted since the start is background),
            # or bool for a project without classes.
            mask = image_mask_indices(image=row.image)
            if mask is not None:
                mask = mask > 0 if lut is None else lut[mask]
        except (ImageError, OSError, ValueError) as exc:
            # Checked at upload, so the stored file changed since (storage fault, manual edit).
            raise Invalid(
                f"The image “{row.original_name or row.sha256[:12]}” can no longer be read "
                f"({getattr(exc, 'message', exc)}). Delete it from the dataset and train again.",
                code="image_unreadable",
            ) from exc
        samples[row.split].append(
            Sample(key=str(row.pk), image=array, label=int(row.label == Label.ANOMALY), mask=mask)
        )
    return samples, rows


def model_version_train(*, model_version_id: int) -> None:
    """Train one claimed model version end to end; every outcome is written to its row.

    Ends TRAINED with metrics, artifacts and per-image results, or TRAINING_FAILED with a
    message that says what to do. Never raises for a training that went wrong, because the
    row, not Celery, is the record.
    """
    # Deferred for cost: the engine's training loads onnxruntime (and torch to export a
    # backbone); the web process imports this module through training.tasks and needs neither.
    import engine

    if not _claim(model_version_id):
        return
    mv = ModelVersion.objects.select_related("project").get(pk=model_version_id)
    progress = _Progress(model_version_id)
    stored: list[str] = []
    try:
        with _heartbeat(model_version_id):
            progress("preparing", 0.0)
            samples, rows = _samples(mv)
            snapshot = mv.options.get("classes") or []
            result = engine.train(
                train=samples["train"],
                test=samples["test"] or None,
                classes=[c["name"] for c in snapshot],
                backbone=mv.backbone,
                progress=progress,
                seed=mv.options.get("seed", 0),
            )
            progress("saving", 0.0)
            prefix = f"{project_files_prefix(mv.project_id)}models/{mv.version}-{uuid.uuid4().hex[:8]}"
            files = result.model.to_files()
            weights = default_storage.save(f"{prefix}/model.safetensors", ContentFile(files["model.safetensors"]))
            stored.append(weights)
            config = default_storage.save(f"{prefix}/model.json", ContentFile(files["model.json"]))
            stored.append(config)
            graph = default_storage.save(f"{prefix}/backbone.onnx", ContentFile(files["backbone.onnx"]))
            stored.append(graph)
            by_key = {str(row.pk): row for row in rows}
            known = _known_classes(snapshot, result.model.classes)
            drawn = [MaskClass(index=k, name=c["name"], color=c["color"]) for k, c in enumerate(known, start=1)]
            segmentation = result.model.kind == "segmentation"
            for item in result.per_image:
                row = by_key[item.key]
                width, height = preview_size(row.image.width, row.image.height)
                row.score = item.score
                row.heatmap = default_storage.save(
                    f"{prefix}/heatmaps/{row.pk}.png",
                    ContentFile(heatmap_png(item.anomaly_map, width=width, height=height)),
                )
                stored.append(row.heatmap.name)
                if segmentation and item.class_map is not None and item.class_map.any():
                    row.predicted_mask = default_storage.save(
                        f"{prefix}/masks/{row.pk}.png",
                        ContentFile(overlay_png(item.class_map, drawn, size=(width, height))),
                    )
                    stored.append(row.predicted_mask.name)
            with transaction.atomic():
                ModelVersionImage.objects.bulk_update(
                    [by_key[i.key] for i in result.per_image], ["score", "heatmap", "predicted_mask"]
                )
                finished = ModelVersion.objects.filter(pk=mv.pk, status=Status.TRAINING).update(
                    status=Status.TRAINED,
                    status_message="Training completed.",
                    stage="",
                    progress=100,
                    ended_at=timezone.now(),
                    evaluation=result.evaluation,
                    metrics=result.metrics,
                    trained_threshold=result.model.threshold,
                    threshold=result.model.threshold,
                    kind=result.model.kind,
                    classes=known,
                    weights_file=weights,
                    config_file=config,
                    backbone_file=graph,
                )
                if not finished:
                    raise TrainingCancelled
    except TrainingCancelled:
        logger.info("training of model version %s stopped: its row left TRAINING", model_version_id)
        _discard(stored)
    except Exception as exc:
        _discard(stored)
        message = _failure_message(exc)
        if not isinstance(exc, (Invalid, engine.TrainingError)):
            logger.exception("training of model version %s failed", model_version_id)
        ModelVersion.objects.filter(pk=model_version_id, status=Status.TRAINING).update(
            status=Status.TRAINING_FAILED, status_message=message, ended_at=timezone.now()
        )
    finally:
        close_old_connections()


def _known_classes(snapshot: list[dict], names: list[str]) -> list[dict]:
    """The classes the model knows, [{"name", "color"}] in the engine's order: the project's at
    the start, or the one implicit class of a project that had none."""
    colours = {c["name"]: c["color"] for c in snapshot}
    return [{"name": name, "color": colours.get(name, IMPLICIT_CLASS_COLOR)} for name in names]


def _discard(names: list[str]) -> None:
    for name in names:
        default_storage.delete(name)


def _failure_message(exc: Exception) -> str:
    import engine  # deferred for cost, as in model_version_train

    if isinstance(exc, (Invalid, engine.TrainingError, ImageError)):
        return exc.message
    if isinstance(exc, MemoryError):
        return (
            "The training worker ran out of memory. Use fewer or smaller images, or give the worker "
            "more memory, then train again."
        )
    return (
        f"The training failed because of an internal error ({type(exc).__name__}: {exc}). "
        "Train again; if it fails again, report it with the training worker's log."
    )

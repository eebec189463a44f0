"""What the inference workers do: run trial detections, load (pin) and unload hosted models, and
answer detect calls with them. Called by inference.tasks; the web process never runs these.

A hosted model lives in the long-lived inference workers (`-Q inference`), loaded once and
pinned there (inference.runtime), never re-read per request. The web process never loads a
model: a detect call travels to an inference worker's detect threads (`detect_serve`, one per
core) on a Redis list, and its answer comes back on another (inference.handoff). Any number of
inference workers, on any machines, can serve any hosted model: each pins a HOSTED version at
its own start, or at its first call for it.
"""

import base64
import logging
import threading
import uuid
from contextlib import contextmanager
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone

from core.redis_errors import REDIS_UNREACHABLE
from core.timing import Stages
from engine.images import ImageError, decode_image, thumbnail_jpeg_of_array
from engine.render import heatmap_png
from inference import control, handoff, runtime
from inference.lfv import lfv_mask_png
from inference.models import TrialDetection, TrialImage, TrialStatus
from projects.images import preview_size
from projects.models import IMPLICIT_CLASS_COLOR, project_files_prefix
from training.models import ModelVersion, Status

logger = logging.getLogger(__name__)

HOSTING_READY_MESSAGE = "Hosted: ready for detect calls."


# --- Trial detections -----------------------------------------------------------------------------


def trial_run(*, trial_id: int) -> None:
    """Predict every image of a claimed trial; the outcome is written to its rows."""
    now = timezone.now()
    claimed = TrialDetection.objects.filter(pk=trial_id, status=TrialStatus.QUEUED).update(
        status=TrialStatus.RUNNING, started_at=now, heartbeat_at=now, progress=0
    )
    if not claimed:
        return  # another delivery runs it or ran it; the sweep handles a dead one
    trial = TrialDetection.objects.select_related("model_version").get(pk=trial_id)
    try:
        model = runtime.load_model(trial.model_version)
        images = list(trial.images.select_related("image"))
        for done, row in enumerate(images, start=1):
            _predict_row(row, model=model, threshold=trial.threshold)
            TrialDetection.objects.filter(pk=trial_id).update(
                progress=int(100 * done / len(images)), heartbeat_at=timezone.now()
            )
        failed = sum(1 for row in images if row.error)
        TrialDetection.objects.filter(pk=trial_id, status=TrialStatus.RUNNING).update(
            status=TrialStatus.COMPLETED,
            ended_at=timezone.now(),
            status_message=f"{failed} image(s) could not be read." if failed else "",
        )
    except Exception as exc:
        logger.exception("trial detection %s failed", trial_id)
        TrialDetection.objects.filter(pk=trial_id).update(
            status=TrialStatus.FAILED,
            ended_at=timezone.now(),
            status_message=f"The trial detection failed ({type(exc).__name__}: {exc}). Run it again; if it fails "
            "again, report it with the inference worker's log.",
        )
    finally:
        close_old_connections()


def _predict_row(row: TrialImage, *, model, threshold: float) -> None:
    source = row.file if row.file else (row.image.file if row.image else None)
    if source is None:
        row.error = "The image was deleted from the project before the trial ran."
    else:
        try:
            with source.open("rb") as f:
                array = decode_image(f.read())
            with in_flight.call():  # on this worker's cores too: a detect call beside it is not lone
                prediction = model.predict(array, threshold=threshold)
            width, height = preview_size(row.width, row.height)
            row.is_anomalous = prediction.is_anomalous
            row.confidence = prediction.confidence
            row.score = prediction.score
            row.anomalous_fraction = prediction.anomalous_fraction
            if prediction.familiarity is not None:
                row.unlike = prediction.familiarity.unlike
                row.unlike_message = prediction.familiarity.message
            prefix = f"{project_files_prefix(row.trial.project_id)}trials/{row.trial_id}/{uuid.uuid4().hex}"
            row.heatmap = default_storage.save(
                f"{prefix}-heat.png",
                ContentFile(heatmap_png(prediction.anomaly_map, width=width, height=height)),
            )
            if model.kind == "segmentation" and prediction.class_mask.any():
                colours = [c["color"] for c in _class_colours(row.trial.model_version_id, model.classes)]
                row.predicted_mask = default_storage.save(
                    f"{prefix}-mask.png", ContentFile(lfv_mask_png(prediction.class_mask, colours))
                )
        except ImageError as exc:
            row.error = exc.message
    row.save(
        update_fields=[
            "is_anomalous",
            "confidence",
            "score",
            "anomalous_fraction",
            "heatmap",
            "predicted_mask",
            "error",
            "unlike",
            "unlike_message",
        ]
    )


def trials_queued_too_long() -> list[int]:
    """Trials queued for longer than KENPIN_STALE_AFTER, to be sent again (at most once per that
    time each: `heartbeat_at` notes the sending).

    Their message may be lost: held by a worker that died before running it (a Redis broker
    shows it again only after its visibility timeout, hours), or dropped by a Redis that was
    killed. Claiming makes a second copy harmless.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.KENPIN_STALE_AFTER)
    lost = TrialDetection.objects.filter(status=TrialStatus.QUEUED).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    return [
        pk
        for pk in lost.values_list("pk", flat=True)
        if TrialDetection.objects.filter(pk=pk, status=TrialStatus.QUEUED).update(heartbeat_at=now)
    ]


def trial_sweep_stale() -> int:
    """Declare failed every running trial whose worker stopped beating."""
    cutoff = timezone.now() - timedelta(seconds=settings.KENPIN_STALE_AFTER)
    return TrialDetection.objects.filter(status=TrialStatus.RUNNING, heartbeat_at__lt=cutoff).update(
        status=TrialStatus.FAILED,
        ended_at=timezone.now(),
        status_message="The trial detection stopped: its worker stopped responding (stopped, killed or out of "
        "memory). Run it again.",
    )


# --- Hosting --------------------------------------------------------------------------------------


def model_version_host(*, model_version_id: int) -> None:
    """Load and pin a STARTING_HOSTING version in this worker, try it once, and mark it HOSTED.

    Runs in an inference worker (inference.tasks.host_model_version). A version that left
    STARTING_HOSTING meanwhile (stopped, or a redelivered task) is left alone.
    """
    mv = ModelVersion.objects.filter(pk=model_version_id, status=Status.STARTING_HOSTING).first()
    if mv is None or _pin(mv, expected=Status.STARTING_HOSTING) is None:
        return
    hosted = ModelVersion.objects.filter(pk=model_version_id, status=Status.STARTING_HOSTING).update(
        status=Status.HOSTED, status_message=HOSTING_READY_MESSAGE
    )
    if not hosted:
        runtime.unload_model(model_version_id)  # stopped while loading
    else:
        # The other inference workers (on this machine or others) load it now, not at their first call.
        control.load_everywhere(model_version_ids=[model_version_id])


def _pin(mv: ModelVersion, *, expected: str):
    """Pin `mv` in this worker and run one prediction; the model, or None when it cannot be
    loaded, after marking the version HOSTING_FAILED with the reason (if it is still `expected`).

    The prediction pays the first call's one-time costs (graph set-up, memory arenas), so that
    the first detect call is as fast as the others, and proves the model runs.
    """
    try:
        model = runtime.pin_model(mv)
        grey = np.full((256, 256, 3), 128, dtype=np.uint8)
        with in_flight.call():  # counted like a call, so that a detect call beside it is not lone
            model.predict(grey, threshold=mv.threshold)
            if in_flight.lone_threads > 1:  # and a lone call's session (CallsInFlight)
                model.predict(grey, threshold=mv.threshold, threads=in_flight.lone_threads)
        return model
    except Exception as exc:
        logger.exception("loading model version %s for hosting failed", mv.pk)
        runtime.unload_model(mv.pk)
        ModelVersion.objects.filter(pk=mv.pk, status=expected).update(
            status=Status.HOSTING_FAILED,
            status_message=f"The model could not be loaded ({type(exc).__name__}: {exc}). Start hosting again; "
            "if it fails again, train a new version or report it with the inference worker's log.",
        )
        return None


def model_version_unhost(*, model_version_id: int) -> None:
    """Unload a version from every inference worker, then STOPPING_HOSTING -> TRAINED."""
    control.unload_everywhere(model_version_ids=[model_version_id])
    runtime.unload_model(model_version_id)
    ModelVersion.objects.filter(pk=model_version_id, status=Status.STOPPING_HOSTING).update(
        status=Status.TRAINED, status_message="Hosting stopped."
    )


def model_versions_host_all_hosted(*, ids: list[int] | None = None) -> int:
    """Pin every HOSTED version (or those of `ids`) in this worker: at its start, or when another
    worker made them HOSTED, so that the first detect call here is fast.

    A version that no longer loads (its files lost, or trained by an older engine) becomes
    HOSTING_FAILED with the reason, rather than staying HOSTED and failing every call.
    """
    hosted = ModelVersion.objects.filter(status=Status.HOSTED)
    if ids is not None:
        hosted = hosted.filter(pk__in=ids)
    return sum(_pin(mv, expected=Status.HOSTED) is not None for mv in hosted)


def hosting_sweep_stale() -> int:
    """Declare failed every hosting that no inference worker picked up in KENPIN_STALE_AFTER."""
    cutoff = timezone.now() - timedelta(seconds=settings.KENPIN_STALE_AFTER)
    return ModelVersion.objects.filter(status=Status.STARTING_HOSTING, heartbeat_at__lt=cutoff).update(
        status=Status.HOSTING_FAILED,
        status_message="No inference worker loaded the model in time. Check that an inference worker is running "
        "(`make run` starts one), then start hosting again.",
    )


# --- Detection ------------------------------------------------------------------------------------


class CallsInFlight:
    """The predictions this worker is running (detect calls, trial images, hosting's warm-up), to
    give a lone detect call every detect thread's core.

    A worker runs one detect thread per core, each call on one thread, so that calls side by
    side use every core without running more threads than cores. A call that has the worker to
    itself (one client, or a pause between a line's photos) would leave the other cores idle:
    it gets `lone_threads` threads for its features and neighbour search instead. A call that
    starts beside another prediction gets the default (one). The choice is made once, when the
    call predicts: a lone call keeps its threads when another arrives mid-way, so for the rest
    of it (at most a prediction, ~40 ms) the two run more threads than cores, which slows them
    a little and is not worth a second choice mid-prediction.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.count = 0
        self.lone_threads = 1  # the worker's number of detect threads, once they are started

    @contextmanager
    def call(self):
        """Counts a call from its taking to its answer, or another prediction while it runs."""
        with self._lock:
            self.count += 1
        try:
            yield
        finally:
            with self._lock:
                self.count -= 1

    def threads(self) -> int | None:
        """Threads for a call about to predict: `lone_threads` when it is the only call in
        flight, else None (the engine's default, one)."""
        with self._lock:
            alone = self.count == 1
        return self.lone_threads if alone and self.lone_threads > 1 else None


in_flight = CallsInFlight()


def detect_serve(*, queues: list[str], worker: str, stop: threading.Event) -> None:
    """One detect thread of an inference worker: take calls from `queues` one at a time and
    answer them, until `stop` is set. A worker runs one such thread per core.

    A call that fails unexpectedly is logged and left unanswered, so that its caller answers
    503 at its timeout; the thread goes on with the next call.
    """
    while not stop.is_set():
        try:
            call = handoff.worker_take(queues=queues, worker=worker)
        except REDIS_UNREACHABLE as exc:
            logger.warning("detect thread cannot reach Redis (%s); trying again in a second", exc)
            stop.wait(1.0)
            continue
        if call is None:  # none came, or not ours to do (claimed by another worker, or given up)
            continue
        try:
            with in_flight.call():
                detect_in_worker(call=call)
        except Exception:
            logger.exception("detect call %s failed", call.call_id)
        finally:
            close_old_connections()  # as Celery does around each task: drop a broken connection


def detect_in_worker(*, call: handoff.Call) -> None:
    """The worker's side of model_version_detect: predict a claimed call, push the answer.

    `call.work` names the version by primary key and weights file, so that a model pinned under
    a reused primary key is never taken for another one.
    """
    stages = Stages(started=call.received)  # the worker's own time starts when the call arrives
    stages.mark("take")
    call_id, data = call.call_id, call.data
    model_version_id, weights, threshold = (call.work[k] for k in ("model_version", "weights", "threshold"))
    model = runtime.hosted_model(model_version_id, weights)
    if model is None:
        # Hosted since this worker started, or unloaded by a stop racing a start: pin it now.
        mv = ModelVersion.objects.filter(pk=model_version_id, weights_file=weights, status=Status.HOSTED).first()
        if mv is None:
            answer = {"error": "not_hosted", "message": "This model version is no longer hosted. Start it again."}
            return handoff.worker_answer(call_id=call_id, answer=answer)
        model = _pin(mv, expected=Status.HOSTED)
        if model is None:
            answer = {
                "error": "not_hosted",
                "message": f"Model version {mv.version} could not be loaded by the inference "
                "worker: it is now HOSTING_FAILED, and its status message says why.",
            }
            return handoff.worker_answer(call_id=call_id, answer=answer)
        stages.mark("load")
    try:
        array = decode_image(data)
    except ImageError as exc:
        return handoff.worker_answer(call_id=call_id, answer={"error": exc.code, "message": exc.message})
    stages.mark("decode")
    # The same answer on any number of threads (AnomalyModel.predict), only sooner.
    prediction = model.predict(array, threshold=threshold, threads=in_flight.threads())
    stages.mark("predict")
    classes = _class_colours(model_version_id, model.classes) if model.kind == "segmentation" else []
    class_mask = prediction.class_mask if classes else prediction.mask
    mask_png = base64.b64encode(lfv_mask_png(class_mask, [c["color"] for c in classes] or None)).decode()
    stages.mark("mask_png")
    # The Operations page keeps the latest anomalous photos (inference.operations): made here
    # from the decoded photo, it costs less than decoding the upload again in the web process.
    thumbnail = base64.b64encode(thumbnail_jpeg_of_array(array)).decode() if prediction.is_anomalous else ""
    if thumbnail:
        stages.mark("thumbnail")
    answer = {
        "is_anomalous": bool(prediction.is_anomalous),
        "confidence": float(prediction.confidence),
        "score": float(prediction.score),
        "anomalous_fraction": float(prediction.anomalous_fraction),
        "mask_png": mask_png,
        "thumbnail_jpeg": thumbnail,
        "inference_ms": stages.total_ms(),
        "stages": stages.ms,
        "classes": [{**c, "area": float(prediction.class_fractions.get(c["name"], 0.0))} for c in classes],
        # Kenpin's addition: whether the photo is unlike the training photos (None: cannot tell).
        "unlike": None if prediction.familiarity is None else prediction.familiarity.unlike,
        "unlike_message": "" if prediction.familiarity is None else prediction.familiarity.message,
    }
    handoff.worker_answer(call_id=call_id, answer=answer)


def _class_colours(model_version_id: int, names: list[str]) -> list[dict]:
    """[{"name", "color"}] of a segmentation model's classes, in its order, with the colours the
    version recorded (one small query: a class recoloured later keeps the version's colour)."""
    recorded = ModelVersion.objects.filter(pk=model_version_id).values_list("classes", flat=True).first() or []
    colours = {c["name"]: c["color"] for c in recorded}
    return [{"name": name, "color": colours.get(name, IMPLICIT_CLASS_COLOR)} for name in names]

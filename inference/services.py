import base64
import hashlib
import io
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import redis
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import close_old_connections, transaction
from django.db.models import Q
from django.utils import timezone
from PIL import Image as PILImage

from console.errors import Conflict, Invalid, Unavailable
from engine.images import ImageError, decode_image, probe_image, thumbnail_jpeg
from inference import transport
from inference.models import TrialDetection, TrialImage, TrialStatus, Verdict
from inference.runtime import load_model
from projects.models import Image, Project, Split
from projects.services import (
    EXTENSIONS,
    DuplicateImage,
    check_upload_size,
    dataset_add_image,
    preview_size,
    storage_delete_on_commit,
    upload_read,
)
from training.models import ModelVersion, Status

logger = logging.getLogger(__name__)

MAX_TRIAL_IMAGES = 2000


@dataclass
class TrialUpload:
    name: str
    data: bytes


def trial_upload_read(*, file) -> TrialUpload:
    """An uploaded file (Django UploadedFile) as a trial upload; TooLarge before reading a huge one."""
    return TrialUpload(name=file.name, data=upload_read(file=file))


@dataclass
class TrialCreated:
    trial: TrialDetection
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)


def trial_create(
    *,
    project: Project,
    model_version: ModelVersion,
    user,
    name: str = "",
    uploads: list[TrialUpload] = (),
    image_ids: list[int] = (),
) -> TrialCreated:
    """Create a trial detection of `model_version` on new uploads and/or project images, and queue it.

    Uploads that are not usable images are reported in `rejected` and left out; the trial
    needs at least one usable image. Project images are referenced, not copied.
    """
    from inference.tasks import run_trial_detection

    if model_version.project_id != project.pk:
        raise Invalid("That model version belongs to another project.", code="invalid_model")
    if not model_version.is_usable:
        raise Conflict(
            f"Model version {model_version.version} is not trained; pick a trained version.", code="not_trained"
        )
    if len(uploads) + len(image_ids) > MAX_TRIAL_IMAGES:
        raise Invalid(f"A trial detection takes at most {MAX_TRIAL_IMAGES} images.", code="too_many_images")
    project_images = list(Image.objects.filter(project=project, pk__in=image_ids))

    rejected = []
    accepted = []  # (name, bytes, info, sha256)
    seen = {image.sha256 for image in project_images}
    for upload in uploads:
        try:
            check_upload_size(upload.data)
            info = probe_image(upload.data)
        except ImageError as exc:
            rejected.append((upload.name, exc.message))
            continue
        except Invalid as exc:
            rejected.append((upload.name, exc.message))
            continue
        sha256 = hashlib.sha256(upload.data).hexdigest()
        if sha256 in seen:
            rejected.append((upload.name, "The same image is already in this trial."))
            continue
        seen.add(sha256)
        accepted.append((upload, info, sha256))
    if not accepted and not project_images:
        raise Invalid(
            "The trial has no usable image. " + " ".join(f"{n}: {r}" for n, r in rejected),
            code="no_images",
        )

    stored = []
    try:
        with transaction.atomic():
            trial = TrialDetection.objects.create(
                project=project,
                model_version=model_version,
                name=(name.strip() or f"Trial of version {model_version.version}")[:255],
                threshold=model_version.threshold,
                created_by=user,
            )
            rows = []
            prefix = f"projects/{project.pk}/trials/{trial.pk}"
            for upload, info, sha256 in accepted:
                key = uuid.uuid4().hex
                file_name = default_storage.save(
                    f"{prefix}/{key}.{EXTENSIONS.get(info.format, 'img')}", ContentFile(upload.data)
                )
                stored.append(file_name)
                thumb = default_storage.save(f"{prefix}/{key}-thumb.jpg", ContentFile(thumbnail_jpeg(upload.data)))
                stored.append(thumb)
                rows.append(
                    TrialImage(
                        trial=trial,
                        file=file_name,
                        thumbnail=thumb,
                        original_name=upload.name[:255],
                        sha256=sha256,
                        width=info.width,
                        height=info.height,
                    )
                )
            rows += [
                TrialImage(
                    trial=trial,
                    image=image,
                    original_name=image.original_name,
                    sha256=image.sha256,
                    width=image.width,
                    height=image.height,
                )
                for image in project_images
            ]
            TrialImage.objects.bulk_create(rows)
            transaction.on_commit(lambda: run_trial_detection.delay(trial.pk))
    except BaseException:
        for name_ in stored:
            default_storage.delete(name_)
        raise
    return TrialCreated(trial=trial, rejected=rejected)


def trial_run(*, trial_id: int) -> None:
    """Predict every image of a claimed trial; the outcome is written to its rows."""
    import engine

    now = timezone.now()
    claimed = TrialDetection.objects.filter(pk=trial_id, status=TrialStatus.QUEUED).update(
        status=TrialStatus.RUNNING, started_at=now, heartbeat_at=now, progress=0
    )
    if not claimed:
        return  # another delivery runs it or ran it; the sweep handles a dead one
    trial = TrialDetection.objects.select_related("model_version").get(pk=trial_id)
    try:
        model = load_model(trial.model_version)
        images = list(trial.images.select_related("image"))
        for done, row in enumerate(images, start=1):
            _predict_row(row, model=model, threshold=trial.threshold, engine=engine)
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


def _predict_row(row: TrialImage, *, model, threshold: float, engine) -> None:
    source = row.file if row.file else (row.image.file if row.image else None)
    if source is None:
        row.error = "The image was deleted from the project before the trial ran."
    else:
        try:
            with source.open("rb") as f:
                array = decode_image(f.read())
            prediction = model.predict(array, threshold=threshold)
            width, height = preview_size(row.width, row.height)
            row.is_anomalous = prediction.is_anomalous
            row.confidence = prediction.confidence
            row.score = prediction.score
            row.anomalous_fraction = prediction.anomalous_fraction
            row.heatmap = default_storage.save(
                f"projects/{row.trial.project_id}/trials/{row.trial_id}/{uuid.uuid4().hex}-heat.png",
                ContentFile(engine.heatmap_png(prediction.anomaly_map, width=width, height=height)),
            )
        except ImageError as exc:
            row.error = exc.message
    row.save(update_fields=["is_anomalous", "confidence", "score", "anomalous_fraction", "heatmap", "error"])


def trial_sweep_stale() -> int:
    """Declare failed every running trial whose worker stopped beating, and send again every
    trial queued for longer than KENPIN_STALE_AFTER (see below). Returns how many failed."""
    from inference.tasks import run_trial_detection

    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.KENPIN_STALE_AFTER)
    # Its message may be lost: held by a worker that died before running it (a Redis broker
    # shows it again only after its visibility timeout, hours), or dropped by a Redis that was
    # killed. Claiming makes a second copy harmless; `heartbeat_at` notes the last sending.
    lost = TrialDetection.objects.filter(status=TrialStatus.QUEUED).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    for pk in lost.values_list("pk", flat=True):
        if TrialDetection.objects.filter(pk=pk, status=TrialStatus.QUEUED).update(heartbeat_at=now):
            run_trial_detection.delay(pk)
    return TrialDetection.objects.filter(status=TrialStatus.RUNNING, heartbeat_at__lt=cutoff).update(
        status=TrialStatus.FAILED,
        ended_at=now,
        status_message="The trial detection stopped: its worker stopped responding (stopped, killed or out of "
        "memory). Run it again.",
    )


def trial_image_set_verdict(*, trial_image: TrialImage, verdict: str) -> TrialImage:
    """Record whether the prediction was right. `incorrect` flips the label the image will get."""
    if verdict not in Verdict.values:
        raise Invalid(f"Unknown verdict “{verdict}”: use correct, incorrect or unverified.", code="invalid_verdict")
    if trial_image.is_anomalous is None:
        raise Conflict("This image has no prediction to verify.", code="not_predicted")
    trial_image.verdict = verdict
    trial_image.save(update_fields=["verdict"])
    return trial_image


@dataclass
class AddReport:
    added: int = 0
    relabeled: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def trial_add_verified_to_dataset(*, trial: TrialDetection, user, split: str = Split.TRAIN) -> AddReport:
    """Put every verified image of the trial into the dataset with its verified label.

    Uploaded images are added as new images; project images get the verified label. Each
    image is marked as added, so doing this twice adds nothing twice.
    """
    report = AddReport()
    rows = trial.images.filter(added_to_dataset=False).exclude(verdict=Verdict.UNVERIFIED).select_related("image")
    for row in rows:
        label = row.verified_label
        if row.image is not None:
            Image.objects.filter(pk=row.image.pk).update(label=label)
            report.relabeled += 1
        elif row.file:
            with row.file.open("rb") as f:
                data = f.read()
            try:
                dataset_add_image(
                    project=trial.project, data=data, name=row.original_name, label=label, split=split, user=user
                )
                report.added += 1
            except DuplicateImage as exc:
                Image.objects.filter(pk=exc.existing.pk).update(label=label)
                report.relabeled += 1
            except Invalid as exc:
                report.skipped.append((row.original_name, exc.message))
                continue
        else:
            report.skipped.append((row.original_name, "The image was deleted."))
            continue
        TrialImage.objects.filter(pk=row.pk).update(added_to_dataset=True)
    return report


def trial_delete(*, trial: TrialDetection) -> None:
    names = [n for row in trial.images.all() for n in (row.file.name, row.thumbnail.name, row.heatmap.name)]
    with transaction.atomic():
        trial.delete()
        storage_delete_on_commit(names)


# --- Hosting and detection ----------------------------------------------------------------------
#
# A hosted model lives in the long-lived inference workers (`-Q inference`), loaded once and
# pinned there (inference.runtime), never re-read per request. The web process never loads a
# model: a detect call travels to an inference worker as a Celery task on the `inference` queue
# (a JSON message; the image's bytes wait in Redis beside it) and its answer comes back through
# the Redis result backend. Any number of inference workers, on any machines, can serve any
# hosted model: each pins a HOSTED version at its own start, or at its first call for it.

HOSTING_READY_MESSAGE = "Hosted: ready for detect calls."


def model_version_start_hosting(*, model_version: ModelVersion) -> ModelVersion:
    """TRAINED or HOSTING_FAILED -> STARTING_HOSTING, and queue the loading; an inference
    worker then makes it HOSTED (or HOSTING_FAILED with the reason).

    Starting a version that is already hosted or starting changes nothing (as LFV's StartModel).
    Raises Conflict for a version without a trained model or one that is stopping.
    """
    from inference.tasks import host_model_version

    started = ModelVersion.objects.filter(
        pk=model_version.pk, status__in=(Status.TRAINED, Status.HOSTING_FAILED)
    ).update(
        status=Status.STARTING_HOSTING,
        status_message="Waiting for an inference worker to load the model.",
        heartbeat_at=timezone.now(),
    )
    model_version.refresh_from_db()
    if started:
        transaction.on_commit(lambda: host_model_version.delay(model_version.pk))
    elif model_version.status not in (Status.STARTING_HOSTING, Status.HOSTED):
        raise Conflict(_hosting_refusal(model_version, action="start hosting"), code="not_hostable")
    return model_version


def model_version_stop_hosting(*, model_version: ModelVersion) -> ModelVersion:
    """HOSTED or STARTING_HOSTING -> STOPPING_HOSTING, and queue the unloading, after which the
    version is TRAINED again. A version whose hosting failed becomes TRAINED at once.

    Stopping a version that is not hosted changes nothing; one in training raises Conflict.
    """
    from inference.tasks import unhost_model_version

    stopping = ModelVersion.objects.filter(
        pk=model_version.pk, status__in=(Status.HOSTED, Status.STARTING_HOSTING)
    ).update(status=Status.STOPPING_HOSTING, status_message="Unloading the model from the inference workers.")
    failed = ModelVersion.objects.filter(pk=model_version.pk, status=Status.HOSTING_FAILED).update(
        status=Status.TRAINED, status_message="Hosting stopped."
    )
    model_version.refresh_from_db()
    if stopping or failed:
        # A failed hosting may still have left a copy in some worker: unload it there too.
        transaction.on_commit(lambda: unhost_model_version.delay(model_version.pk))
    elif not model_version.is_usable:
        raise Conflict(_hosting_refusal(model_version, action="stop hosting"), code="not_hosted")
    return model_version


def _hosting_refusal(model_version: ModelVersion, *, action: str) -> str:
    if model_version.status == Status.STOPPING_HOSTING:
        return f"Model version {model_version.version} is stopping; wait until it is TRAINED, then {action}."
    return (
        f"Model version {model_version.version} is {model_version.status}, not trained: only a trained "
        f"model can {action}."
    )


def model_version_host(*, model_version_id: int) -> None:
    """Load and pin a STARTING_HOSTING version in this worker, try it once, and mark it HOSTED.

    Runs in an inference worker (inference.tasks.host_model_version). A version that left
    STARTING_HOSTING meanwhile (stopped, or a redelivered task) is left alone.
    """
    from inference import runtime
    from inference.tasks import broadcast_load

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
        broadcast_load([model_version_id])


def _pin(mv: ModelVersion, *, expected: str):
    """Pin `mv` in this worker and run one prediction; the model, or None when it cannot be
    loaded, after marking the version HOSTING_FAILED with the reason (if it is still `expected`).

    The prediction pays the first call's one-time costs (graph set-up, memory arenas), so that
    the first detect call is as fast as the others, and proves the model runs.
    """
    from inference import runtime

    try:
        model = runtime.pin_model(mv)
        model.predict(np.full((256, 256, 3), 128, dtype=np.uint8), threshold=mv.threshold)
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
    from inference import runtime
    from inference.tasks import broadcast_unload

    broadcast_unload([model_version_id])
    runtime.unload_model(model_version_id)
    ModelVersion.objects.filter(pk=model_version_id, status=Status.STOPPING_HOSTING).update(
        status=Status.TRAINED, status_message="Hosting stopped."
    )


def model_versions_host_all_hosted() -> int:
    """Pin every HOSTED version in this worker (at its start, so the first detect call is fast).

    A version that no longer loads (its files lost, or trained by an older engine) becomes
    HOSTING_FAILED with the reason, rather than staying HOSTED and failing every call.
    """
    return sum(_pin(mv, expected=Status.HOSTED) is not None for mv in ModelVersion.objects.filter(status=Status.HOSTED))


def hosting_sweep_stale() -> int:
    """Declare failed every hosting that no inference worker picked up in KENPIN_STALE_AFTER."""
    cutoff = timezone.now() - timedelta(seconds=settings.KENPIN_STALE_AFTER)
    return ModelVersion.objects.filter(status=Status.STARTING_HOSTING, heartbeat_at__lt=cutoff).update(
        status=Status.HOSTING_FAILED,
        status_message="No inference worker loaded the model in time. Check that an inference worker is running "
        "(`make run` starts one), then start hosting again.",
    )


@dataclass(frozen=True)
class Detection:
    is_anomalous: bool
    confidence: float  # 0.5..1, confidence in the verdict `is_anomalous`
    score: float  # calibrated anomaly score, 0..1; the threshold decides
    anomalous_fraction: float  # 0..1 of the image's pixels
    mask_png: str  # base64 PNG of the image's size, coloured as MASK_COLORS
    inference_ms: float  # the worker's own time: decoding, predicting, encoding the mask


def model_version_detect(*, model_version: ModelVersion, data: bytes) -> Detection:
    """Detect anomalies in one encoded image with a HOSTED version, in an inference worker.

    The image's bytes wait in Redis beside a small task message (inference.transport says how,
    and how a call outlives the death of the worker that took it). Measured against the bytes
    base64-encoded inside the message, this saves most of the transport's cost: kombu encodes a
    message body again and copies it into its unacked set, so a 450 KB photo cost ~20 ms more
    per call (docs/benchmarks.md).

    Raises Conflict (409) when the version is not hosted, Invalid (400) for bytes that are not
    a usable image, TooLarge (413), Unavailable (503) when no inference worker answers within
    KENPIN_DETECT_TIMEOUT seconds or Redis or the broker cannot be reached.
    """
    from kombu.exceptions import OperationalError

    from inference.tasks import detect_anomalies

    if model_version.status != Status.HOSTED:
        raise Conflict(_not_hosted_advice(model_version), code="not_hosted")
    check_upload_size(data)
    if not data:
        raise Invalid("The request body is empty: send the image's bytes as the body.", code="empty")
    timeout = settings.KENPIN_DETECT_TIMEOUT
    args = [model_version.pk, model_version.weights_file.name, model_version.threshold]

    def send(call_id: str, expires: float) -> None:
        # `expires`: a call whose client has given up is dropped by the worker, not run late.
        # No publishing retries: a broker that is down is reported at once (503).
        detect_anomalies.apply_async(args=[*args, call_id], expires=expires, retry=False)

    try:
        answer = transport.call(data=data, timeout=timeout, send=send)
    except (redis.RedisError, OperationalError) as exc:
        logger.warning("detect call failed to reach Redis or the broker: %s", exc)
        raise Unavailable(
            "Kenpin cannot reach its Redis or its task broker right now, so no inference worker can take the "
            "call. Try again in a few seconds; if it keeps failing, check that Redis is running."
        ) from None
    if answer is None:
        raise Unavailable(
            f"No inference worker answered within {timeout} s. Check that an inference worker is "
            "running and not overloaded, then try again."
        )
    if "error" in answer:
        error = Conflict if answer["error"] == "not_hosted" else Invalid
        raise error(answer["message"], code=answer["error"])
    return Detection(**answer)


def _not_hosted_advice(model_version: ModelVersion) -> str:
    version = model_version.version
    if model_version.is_usable:
        return (
            f"Model version {version} is {model_version.status}, not HOSTED. Start it "
            f"(POST …/models/{version}/start) and wait until its status is HOSTED."
        )
    return (
        f"Model version {version} is {model_version.status}: it has no trained model to host. Detect with a "
        "trained version, or train a new one."
    )


def detect_in_worker(*, model_version_id: int, weights: str, threshold: float, call_id: str, worker: str) -> None:
    """The worker's side of model_version_detect: claim the call, predict, push the answer.

    `weights` names the version's weights file, so that a model pinned under a reused primary
    key is never taken for another one.
    """
    from inference import runtime

    started = time.perf_counter()
    data = transport.worker_take(call_id=call_id, worker=worker)
    if data is None:  # claimed by another worker, or the caller gave up before we got to it
        return
    model = runtime.hosted_model(model_version_id, weights)
    if model is None:
        # Hosted since this worker started, or unloaded by a stop racing a start: pin it now.
        mv = ModelVersion.objects.filter(pk=model_version_id, weights_file=weights, status=Status.HOSTED).first()
        if mv is None:
            answer = {"error": "not_hosted", "message": "This model version is no longer hosted. Start it again."}
            return transport.worker_answer(call_id=call_id, answer=answer)
        model = _pin(mv, expected=Status.HOSTED)
        if model is None:
            answer = {
                "error": "not_hosted",
                "message": f"Model version {mv.version} could not be loaded by the inference "
                "worker: it is now HOSTING_FAILED, and its status message says why.",
            }
            return transport.worker_answer(call_id=call_id, answer=answer)
    try:
        array = decode_image(data)
    except ImageError as exc:
        return transport.worker_answer(call_id=call_id, answer={"error": exc.code, "message": exc.message})
    prediction = model.predict(array, threshold=threshold)
    answer = {
        "is_anomalous": bool(prediction.is_anomalous),
        "confidence": float(prediction.confidence),
        "score": float(prediction.score),
        "anomalous_fraction": float(prediction.anomalous_fraction),
        "mask_png": base64.b64encode(lfv_mask_png(prediction.mask)).decode(),
        "inference_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    transport.worker_answer(call_id=call_id, answer=answer)


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

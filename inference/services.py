import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import close_old_connections, transaction
from django.utils import timezone

from console.errors import Conflict, Invalid
from engine.images import ImageError, decode_image, probe_image, thumbnail_jpeg
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
from training.models import ModelVersion

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
        raise Conflict(f"Model version {model_version.version} is not trained; pick a trained version.", code="not_trained")
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
                file_name = default_storage.save(f"{prefix}/{key}.{EXTENSIONS.get(info.format, 'img')}", ContentFile(upload.data))
                stored.append(file_name)
                thumb = default_storage.save(f"{prefix}/{key}-thumb.jpg", ContentFile(thumbnail_jpeg(upload.data)))
                stored.append(thumb)
                rows.append(TrialImage(
                    trial=trial, file=file_name, thumbnail=thumb, original_name=upload.name[:255], sha256=sha256,
                    width=info.width, height=info.height,
                ))
            rows += [
                TrialImage(trial=trial, image=image, original_name=image.original_name, sha256=image.sha256,
                           width=image.width, height=image.height)
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
    """Declare failed every running trial whose worker stopped beating."""
    cutoff = timezone.now() - timedelta(seconds=settings.KENPIN_STALE_AFTER)
    return TrialDetection.objects.filter(status=TrialStatus.RUNNING, heartbeat_at__lt=cutoff).update(
        status=TrialStatus.FAILED,
        ended_at=timezone.now(),
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
                dataset_add_image(project=trial.project, data=data, name=row.original_name, label=label, split=split, user=user)
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


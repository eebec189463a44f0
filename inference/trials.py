"""Trial detections as people ask for them: create one (queued for a worker), verify its
predictions, add the verified images to a dataset, delete it. The worker runs it: inference.worker."""

import hashlib
import uuid
from dataclasses import dataclass, field

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from core.errors import Conflict, Invalid, ids_check
from core.files import storage_delete_on_commit
from core.uploads import check_upload_size, upload_read
from engine.images import ImageError, probe_image, thumbnail_jpeg
from inference.models import TrialDetection, TrialImage, Verdict
from inference.selectors import trial_mask_classes
from inference.tasks import run_trial_detection
from projects.activity import activity_record, plural
from projects.classes import image_set_mask
from projects.images import EXTENSIONS, DuplicateImage, dataset_add_image
from projects.masks import color_png, decode_upload
from projects.models import (
    IMPLICIT_CLASS_INDEX,
    IMPLICIT_CLASS_NAME,
    Action,
    Image,
    Label,
    Project,
    Split,
    project_files_prefix,
)
from projects.selectors import anomaly_class_list, mask_classes
from training.models import ModelVersion

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
    if model_version.project_id != project.pk:
        raise Invalid("That model version belongs to another project.", code="invalid_model")
    if not model_version.is_usable:
        raise Conflict(
            f"Model version {model_version.version} is not trained; pick a trained version.", code="not_trained"
        )
    if len(uploads) + len(image_ids) > MAX_TRIAL_IMAGES:
        raise Invalid(f"A trial detection takes at most {MAX_TRIAL_IMAGES} images.", code="too_many_images")
    ids_check(image_ids)
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
            prefix = f"{project_files_prefix(project.pk)}trials/{trial.pk}"
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
            activity_record(
                project=project,
                user=user,
                action=Action.TRIAL_STARTED,
                summary=f"ran “{trial.name}” with version {model_version.version} on {plural(len(rows), 'photo')}",
                names=[row.original_name for row in rows],
                detail={"trial": trial.pk, "version": model_version.version},
            )
            transaction.on_commit(lambda: run_trial_detection.delay(trial.pk))
    except BaseException:
        for name_ in stored:
            default_storage.delete(name_)
        raise
    return TrialCreated(trial=trial, rejected=rejected)


def trial_image_set_verdict(*, trial_image: TrialImage, verdict: str, user=None) -> TrialImage:
    """Record whether the prediction was right. `incorrect` flips the label the image will get."""
    if verdict not in Verdict.values:
        raise Invalid(f"Unknown verdict “{verdict}”: use correct, incorrect or unverified.", code="invalid_verdict")
    if trial_image.is_anomalous is None:
        raise Conflict("This image has no prediction to verify.", code="not_predicted")
    with transaction.atomic():
        trial_image.verdict = verdict
        trial_image.save(update_fields=["verdict"])
        trial = trial_image.trial
        activity_record(
            project=trial.project,
            user=user,
            action=Action.TRIAL_VERIFIED,
            prefix="verified ",
            noun="prediction",
            suffix=f" of “{trial.name}”",
            names=[f"{trial_image.original_name}: {verdict}"],
            detail={"trial": trial.pk},
            fold_key=f"verify:{trial.pk}",
        )
    return trial_image


def trial_image_set_mask(*, trial_image: TrialImage, mask: bytes) -> TrialImage:
    """A person's correction of a trial image's mask (the painter's colour PNG, in the version's
    class colours): kept as the image's mask, which goes with it into the dataset. The image is an
    anomaly, so the verdict becomes correct (predicted anomalous) or incorrect (predicted normal)."""
    if trial_image.is_anomalous is None:
        raise Conflict("This image has no prediction yet; wait for the trial to finish.", code="not_predicted")
    if trial_image.added_to_dataset:
        raise Conflict("This image is already in the dataset: paint its mask on its page there.", code="added")
    check_upload_size(mask)
    classes = trial_mask_classes(trial=trial_image.trial)
    try:
        indices = decode_upload(
            mask,
            width=trial_image.width,
            height=trial_image.height,
            classes=classes,
            binary_class=classes[0] if len(classes) == 1 else None,
        )
    except ImageError as exc:
        raise Invalid(exc.message, code=exc.code) from exc
    name = default_storage.save(
        f"{project_files_prefix(trial_image.trial.project_id)}trials/{trial_image.trial_id}/{uuid.uuid4().hex}-mask.png",
        ContentFile(color_png(indices, classes)),
    )
    with transaction.atomic():
        old = trial_image.predicted_mask.name
        trial_image.predicted_mask = name
        trial_image.mask_painted = True
        trial_image.verdict = Verdict.CORRECT if trial_image.is_anomalous else Verdict.INCORRECT
        trial_image.save(update_fields=["predicted_mask", "mask_painted", "verdict"])
        storage_delete_on_commit([old])
    return trial_image


def _dataset_mask(row: TrialImage, project: Project) -> bytes | None:
    """A trial image's mask (predicted and accepted, or painted) redrawn for the project: each
    version class becomes the project's class of the same name; classes the project no longer has
    are left out. None when nothing is left."""
    classes = trial_mask_classes(trial=row.trial)
    with row.predicted_mask.open("rb") as f:
        ids = decode_upload(f.read(), width=row.width, height=row.height, classes=classes, binary_class=classes[0])
    by_name = {c.name.lower(): c.index for c in anomaly_class_list(project=project)}
    if not by_name:
        by_name = {IMPLICIT_CLASS_NAME: IMPLICIT_CLASS_INDEX}
    lut = np.zeros(256, dtype=np.uint8)
    for c in classes:
        lut[c.index] = by_name.get(c.name.lower(), 0)
    indices = lut[ids]
    return color_png(indices, mask_classes(project=project)) if indices.any() else None


@dataclass
class AddReport:
    added: int = 0
    relabeled: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def trial_add_verified_to_dataset(*, trial: TrialDetection, user, split: str = Split.TRAIN) -> AddReport:
    """Put every verified image of the trial into the dataset with its verified label.

    Uploaded images are added as new images; project images get the verified label. An anomaly
    with a mask (predicted by a segmentation version and verified correct, or painted) gets that
    mask as its label. Each image is marked as added, so doing this twice adds nothing twice.
    """
    report = AddReport()
    rows = trial.images.filter(added_to_dataset=False).exclude(verdict=Verdict.UNVERIFIED).select_related("image")
    for row in rows:
        label = row.verified_label
        try:
            mask = _dataset_mask(row, trial.project) if label == Label.ANOMALY and row.predicted_mask else None
        except (ImageError, OSError) as exc:
            report.skipped.append((row.original_name, f"Its mask cannot be read ({getattr(exc, 'message', exc)})."))
            continue
        if row.image is not None:
            Image.objects.filter(pk=row.image.pk).update(label=label)
            if mask is not None:
                try:
                    image_set_mask(image=Image.objects.get(pk=row.image.pk), mask=mask, user=user)
                except Invalid as exc:
                    report.skipped.append((row.original_name, f"Labelled, but its mask was not kept: {exc.message}"))
            report.relabeled += 1
        elif row.file:
            with row.file.open("rb") as f:
                data = f.read()
            try:
                dataset_add_image(
                    project=trial.project,
                    data=data,
                    name=row.original_name,
                    label=label,
                    split=split,
                    user=user,
                    record=False,
                    mask=mask,
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
    if report.added or report.relabeled:
        activity_record(
            project=trial.project,
            user=user,
            action=Action.TRIAL_ADDED,
            summary=f"added {plural(report.added, 'verified photo')} of “{trial.name}” to the "
            f"{'test' if split == Split.TEST else 'training'} dataset"
            + (f" and relabeled {plural(report.relabeled, 'image')}" if report.relabeled else ""),
            detail={"trial": trial.pk, "added": report.added, "relabeled": report.relabeled, "split": split},
        )
    return report


def trial_delete(*, trial: TrialDetection, user=None) -> None:
    names = [
        n
        for row in trial.images.all()
        for n in (row.file.name, row.thumbnail.name, row.heatmap.name, row.predicted_mask.name)
    ]
    with transaction.atomic():
        activity_record(
            project=trial.project,
            user=user,
            action=Action.TRIAL_DELETED,
            summary=f"deleted the trial “{trial.name}”",
            detail={"trial": trial.pk},
        )
        trial.delete()
        storage_delete_on_commit(names)

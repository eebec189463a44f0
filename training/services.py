"""Model versions as people ask for them: start a training (queued for a worker), cancel it, move
the threshold, delete. The work itself runs in a training worker: training.runner."""

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core.errors import Conflict, Invalid
from core.files import storage_delete_on_commit
from engine.backbones import BACKBONES, DEFAULT_BACKBONE
from projects.activity import activity_record
from projects.models import Action, Image, Label, Project
from projects.selectors import anomaly_class_list, training_readiness
from training.models import HOSTING_STATUSES, ModelVersion, ModelVersionImage, Status
from training.tasks import train_model_version

# How the console and the API describe the engine's backbones (engine.backbones names them).
BACKBONE_DESCRIPTIONS = {
    "lite0": "EfficientNet-Lite0 — fast, the default",
    "lite2": "EfficientNet-Lite2 — slower, sometimes more accurate",
}


def backbone_choices() -> list[tuple[str, str]]:
    """(name, description) of every backbone the engine offers, the default first."""
    names = sorted(BACKBONES, key=lambda name: name != DEFAULT_BACKBONE)
    return [(name, BACKBONE_DESCRIPTIONS.get(name, name)) for name in names]


def model_version_start_training(
    *, project: Project, user, description: str = "", backbone: str = DEFAULT_BACKBONE
) -> ModelVersion:
    """Create the next model version of `project` and queue its training.

    Freezes the labeled images of both datasets as the version's snapshot, so that later
    label edits never change what the version was trained and evaluated on. Unlabeled images
    are not used. Raises Invalid (what is missing) when the data is not enough.
    """
    if backbone not in BACKBONES:
        raise Invalid(f"Unknown backbone “{backbone}”; choose one of {', '.join(BACKBONES)}.", code="invalid_backbone")
    with transaction.atomic():
        # Locks the project row, so that two simultaneous starts get different numbers.
        Project.objects.select_for_update().get(pk=project.pk)
        readiness = training_readiness(project=project)
        if not readiness.ready:
            raise Invalid("Not enough labeled images to train. " + " ".join(readiness.missing), code="not_enough_data")
        number = (ModelVersion.objects.filter(project=project).aggregate(n=Max("version"))["n"] or 0) + 1
        mv = ModelVersion.objects.create(
            project=project,
            version=number,
            description=description.strip(),
            backbone=backbone,
            # The classes as they are now: a class renamed or deleted during training changes
            # nothing in what this version learns or how its results are drawn.
            options={
                "backbone": backbone,
                "seed": 0,
                "classes": [
                    {"index": c.index, "name": c.name, "color": c.color} for c in anomaly_class_list(project=project)
                ],
            },
            created_by=user,
            status_message="Waiting for a training worker.",
        )
        images = Image.objects.filter(project=project).exclude(label=Label.UNLABELED).select_related("dataset")
        ModelVersionImage.objects.bulk_create(
            ModelVersionImage(
                model_version=mv,
                image=image,
                sha256=image.sha256,
                original_name=image.original_name,
                split=image.dataset.split,
                label=image.label,
                has_mask=bool(image.mask),
            )
            for image in images
        )
        activity_record(
            project=project,
            user=user,
            action=Action.TRAINING_STARTED,
            summary=f"started training version {number} ({backbone})",
            detail={"version": number, "backbone": backbone, "description": mv.description[:200]},
        )
        transaction.on_commit(lambda: train_model_version.delay(mv.pk))
    return mv


def model_version_cancel_training(*, model_version: ModelVersion, user) -> None:
    """Stop a queued or running training. The worker notices at its next progress report."""
    with transaction.atomic():
        cancelled = ModelVersion.objects.filter(
            pk=model_version.pk, status__in=(Status.QUEUED, Status.TRAINING)
        ).update(status=Status.TRAINING_FAILED, status_message=f"Cancelled by {user}.", ended_at=timezone.now())
        if not cancelled:
            raise Conflict("This training has already ended.", code="not_training")
        activity_record(
            project=model_version.project,
            user=user,
            action=Action.TRAINING_CANCELLED,
            summary=f"cancelled the training of version {model_version.version}",
            detail={"version": model_version.version},
        )


def model_version_set_threshold(*, model_version: ModelVersion, threshold: float, user=None) -> ModelVersion:
    """Use another decision threshold (0..1 score units). Scores stay as trained; no retraining."""
    if not model_version.is_usable:
        raise Conflict("Only a trained model's threshold can be changed.", code="not_trained")
    if not (0.0 < threshold < 1.0):
        raise Invalid("The threshold must be between 0 and 1 (exclusive).", code="invalid_threshold")
    before = model_version.threshold
    with transaction.atomic():
        model_version.threshold = threshold
        model_version.save(update_fields=["threshold"])
        if before != threshold:
            activity_record(
                project=model_version.project,
                user=user,
                action=Action.THRESHOLD_CHANGED,
                summary=f"changed the threshold of version {model_version.version} "
                f"from {before if before is None else format(before, '.3f')} to {threshold:.3f}",
                detail={"version": model_version.version, "before": before, "after": threshold},
            )
    return model_version


def model_version_delete(*, model_version: ModelVersion, user=None) -> None:
    """Delete a version and its files. A hosted or starting model must be stopped first."""
    if model_version.status in HOSTING_STATUSES:
        raise Conflict("Stop hosting this model before deleting it.", code="hosted")
    names = [field.name for field in model_version.artifact_files.values()]
    names += list(model_version.images.values_list("heatmap", flat=True))
    names += list(model_version.images.values_list("predicted_mask", flat=True))
    with transaction.atomic():
        activity_record(
            project=model_version.project,
            user=user,
            action=Action.VERSION_DELETED,
            summary=f"deleted version {model_version.version}",
            detail={"version": model_version.version, "status": model_version.status},
        )
        model_version.delete()
        storage_delete_on_commit(names)

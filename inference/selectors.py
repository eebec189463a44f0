from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from django.db.models.fields.files import FieldFile
from django.http import Http404

from inference.models import TrialDetection, TrialImage, Verdict
from projects.models import Project


def trial_list(*, project: Project) -> QuerySet[TrialDetection]:
    """The project's trials, newest first, with how many images each has, flagged and verified."""
    return (
        TrialDetection.objects.filter(project=project)
        .select_related("model_version")
        .annotate(
            n_images=Count("images"),
            n_anomalous=Count("images", filter=Q(images__is_anomalous=True)),
            n_verified=Count("images", filter=~Q(images__verdict=Verdict.UNVERIFIED)),
        )
    )


def trial_get(*, project: Project, trial_id: int) -> TrialDetection:
    trial = TrialDetection.objects.filter(project=project, pk=trial_id).select_related("model_version").first()
    if trial is None:
        raise Http404
    return trial


def trial_image_get(*, trial: TrialDetection, trial_image_id: int) -> TrialImage:
    row = trial.images.filter(pk=trial_image_id).select_related("image").first()
    if row is None:
        raise Http404
    return row


TRIAL_FILTERS = {
    "anomalous": Q(is_anomalous=True),
    "normal": Q(is_anomalous=False),
    "unverified": Q(verdict=Verdict.UNVERIFIED, is_anomalous__isnull=False),
    "verified": ~Q(verdict=Verdict.UNVERIFIED),
}


def trial_images(*, trial: TrialDetection, show: str = "") -> QuerySet[TrialImage]:
    """The trial's images, optionally only those `show` names (a key of TRIAL_FILTERS)."""
    images = trial.images.select_related("image")
    return images.filter(TRIAL_FILTERS[show]) if show in TRIAL_FILTERS else images


def trial_image_file(*, trial_image: TrialImage, kind: str) -> FieldFile | None:
    """The photo, thumbnail or heatmap of a trial image: its own upload, or the project image it uses."""
    if kind == "heatmap":
        return trial_image.heatmap
    own = trial_image.file if kind == "file" else trial_image.thumbnail
    if own:
        return own
    if trial_image.image is None:
        return None
    return trial_image.image.file if kind == "file" else trial_image.image.thumbnail


@dataclass(frozen=True)
class TrialSummary:
    total: int
    anomalous: int
    normal: int
    unreadable: int
    verified: int
    ready_to_add: int  # verified, not yet added to the dataset


def trial_summary(*, trial: TrialDetection) -> TrialSummary:
    counts = trial.images.aggregate(
        total=Count("id"),
        anomalous=Count("id", filter=Q(is_anomalous=True)),
        normal=Count("id", filter=Q(is_anomalous=False)),
        unreadable=Count("id", filter=~Q(error="")),
        verified=Count("id", filter=~Q(verdict=Verdict.UNVERIFIED)),
        ready_to_add=Count("id", filter=~Q(verdict=Verdict.UNVERIFIED) & Q(added_to_dataset=False)),
    )
    return TrialSummary(**counts)

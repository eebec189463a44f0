from django.db.models import QuerySet
from django.http import Http404

from inference.models import TrialDetection, TrialImage
from projects.models import Project


def trial_list(*, project: Project) -> QuerySet[TrialDetection]:
    return TrialDetection.objects.filter(project=project).select_related("model_version")


def trial_get(*, project: Project, trial_id: int) -> TrialDetection:
    trial = TrialDetection.objects.filter(project=project, pk=trial_id).select_related("model_version").first()
    if trial is None:
        raise Http404
    return trial


def trial_image_list(*, trial: TrialDetection) -> QuerySet[TrialImage]:
    return trial.images.order_by("id")


def trial_image_get(*, trial: TrialDetection, trial_image_id: int) -> TrialImage:
    row = trial.images.filter(pk=trial_image_id).select_related("image").first()
    if row is None:
        raise Http404
    return row

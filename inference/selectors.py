from django.db.models import QuerySet
from django.http import Http404

from inference.models import TrialDetection
from projects.models import Project


def trial_list(*, project: Project) -> QuerySet[TrialDetection]:
    return TrialDetection.objects.filter(project=project).select_related("model_version")


def trial_get(*, project: Project, trial_id: int) -> TrialDetection:
    trial = TrialDetection.objects.filter(project=project, pk=trial_id).select_related("model_version").first()
    if trial is None:
        raise Http404
    return trial

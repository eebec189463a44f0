"""Hosting as people ask for it: start and stop a model version's hosting (an inference worker
then loads or unloads it: inference.worker, which also says where hosted models live), and delete a
project with its hosted models.
"""

from django.db import transaction
from django.utils import timezone

from core.errors import Conflict
from inference import control
from inference.tasks import host_model_version, unhost_model_version
from projects import projects
from projects.activity import activity_record
from projects.models import Action, Project
from training.models import HOSTING_STARTABLE, HOSTING_STATUSES, HOSTING_STOPPABLE, ModelVersion, Status


def model_version_start_hosting(*, model_version: ModelVersion, user=None) -> ModelVersion:
    """TRAINED or HOSTING_FAILED -> STARTING_HOSTING, and queue the loading; an inference
    worker then makes it HOSTED (or HOSTING_FAILED with the reason).

    Starting a version that is already hosted or starting changes nothing (as LFV's StartModel).
    Raises Conflict for a version without a trained model or one that is stopping.
    """
    with transaction.atomic():
        started = ModelVersion.objects.filter(pk=model_version.pk, status__in=HOSTING_STARTABLE).update(
            status=Status.STARTING_HOSTING,
            status_message="Waiting for an inference worker to load the model.",
            heartbeat_at=timezone.now(),
        )
        if started:
            activity_record(
                project=model_version.project,
                user=user,
                action=Action.HOSTING_STARTED,
                summary=f"started hosting version {model_version.version}",
                detail={"version": model_version.version},
            )
    model_version.refresh_from_db()
    if started:
        transaction.on_commit(lambda: host_model_version.delay(model_version.pk))
    elif model_version.status not in (Status.STARTING_HOSTING, Status.HOSTED):
        raise Conflict(_hosting_refusal(model_version, action="start hosting"), code="not_hostable")
    return model_version


def model_version_stop_hosting(*, model_version: ModelVersion, user=None) -> ModelVersion:
    """HOSTED or STARTING_HOSTING -> STOPPING_HOSTING, and queue the unloading, after which the
    version is TRAINED again. A version whose hosting failed becomes TRAINED at once.

    Stopping a version that is not hosted changes nothing; one in training raises Conflict.
    """
    with transaction.atomic():
        stopping = ModelVersion.objects.filter(pk=model_version.pk, status__in=HOSTING_STOPPABLE).update(
            status=Status.STOPPING_HOSTING, status_message="Unloading the model from the inference workers."
        )
        failed = ModelVersion.objects.filter(pk=model_version.pk, status=Status.HOSTING_FAILED).update(
            status=Status.TRAINED, status_message="Hosting stopped."
        )
        if stopping:
            activity_record(
                project=model_version.project,
                user=user,
                action=Action.HOSTING_STOPPED,
                summary=f"stopped hosting version {model_version.version}",
                detail={"version": model_version.version},
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


def model_versions_held(*, project: Project) -> list[int]:
    """The project's versions that an inference worker may hold: hosted, loading, unloading, or
    failed to host (a failed loading may have left a copy behind)."""
    held = (*HOSTING_STATUSES, Status.HOSTING_FAILED)
    return list(ModelVersion.objects.filter(project=project, status__in=held).values_list("pk", flat=True))


def project_delete(*, project: Project) -> None:
    """Delete a project (projects.projects.project_delete: its rows, then its stored files) and,
    once that is committed, unload its models from every inference worker.

    Here rather than in projects, which knows nothing of hosting: the console and the API call
    this one.
    """
    held = model_versions_held(project=project)
    with transaction.atomic():
        projects.project_delete(project=project)
        transaction.on_commit(lambda: control.unload_everywhere(model_version_ids=held))

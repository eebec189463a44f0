import threading

from celery import shared_task
from celery.signals import worker_ready
from celery.worker.control import control_command, inspect_command

from inference import services


@shared_task(acks_late=True)
def run_trial_detection(trial_id: int) -> None:
    services.trial_run(trial_id=trial_id)


@shared_task
def sweep_stale_trials() -> int:
    return services.trial_sweep_stale()


# Acknowledged at once: if the worker dies mid-call, its caller has given up (and gets a 503);
# running the call again later would answer no one.
@shared_task(acks_late=False)
def detect_anomalies(model_version_id: int, weights: str, threshold: float, image_key: str) -> dict:
    return services.detect_in_worker(
        model_version_id=model_version_id, weights=weights, threshold=threshold, image_key=image_key
    )


@shared_task(acks_late=True)
def host_model_version(model_version_id: int) -> None:
    services.model_version_host(model_version_id=model_version_id)


@shared_task(acks_late=True)
def unhost_model_version(model_version_id: int) -> None:
    services.model_version_unhost(model_version_id=model_version_id)


@shared_task
def sweep_stale_hosting() -> int:
    return services.hosting_sweep_stale()


def broadcast_unload(model_version_ids: list[int]) -> None:
    """Ask every worker to drop these models (fire and forget: a worker that is down holds nothing)."""
    from console.celery import app

    if model_version_ids:
        app.control.broadcast("kenpin_unload_models", arguments={"model_version_ids": list(model_version_ids)})


# A remote-control command rather than a task: a task reaches one worker, this reaches all.
@control_command(args=[("model_version_ids", list)], signature="<model_version_ids>")
def kenpin_unload_models(state, model_version_ids: list[int]) -> dict:
    from inference import runtime

    for pk in model_version_ids:
        runtime.unload_model(int(pk))
    return {"ok": f"unloaded {len(model_version_ids)} model version(s)"}


@inspect_command()
def kenpin_hosted_models(state) -> dict:
    """Which model versions this worker holds pinned for hosting.

    `app.control.broadcast("kenpin_hosted_models", reply=True)` asks every worker.
    """
    from inference import runtime

    return {"hosted": runtime.hosted_model_ids()}


@worker_ready.connect
def _host_hosted_models(sender, **kwargs):
    """An inference worker that (re)starts loads the HOSTED models before detect calls need them.

    In a thread, so that the worker takes calls at once; a call arriving before its model is
    loaded pins the model itself (services.detect_in_worker).
    """
    queues = {queue.name for queue in sender.task_consumer.queues} if sender.task_consumer else set()
    if "inference" in queues:
        threading.Thread(target=_host_all, name="kenpin-host-on-start", daemon=True).start()


def _host_all() -> None:
    from django.db import connection

    try:
        services.model_versions_host_all_hosted()
    finally:
        connection.close()  # this thread's own connection

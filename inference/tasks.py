import threading

from celery import shared_task
from celery.signals import worker_ready
from django.db import connection

from inference import control, worker

# Registers the remote-control commands in every worker that imports its tasks.
__all__ = ["control"]


@shared_task(acks_late=True)
def run_trial_detection(trial_id: int) -> None:
    worker.trial_run(trial_id=trial_id)


@shared_task
def sweep_stale_trials() -> int:
    return worker.trial_sweep_stale()


# Acknowledged at once: if the worker dies mid-call, its caller has given up (and gets a 503);
# running the call again later would answer no one.
@shared_task(acks_late=False)
def detect_anomalies(model_version_id: int, weights: str, threshold: float, image_key: str) -> dict:
    return worker.detect_in_worker(
        model_version_id=model_version_id, weights=weights, threshold=threshold, image_key=image_key
    )


@shared_task(acks_late=True)
def host_model_version(model_version_id: int) -> None:
    worker.model_version_host(model_version_id=model_version_id)


@shared_task(acks_late=True)
def unhost_model_version(model_version_id: int) -> None:
    worker.model_version_unhost(model_version_id=model_version_id)


@shared_task
def sweep_stale_hosting() -> int:
    return worker.hosting_sweep_stale()


@worker_ready.connect
def _host_hosted_models(sender, **kwargs):
    """An inference worker that (re)starts loads the HOSTED models before detect calls need them.

    In a thread, so that the worker takes calls at once; a call arriving before its model is
    loaded pins the model itself (inference.worker.detect_in_worker).
    """
    queues = {queue.name for queue in sender.task_consumer.queues} if sender.task_consumer else set()
    if "inference" in queues:
        threading.Thread(target=_host_all, name="kenpin-host-on-start", daemon=True).start()


def _host_all() -> None:
    try:
        worker.model_versions_host_all_hosted()
    finally:
        connection.close()  # this thread's own connection

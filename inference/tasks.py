import threading

from celery import shared_task
from celery.signals import task_received, worker_ready
from celery.worker.control import control_command, inspect_command
from django.conf import settings

from inference import services, transport


@shared_task(acks_late=True)
def run_trial_detection(trial_id: int) -> None:
    services.trial_run(trial_id=trial_id)


@shared_task
def sweep_stale_trials() -> int:
    return services.trial_sweep_stale()


# Acknowledged at once, and its result is not stored: the answer travels through
# inference.transport, whose caller notices a worker that died holding the call and sends it again.
@shared_task(bind=True, acks_late=False, ignore_result=True)
def detect_anomalies(self, model_version_id: int, weights: str, threshold: float, call_id: str) -> None:
    services.detect_in_worker(
        model_version_id=model_version_id,
        weights=weights,
        threshold=threshold,
        call_id=call_id,
        worker=self.request.hostname,
    )


@task_received.connect
def _note_detect_received(sender, request, **kwargs):
    """A detect call waiting in this worker for a free thread: its caller can see who holds it."""
    if request.name == detect_anomalies.name:
        transport.worker_received(
            call_id=request.args[3], worker=sender.hostname, timeout=settings.KENPIN_DETECT_TIMEOUT
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


def broadcast_load(model_version_ids: list[int]) -> None:
    """Ask every inference worker to load newly hosted versions, so no first call waits for a load."""
    from console.celery import app

    app.control.broadcast("kenpin_load_models", arguments={"model_version_ids": list(model_version_ids)})


def broadcast_unload(model_version_ids: list[int]) -> None:
    """Ask every worker to drop these models (fire and forget: a worker that is down holds nothing)."""
    from console.celery import app

    if model_version_ids:
        app.control.broadcast("kenpin_unload_models", arguments={"model_version_ids": list(model_version_ids)})


# A remote-control command rather than a task: a task reaches one worker, this reaches all.
@control_command(args=[("model_version_ids", list)], signature="<model_version_ids>")
def kenpin_load_models(state, model_version_ids: list[int]) -> dict:
    """Load newly hosted versions in this worker too (in a thread: a control command must be quick)."""
    if "inference" in _queues(state.consumer):
        threading.Thread(target=_host_all, name="kenpin-host-broadcast", daemon=True).start()
    return {"ok": "loading"}


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
    transport.worker_heartbeat(sender.hostname)  # any worker may hold a detect call (a test's own queue)
    if "inference" in _queues(sender):
        threading.Thread(target=_host_all, name="kenpin-host-on-start", daemon=True).start()


def _queues(consumer) -> set[str]:
    return {queue.name for queue in consumer.task_consumer.queues} if consumer and consumer.task_consumer else set()


def _host_all() -> None:
    from django.db import connection

    try:
        services.model_versions_host_all_hosted()
    finally:
        connection.close()  # this thread's own connection

import threading

from celery import shared_task
from celery.signals import task_received, worker_ready
from celery.worker.control import control_command
from django.conf import settings
from django.db import connection

from inference import control, handoff, operations, runtime, worker

# Registers the remote-control commands in every worker that imports its tasks.
__all__ = ["control"]


@shared_task(acks_late=True)
def run_trial_detection(trial_id: int) -> None:
    worker.trial_run(trial_id=trial_id)


@shared_task
def prune_detection_records() -> int:
    return operations.detection_records_prune()


@shared_task
def sweep_stale_trials() -> int:
    # A queued trial whose message may be lost is sent again (claiming makes a copy harmless).
    for trial_id in worker.trials_queued_too_long():
        run_trial_detection.delay(trial_id)
    return worker.trial_sweep_stale()


# Acknowledged at once, and its result is not stored: the answer travels through
# inference.handoff, whose caller notices a worker that died holding the call and sends it again.
@shared_task(bind=True, acks_late=False, ignore_result=True)
def detect_anomalies(self, model_version_id: int, weights: str, threshold: float, call_id: str) -> None:
    worker.detect_in_worker(
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
        handoff.worker_received(call_id=request.args[3], worker=sender.hostname, timeout=settings.KENPIN_DETECT_TIMEOUT)


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
    handoff.worker_heartbeat(sender.hostname)  # any worker may hold a detect call (a test's own queue)
    if "inference" in _queues(sender):
        threading.Thread(target=_host_all, name="kenpin-host-on-start", daemon=True).start()


# A remote-control command (control.load_everywhere sends it): a task would reach one worker.
@control_command(args=[("model_version_ids", list)], signature="<model_version_ids>")
def kenpin_load_models(state, model_version_ids: list[int]) -> dict:
    """Load newly hosted versions in this worker too, unless it holds them already (the worker
    that made them HOSTED does). In a thread: a control command must answer at once."""
    held = set(runtime.hosted_model_ids())
    missing = [int(pk) for pk in model_version_ids if int(pk) not in held]
    if missing and "inference" in _queues(state.consumer):
        threading.Thread(target=_host_all, args=(missing,), name="kenpin-host-broadcast", daemon=True).start()
    return {"ok": f"loading {len(missing)} model version(s)"}


def _queues(consumer) -> set[str]:
    return {queue.name for queue in consumer.task_consumer.queues} if consumer and consumer.task_consumer else set()


def _host_all(ids: list[int] | None = None) -> None:
    try:
        worker.model_versions_host_all_hosted(ids=ids)
    finally:
        connection.close()  # this thread's own connection

import os
import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down
from celery.worker.control import control_command
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


@shared_task(acks_late=True)
def host_model_version(model_version_id: int) -> None:
    worker.model_version_host(model_version_id=model_version_id)


@shared_task(acks_late=True)
def unhost_model_version(model_version_id: int) -> None:
    worker.model_version_unhost(model_version_id=model_version_id)


@shared_task
def sweep_stale_hosting() -> int:
    return worker.hosting_sweep_stale()


# Set when the worker begins its warm shutdown: its detect threads take no new call.
_detect_stop = threading.Event()


@worker_ready.connect
def _serve_detect_calls(sender, **kwargs):
    """An inference worker that (re)starts loads the HOSTED models before detect calls need them,
    and starts its detect threads: as many as its concurrency (one per core by default), each
    taking one call at a time from the Redis lists of inference.handoff, beside Celery's pool
    (which runs trials and hosting).

    The models load in a thread, so that the worker takes calls at once; a call arriving before
    its model is loaded pins the model itself (inference.worker.detect_in_worker).
    """
    queues = handoff.detect_queues(_queues(sender))
    if not queues:
        return
    handoff.worker_heartbeat(sender.hostname)
    worker.in_flight.lone_threads = min(sender.controller.concurrency, _usable_cores())
    if "inference" in queues:
        threading.Thread(target=_host_all, name="kenpin-host-on-start", daemon=True).start()
    for n in range(sender.controller.concurrency):
        threading.Thread(
            target=worker.detect_serve,
            kwargs={"queues": queues, "worker": sender.hostname, "stop": _detect_stop},
            name=f"kenpin-detect-{n}",
            daemon=True,
        ).start()


@worker_shutting_down.connect
def _stop_detect_calls(**kwargs):
    # A call in progress is not waited for: if the process exits under it, its caller sees the
    # worker's alive key go and sends the call again.
    _detect_stop.set()


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


def _usable_cores() -> int:
    # The cores this process may run on (a container's or taskset's CPU set), not the machine's:
    # a lone call on more threads than those would only take turns with itself.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _queues(consumer) -> set[str]:
    return {queue.name for queue in consumer.task_consumer.queues} if consumer and consumer.task_consumer else set()


def _host_all(ids: list[int] | None = None) -> None:
    try:
        worker.model_versions_host_all_hosted(ids=ids)
    finally:
        connection.close()  # this thread's own connection

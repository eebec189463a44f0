import logging
import threading

from celery import shared_task
from celery.signals import worker_ready

from training import runner

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def train_model_version(model_version_id: int) -> None:
    runner.model_version_train(model_version_id=model_version_id)


@shared_task
def sweep_stale_trainings() -> int:
    # A queued training whose message may be lost is sent again (claiming makes a copy harmless).
    for model_version_id in runner.trainings_queued_too_long():
        train_model_version.delay(model_version_id)
    return runner.model_version_sweep_stale()


@worker_ready.connect
def _prepare_backbone(sender, **kwargs):
    """A training worker exports the default backbone's graph at start (a few seconds, once per
    machine), so that the first training does not wait for it. In a thread: the worker takes
    tasks meanwhile. (Inference needs none: a saved model carries its graph.)"""
    queues = {queue.name for queue in sender.task_consumer.queues} if sender.task_consumer else set()
    if "training" in queues:
        threading.Thread(target=_ensure_default_graph, name="kenpin-prepare-backbone", daemon=True).start()


def _ensure_default_graph() -> None:
    from engine.backbones import BACKBONES, DEFAULT_BACKBONE
    from engine.features import ensure_graph

    try:
        ensure_graph(BACKBONES[DEFAULT_BACKBONE])
    except Exception:  # the training that needs it reports the failure in words
        logger.exception("preparing the %s backbone graph failed", DEFAULT_BACKBONE)

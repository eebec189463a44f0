"""Tasks through Redis to real worker processes and back."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import make_project
from tests.workers import Worker
from training.models import ModelVersion, Status
from training.tasks import sweep_stale_trainings, train_model_version

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_a_task_travels_through_redis_to_a_worker_and_back(celery_worker, user, settings):
    project = make_project(owner=user)
    mv = ModelVersion.objects.create(
        project=project, version=1, backbone="lite0", status=Status.TRAINING,
        heartbeat_at=timezone.now() - timedelta(seconds=settings.KENPIN_STALE_AFTER + 60),
    )
    assert sweep_stale_trainings.delay().get(timeout=60) == 1
    mv.refresh_from_db()
    assert mv.status == Status.TRAINING_FAILED


def test_a_training_whose_worker_is_killed_is_reported_failed(user, settings, monkeypatch):
    """kill -9 the worker mid-training: the row stops beating and the sweep fails it."""
    from tests.training.test_services import _fill
    from training.services import model_version_start_training

    project = make_project(owner=user)
    _fill(project)
    # Send the task to a queue only the doomed worker reads, not to the shared worker.
    monkeypatch.setattr(train_model_version, "delay", lambda *args: None)
    mv = model_version_start_training(project=project, user=user)
    queue = f"doomed-{mv.pk}-{time.monotonic_ns()}"
    worker = Worker(queues=queue, pool="solo", concurrency=1).wait_ready()
    try:
        train_model_version.apply_async(args=[mv.pk], queue=queue)
        deadline = time.monotonic() + 60
        while ModelVersion.objects.get(pk=mv.pk).status == Status.QUEUED:
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.01)
        worker.kill()
    finally:
        worker.stop()
    mv.refresh_from_db()
    assert mv.status == Status.TRAINING, f"the training ended before the kill: {mv.status_message}"
    settings.KENPIN_STALE_AFTER = 1
    time.sleep(1.5)
    assert sweep_stale_trainings() == 1
    mv.refresh_from_db()
    assert mv.status == Status.TRAINING_FAILED and "has not reported" in mv.status_message

"""Tasks through Redis to real worker processes and back."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import fill_project, make_project
from tests.workers import Worker
from training.models import ModelVersion, Status
from training.tasks import sweep_stale_trainings, train_model_version

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_a_task_travels_through_redis_to_a_worker_and_back(celery_worker, user, settings):
    project = make_project(owner=user)
    mv = ModelVersion.objects.create(
        project=project,
        version=1,
        backbone="lite0",
        status=Status.TRAINING,
        heartbeat_at=timezone.now() - timedelta(seconds=settings.KENPIN_STALE_AFTER + 60),
    )
    assert sweep_stale_trainings.delay().get(timeout=60) == 1
    mv.refresh_from_db()
    assert mv.status == Status.TRAINING_FAILED


def test_a_training_whose_worker_is_killed_is_reported_failed_and_trains_again(
    user, settings, monkeypatch, celery_worker
):
    """kill -9 the worker mid-training: the row stops beating, the sweep fails it, and the
    project trains again."""
    from training.services import model_version_start_training

    project = make_project(owner=user)
    fill_project(project)
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

    monkeypatch.undo()  # the next training goes to the session's worker, as usual
    settings.KENPIN_STALE_AFTER = 120
    again = _wait_until_final(model_version_start_training(project=project, user=user), timeout=600)
    assert again.version == mv.version + 1 and again.status == Status.TRAINED, again.status_message


def _wait_until_final(mv, timeout=240):
    deadline = time.monotonic() + timeout
    while True:
        mv.refresh_from_db()
        if mv.is_final:
            return mv
        assert time.monotonic() < deadline, f"still {mv.status} at {mv.progress}% after {timeout} s"
        time.sleep(0.25)


def test_a_training_runs_in_the_worker_and_ends_trained_with_its_record(celery_worker, user, cookies_folder):
    from django.core.files.storage import default_storage

    from engine.images import decode_image
    from inference.runtime import load_model
    from projects.images import dataset_add_image
    from training.services import model_version_start_training

    project = make_project(owner=user)
    cookies = cookies_folder
    for label, folder, count in (("normal", "normal", 20), ("anomaly", "anomaly", 10)):
        for path in sorted((cookies / folder).iterdir())[:count]:
            dataset_add_image(project=project, data=path.read_bytes(), name=path.name, label=label)
    mv = _wait_until_final(model_version_start_training(project=project, user=user, description="first"))

    assert mv.status == Status.TRAINED, mv.status_message
    assert (mv.progress, mv.evaluation, mv.threshold) == (100, "cross_validation", mv.trained_threshold)
    assert 0 < mv.training_seconds < 240
    metrics = mv.metrics
    assert {
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "average_precision",
        "confusion_matrix",
        "roc_curve",
        "pr_curve",
    } <= set(metrics)
    matrix = metrics["confusion_matrix"]
    assert (matrix["tp"] + matrix["fn"], matrix["tn"] + matrix["fp"]) == (10, 20)
    assert metrics["roc_auc"] > 0.8  # real cookies: cracks are visible
    rows = list(mv.images.all())
    assert len(rows) == 30 and all(r.score is not None and default_storage.exists(r.heatmap.name) for r in rows)
    unseen = sorted((cookies / "anomaly").iterdir())[-1]
    prediction = load_model(mv).predict(decode_image(unseen.read_bytes()), threshold=mv.threshold)
    assert 0 <= prediction.score <= 1 and 0.5 <= prediction.confidence <= 1


def test_a_training_on_an_unreadable_image_fails_with_its_name(celery_worker, user):
    from training.services import model_version_start_training

    project = make_project(owner=user)
    fill_project(project)
    broken = project.images.first()
    with open(broken.file.path, "wb") as f:  # the test's local storage; a storage fault
        f.write(b"\x89PNG garbage")
    mv = _wait_until_final(model_version_start_training(project=project, user=user))
    assert mv.status == Status.TRAINING_FAILED
    assert mv.status_message.startswith(f"The image “{broken.original_name}” can no longer be read")
    assert not mv.weights_file

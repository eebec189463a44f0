from datetime import timedelta

import pytest
from django.utils import timezone

from console.errors import Conflict, Invalid
from projects.services import images_set_label
from tests.factories import add_image, make_project
from training.models import ModelVersion, Status
from training.selectors import training_readiness
from training.services import (
    _claim,
    model_version_cancel_training,
    model_version_set_threshold,
    model_version_start_training,
    model_version_sweep_stale,
)

pytestmark = pytest.mark.django_db


def _fill(project, *, normal=20, anomaly=10, split="train"):
    for _ in range(normal):
        add_image(project, label="normal", split=split)
    for _ in range(anomaly):
        add_image(project, label="anomaly", split=split)


def test_readiness_says_exactly_what_is_missing(user):
    project = make_project(owner=user)
    _fill(project, normal=19, anomaly=3)
    readiness = training_readiness(project=project)
    assert not readiness.ready
    assert readiness.missing == [
        "Add 1 more normal image to the training dataset (it has 19, training needs at least 20).",
        "Add 7 more anomalous images to the training dataset (it has 3, training needs at least 10).",
    ]


def test_readiness_with_a_test_dataset_uses_lookout_for_visions_rules(user):
    project = make_project(owner=user)
    _fill(project, normal=10, anomaly=0)
    _fill(project, normal=10, anomaly=9, split="test")
    assert training_readiness(project=project).missing == [
        "Add 1 more anomalous image to the test dataset (it has 9, training needs at least 10)."
    ]
    add_image(project, label="anomaly", split="test")
    assert training_readiness(project=project).ready


def test_starting_a_training_freezes_the_labeled_images(user, django_capture_on_commit_callbacks):
    project = make_project(owner=user)
    _fill(project, normal=21)
    unlabeled = add_image(project)
    with django_capture_on_commit_callbacks() as callbacks:
        mv = model_version_start_training(project=project, user=user, description="first")
    assert len(callbacks) == 1  # the task is sent only once the rows are committed
    assert (mv.version, mv.status, mv.backbone) == (1, Status.QUEUED, "lite0")
    snapshot = {row.image_id: row.label for row in mv.images.all()}
    assert len(snapshot) == 31 and unlabeled.pk not in snapshot
    relabeled = next(pk for pk, label in snapshot.items() if label == "normal")
    images_set_label(project=project, image_ids=[relabeled], label="anomaly")
    assert mv.images.get(image_id=relabeled).label == "normal"
    with django_capture_on_commit_callbacks():
        assert model_version_start_training(project=project, user=user).version == 2


def test_it_refuses_to_train_on_too_little_data(user):
    project = make_project(owner=user)
    _fill(project, normal=5, anomaly=1)
    with pytest.raises(Invalid) as caught:
        model_version_start_training(project=project, user=user)
    assert "Add 15 more normal images" in caught.value.message
    assert not ModelVersion.objects.exists()


def test_it_refuses_an_unknown_backbone(user):
    with pytest.raises(Invalid):
        model_version_start_training(project=make_project(owner=user), user=user, backbone="resnet9000")


def _version(project, **fields):
    return ModelVersion.objects.create(
        project=project, version=ModelVersion.objects.count() + 1, backbone="lite0", **fields
    )


def test_a_task_claims_its_row_once(user):
    mv = _version(make_project(owner=user))
    assert _claim(mv.pk) is True
    assert _claim(mv.pk) is False  # a second delivery of the same task
    mv.refresh_from_db()
    assert mv.status == Status.TRAINING and mv.started_at and mv.heartbeat_at


def test_a_redelivered_task_fails_a_training_whose_worker_died(user, settings):
    settings.KENPIN_STALE_AFTER = 60
    project = make_project(owner=user)
    fresh = _version(project, status=Status.TRAINING, heartbeat_at=timezone.now())
    dead = _version(project, status=Status.TRAINING, heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert _claim(fresh.pk) is False and _claim(dead.pk) is False
    fresh.refresh_from_db(), dead.refresh_from_db()
    assert fresh.status == Status.TRAINING
    assert dead.status == Status.TRAINING_FAILED and "has not reported" in dead.status_message


def test_the_sweep_fails_only_trainings_without_a_recent_heartbeat(user, settings):
    settings.KENPIN_STALE_AFTER = 60
    project = make_project(owner=user)
    old = timezone.now() - timedelta(minutes=2)
    dead = _version(project, status=Status.TRAINING, heartbeat_at=old)
    alive = _version(project, status=Status.TRAINING, heartbeat_at=timezone.now())
    done = _version(project, status=Status.TRAINED, heartbeat_at=old)
    assert model_version_sweep_stale() == 1
    for mv in (dead, alive, done):
        mv.refresh_from_db()
    assert (dead.status, alive.status, done.status) == (Status.TRAINING_FAILED, Status.TRAINING, Status.TRAINED)
    assert "ran out of memory" in dead.status_message and dead.ended_at


def test_cancelling_ends_a_queued_or_running_training_only(user):
    project = make_project(owner=user)
    mv = _version(project, status=Status.TRAINING)
    model_version_cancel_training(model_version=mv, user=user)
    mv.refresh_from_db()
    assert mv.status == Status.TRAINING_FAILED and mv.status_message == f"Cancelled by {user}."
    with pytest.raises(Conflict):
        model_version_cancel_training(model_version=mv, user=user)


def test_the_threshold_of_a_trained_version_can_move_between_0_and_1(user):
    mv = _version(make_project(owner=user), status=Status.TRAINED, threshold=0.5, trained_threshold=0.5)
    model_version_set_threshold(model_version=mv, threshold=0.62)
    mv.refresh_from_db()
    assert (mv.threshold, mv.trained_threshold) == (0.62, 0.5)
    for bad in (0.0, 1.0, -1, 2):
        with pytest.raises(Invalid):
            model_version_set_threshold(model_version=mv, threshold=bad)
    with pytest.raises(Conflict):
        model_version_set_threshold(model_version=_version(mv.project, status=Status.TRAINING), threshold=0.4)

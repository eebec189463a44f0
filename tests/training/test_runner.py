from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import make_project, make_version
from training.models import Status
from training.runner import _claim, model_version_sweep_stale

pytestmark = pytest.mark.django_db


def test_a_task_claims_its_row_once(user):
    mv = make_version(make_project(owner=user))
    assert _claim(mv.pk) is True
    assert _claim(mv.pk) is False  # a second delivery of the same task
    mv.refresh_from_db()
    assert mv.status == Status.TRAINING and mv.started_at and mv.heartbeat_at


def test_a_redelivered_task_fails_a_training_whose_worker_died(user, settings):
    settings.KENPIN_STALE_AFTER = 60
    project = make_project(owner=user)
    fresh = make_version(project, status=Status.TRAINING, heartbeat_at=timezone.now())
    dead = make_version(project, status=Status.TRAINING, heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert _claim(fresh.pk) is False and _claim(dead.pk) is False
    fresh.refresh_from_db(), dead.refresh_from_db()
    assert fresh.status == Status.TRAINING
    assert dead.status == Status.TRAINING_FAILED and "has not reported" in dead.status_message


def test_the_sweep_fails_only_trainings_without_a_recent_heartbeat(user, settings):
    settings.KENPIN_STALE_AFTER = 60
    project = make_project(owner=user)
    old = timezone.now() - timedelta(minutes=2)
    dead = make_version(project, status=Status.TRAINING, heartbeat_at=old)
    alive = make_version(project, status=Status.TRAINING, heartbeat_at=timezone.now())
    done = make_version(project, status=Status.TRAINED, heartbeat_at=old)
    assert model_version_sweep_stale() == 1
    for mv in (dead, alive, done):
        mv.refresh_from_db()
    assert (dead.status, alive.status, done.status) == (Status.TRAINING_FAILED, Status.TRAINING, Status.TRAINED)
    assert "ran out of memory" in dead.status_message and dead.ended_at

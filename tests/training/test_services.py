import pytest

from core.errors import Conflict, Invalid
from projects.images import images_set_label
from tests.factories import add_image, fill_project, make_project, make_version
from training.models import ModelVersion, Status
from training.services import (
    model_version_cancel_training,
    model_version_set_threshold,
    model_version_start_training,
)

pytestmark = pytest.mark.django_db


def test_starting_a_training_freezes_the_labeled_images(user, django_capture_on_commit_callbacks):
    project = make_project(owner=user)
    fill_project(project, normal=21)
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
    fill_project(project, normal=5, anomaly=1)
    with pytest.raises(Invalid) as caught:
        model_version_start_training(project=project, user=user)
    assert "Add 15 more normal images" in caught.value.message
    assert not ModelVersion.objects.exists()


def test_it_refuses_an_unknown_backbone(user):
    with pytest.raises(Invalid):
        model_version_start_training(project=make_project(owner=user), user=user, backbone="resnet9000")


def test_cancelling_ends_a_queued_or_running_training_only(user):
    project = make_project(owner=user)
    mv = make_version(project, status=Status.TRAINING)
    model_version_cancel_training(model_version=mv, user=user)
    mv.refresh_from_db()
    assert mv.status == Status.TRAINING_FAILED and mv.status_message == f"Cancelled by {user}."
    with pytest.raises(Conflict):
        model_version_cancel_training(model_version=mv, user=user)


def test_the_threshold_of_a_trained_version_can_move_between_0_and_1(user):
    mv = make_version(make_project(owner=user), status=Status.TRAINED, threshold=0.5, trained_threshold=0.5)
    model_version_set_threshold(model_version=mv, threshold=0.62)
    mv.refresh_from_db()
    assert (mv.threshold, mv.trained_threshold) == (0.62, 0.5)
    for bad in (0.0, 1.0, -1, 2):
        with pytest.raises(Invalid):
            model_version_set_threshold(model_version=mv, threshold=bad)
    with pytest.raises(Conflict):
        model_version_set_threshold(model_version=make_version(mv.project, status=Status.TRAINING), threshold=0.4)

import pytest
from django.core.files.storage import default_storage

from core.errors import Invalid, TooLarge
from projects.images import (
    DuplicateImage,
    dataset_add_image,
    dataset_delete_test,
    images_delete,
    images_move,
    images_set_label,
)
from projects.models import Image, Label, Split
from projects.selectors import dataset_counts
from tests.factories import add_image, image_bytes, make_project

pytestmark = pytest.mark.django_db


def test_it_stores_an_image_with_its_facts_and_a_thumbnail(user):
    project = make_project(owner=user)
    data = image_bytes(width=640, height=480, fmt="JPEG")
    image = dataset_add_image(project=project, data=data, name="../../etc/passwd.jpg", label="normal", user=user)
    assert (image.width, image.height, image.format, image.size_bytes) == (640, 480, "JPEG", len(data))
    assert image.original_name == "passwd.jpg"
    assert image.file.name.startswith(f"projects/{project.pk}/images/") and ".." not in image.file.name
    with image.file.open("rb") as f:
        assert f.read() == data
    assert default_storage.exists(image.thumbnail.name)
    assert image.dataset.split == Split.TRAIN and image.label == Label.NORMAL


def test_it_reports_a_duplicate_upload_and_stores_nothing_twice(user):
    project = make_project(owner=user)
    data = image_bytes()
    first = dataset_add_image(project=project, data=data, name="a.png", user=user)
    files_before = default_storage.listdir(f"projects/{project.pk}/images")[1]
    with pytest.raises(DuplicateImage) as caught:
        dataset_add_image(project=project, data=data, name="b.png", user=user)
    assert caught.value.existing == first
    assert default_storage.listdir(f"projects/{project.pk}/images")[1] == files_before
    assert Image.objects.count() == 1


def test_the_same_image_may_go_into_two_projects(user):
    data = image_bytes()
    dataset_add_image(project=make_project(owner=user), data=data)
    dataset_add_image(project=make_project(owner=user), data=data)
    assert Image.objects.count() == 2


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "empty"),
        (b"this is a text file, not an image", "not_an_image"),
        (image_bytes(width=300, height=200, fmt="JPEG", seed=1)[:-2000], "corrupt"),
        (image_bytes(width=9000, height=40, seed=2), "too_large"),
        (image_bytes(width=20, height=20, seed=3), "too_small"),
    ],
    ids=["empty", "not-an-image", "truncated-jpeg", "too-wide", "too-small"],
)
def test_it_rejects_an_unusable_file_with_a_reason_and_keeps_what_is_stored(user, data, code):
    project = make_project(owner=user)
    kept = add_image(project)
    with pytest.raises(Invalid) as caught:
        dataset_add_image(project=project, data=data, name="bad")
    assert caught.value.code == code and caught.value.message
    assert list(Image.objects.all()) == [kept]
    assert len(default_storage.listdir(f"projects/{project.pk}/images")[1]) == 1


def test_it_refuses_a_file_over_the_upload_limit(user, settings):
    settings.KENPIN_MAX_UPLOAD_BYTES = 1000
    with pytest.raises(TooLarge):
        dataset_add_image(project=make_project(owner=user), data=image_bytes(width=200, height=200))


def test_a_mask_labels_the_image_an_anomaly_and_must_match_its_size(user):
    project = make_project(owner=user)
    mask = image_bytes(width=64, height=48, mode="L")
    image = dataset_add_image(project=project, data=image_bytes(width=64, height=48), mask=mask)
    assert image.label == Label.ANOMALY and image.mask
    with pytest.raises(Invalid) as caught:
        dataset_add_image(project=project, data=image_bytes(width=64, height=48), mask=image_bytes(width=32, height=32))
    assert caught.value.code == "wrong_size"


def test_it_labels_moves_and_deletes_only_the_projects_own_images(user, django_capture_on_commit_callbacks):
    project, other = make_project(owner=user), make_project(owner=user)
    mine = [add_image(project) for _ in range(3)]
    theirs = add_image(other)
    ids = [i.pk for i in mine] + [theirs.pk]
    assert images_set_label(project=project, image_ids=ids, label="anomaly") == 3
    assert images_move(project=project, image_ids=ids, split="test") == 3
    counts = dataset_counts(project=project)
    assert (counts["test"].anomaly, counts["train"].total) == (3, 0)
    names = [mine[0].file.name, mine[0].thumbnail.name]
    with django_capture_on_commit_callbacks(execute=True):
        assert images_delete(project=project, image_ids=[mine[0].pk, theirs.pk]) == 1
    assert not any(default_storage.exists(n) for n in names)
    theirs.refresh_from_db()
    assert theirs.label == Label.UNLABELED


def test_removing_the_test_dataset_returns_its_images_to_training(user):
    project = make_project(owner=user)
    image = add_image(project, split="test", label="normal")
    dataset_delete_test(project=project)
    image.refresh_from_db()
    assert image.dataset.split == Split.TRAIN
    assert not project.datasets.filter(split=Split.TEST).exists()

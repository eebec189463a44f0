"""The removal of a deleted project's files: the task alone, then through a real worker."""

import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage

from projects.models import project_files_prefix
from projects.projects import project_delete
from projects.tasks import project_delete_files
from tests.factories import add_image, image_bytes, make_project


@pytest.mark.django_db
def test_it_removes_the_projects_folder_and_nothing_else(user):
    doomed, kept = make_project(owner=user), make_project(owner=user)
    images = [add_image(doomed), add_image(doomed, label="anomaly", mask=image_bytes(mode="L", seed=7))]
    other = add_image(kept)
    assert project_delete_files(doomed.pk) == 5  # two images, their thumbnails, one mask
    assert not any(default_storage.exists(image.file.name) for image in images)
    assert not (Path(settings.MEDIA_ROOT) / project_files_prefix(doomed.pk)).exists()  # no empty folders
    assert default_storage.exists(other.file.name) and default_storage.exists(other.thumbnail.name)
    assert project_delete_files(doomed.pk) == 0  # a redelivered task finds nothing left


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_deleted_projects_files_are_removed_by_a_worker(celery_worker, user):
    project = make_project(owner=user)
    image = add_image(project)
    project_delete(project=project)
    deadline = time.monotonic() + 30
    while default_storage.exists(image.file.name) or default_storage.exists(image.thumbnail.name):
        assert time.monotonic() < deadline, celery_worker.tail()
        time.sleep(0.1)

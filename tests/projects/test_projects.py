import pytest
from django.core.files.storage import default_storage

from core.errors import Conflict, Invalid
from projects.models import Image, Membership, Project, Role, Split
from projects.projects import member_remove, member_set, project_create, project_delete
from tests.factories import UserFactory, add_image, make_project

pytestmark = pytest.mark.django_db


def test_it_creates_a_project_with_its_owner_and_training_dataset(user):
    project = project_create(user=user, name="cookies-line-1", description="  Cookies  ")
    assert project.description == "Cookies"
    assert Membership.objects.get(project=project).role == Role.OWNER
    assert list(project.datasets.values_list("split", flat=True)) == [Split.TRAIN]


@pytest.mark.parametrize("name", ["", "-starts-with-dash", "has space", "ünïcode", "a/b", "x" * 256, "dot.name"])
def test_it_rejects_a_project_name_lookout_for_vision_would_reject(user, name):
    with pytest.raises(Invalid):
        project_create(user=user, name=name)


def test_it_accepts_a_name_of_255_allowed_characters(user):
    assert project_create(user=user, name="A" + "b_-9" * 63 + "z").name.startswith("A")


def test_it_refuses_a_second_project_with_the_same_name(user):
    project_create(user=user, name="same")
    with pytest.raises(Conflict):
        project_create(user=UserFactory(), name="same")


def test_a_project_keeps_at_least_one_owner(user):
    editor = UserFactory()
    project = make_project(owner=user, editor=editor)
    with pytest.raises(Conflict):
        member_remove(project=project, user_id=user.pk)
    with pytest.raises(Conflict):
        member_set(project=project, username=user.username, role="viewer")
    member_set(project=project, username=editor.username, role="owner")
    member_remove(project=project, user_id=user.pk)
    assert list(project.memberships.values_list("role", flat=True)) == ["owner"]


def test_it_refuses_an_unknown_member(user):
    with pytest.raises(Invalid):
        member_set(project=make_project(owner=user), username="nobody", role="viewer")


def test_deleting_a_project_deletes_its_rows_and_queues_the_removal_of_its_files(
    user, django_capture_on_commit_callbacks
):
    project = make_project(owner=user)
    image = add_image(project)
    with django_capture_on_commit_callbacks() as callbacks:
        project_delete(project=project)
    assert not Image.objects.exists() and not Project.objects.filter(pk=project.pk).exists()
    # The files go in a task (projects.tasks.project_delete_files), after commit.
    assert len(callbacks) == 1 and default_storage.exists(image.file.name)

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext

from projects.selectors import dataset_counts, project_get_for_user, project_list_for_user, training_readiness
from tests.factories import UserFactory, add_image, fill_project, make_project

pytestmark = pytest.mark.django_db


def test_a_stranger_cannot_tell_a_project_exists(user):
    project = make_project(owner=user)
    with pytest.raises(Http404):
        project_get_for_user(user=UserFactory(), name=project.name)
    with pytest.raises(Http404):
        project_get_for_user(user=UserFactory(), name="no-such-project")


@pytest.mark.parametrize(
    "role, read, write, owner",
    [
        ("viewer", True, False, False),
        ("editor", True, True, False),
        ("owner", True, True, True),
    ],
)
def test_each_role_gets_what_it_may(user, role, read, write, owner):
    member = UserFactory()
    project = make_project(owner=user, **{role: member}) if role != "owner" else make_project(owner=member)
    for kwargs, allowed in (({}, read), ({"write": True}, write), ({"owner": True}, owner)):
        if allowed:
            assert project_get_for_user(user=member, name=project.name, **kwargs).role == role
        else:
            with pytest.raises(PermissionDenied):
                project_get_for_user(user=member, name=project.name, **kwargs)


def test_the_project_list_shows_only_the_users_projects_with_counts(user):
    mine = make_project(owner=user)
    make_project(owner=UserFactory())
    add_image(mine, label="normal")
    add_image(mine)
    [row] = project_list_for_user(user=user)
    assert (row.name, row.role, row.image_count, row.labeled_count) == (mine.name, "owner", 2, 1)


def test_dataset_counts_split_by_dataset_and_label(user):
    project = make_project(owner=user)
    for label, split in [("normal", "train"), ("normal", "train"), ("anomaly", "train"), ("normal", "test")]:
        add_image(project, label=label, split=split)
    counts = dataset_counts(project=project)
    assert (counts["train"].normal, counts["train"].anomaly, counts["train"].unlabeled) == (2, 1, 0)
    assert (counts["test"].normal, counts["test"].total) == (1, 1)


def test_readiness_says_exactly_what_is_missing(user):
    project = make_project(owner=user)
    fill_project(project, normal=19, anomaly=3)
    readiness = training_readiness(project=project)
    assert not readiness.ready
    assert readiness.missing == [
        "Add 1 more normal image to the training dataset (it has 19, training needs at least 20).",
        "Add 7 more anomalous images to the training dataset (it has 3, training needs at least 10).",
    ]


def test_readiness_with_a_test_dataset_uses_lookout_for_visions_rules(user):
    project = make_project(owner=user)
    fill_project(project, normal=10, anomaly=0)
    fill_project(project, normal=10, anomaly=9, split="test")
    assert training_readiness(project=project).missing == [
        "Add 1 more anomalous image to the test dataset (it has 9, training needs at least 10)."
    ]
    add_image(project, label="anomaly", split="test")
    assert training_readiness(project=project).ready


def test_a_project_is_found_in_one_query_that_sorts_nothing(user):
    # Every API call asks; sorting the one row it can find (first()) was work for nothing.
    project = make_project(owner=user)
    with CaptureQueriesContext(connection) as queries:
        assert project_get_for_user(user=user, name=project.name).role == "owner"
    [query] = queries.captured_queries
    assert "ORDER BY" not in query["sql"]

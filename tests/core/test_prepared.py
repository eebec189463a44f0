"""core.prepared: a lookup compiled once answers as the ORM's queryset does, asking the database every time."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from core.prepared import PreparedQuery
from projects.models import ApiToken, Membership, Project
from projects.projects import member_set
from projects.tokens import api_token_create
from tests.factories import UserFactory, make_project, make_version
from training.models import ModelVersion

pytestmark = pytest.mark.django_db

PROJECT_FOR_MEMBER = PreparedQuery(
    lambda name, user_id: Project.objects.filter(name=name, memberships__user_id=user_id).annotate(
        role=F("memberships__role")
    ),
    name=Project._meta.get_field("name"),
    user_id=Membership._meta.get_field("user"),
)
VERSION = PreparedQuery(
    lambda project_id, version: ModelVersion.objects.filter(project_id=project_id, version=version),
    project_id=ModelVersion._meta.get_field("project"),
    version=ModelVersion._meta.get_field("version"),
)


def fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def test_it_answers_the_orms_row_with_its_annotation(user):
    project = make_project(owner=user, name="line-1")
    viewer = UserFactory()
    member_set(project=project, username=viewer.username, role="viewer")
    for member, role in ((user, "owner"), (viewer, "viewer")):
        orm = (
            Project.objects.filter(name="line-1", memberships__user=member).annotate(role=F("memberships__role")).get()
        )
        found = PROJECT_FOR_MEMBER.get(name="line-1", user_id=member.pk)
        assert type(found) is Project and fields(found) == fields(orm) and found.role == orm.role == role
        assert found._state.adding is False and found._state.db == "default"


def test_it_fills_select_related_objects_as_the_orm_does(user):
    _, token = api_token_create(user=user, name="ci")
    row = ApiToken.objects.select_related("user").get(user=user)
    prepared = PreparedQuery(
        lambda digest: ApiToken.objects.select_related("user").filter(digest=digest, revoked_at__isnull=True),
        digest=ApiToken._meta.get_field("digest"),
    )
    with CaptureQueriesContext(connection) as queries:
        found = prepared.get(digest=row.digest)
        assert fields(found) == fields(row) and fields(found.user) == fields(row.user)
    assert len(queries) == 1  # the user came with the token


def test_it_asks_the_database_on_every_call(user):
    project = make_project(owner=user, name="line-1")
    mv = make_version(project, status="TRAINED")
    assert VERSION.get(project_id=project.pk, version=mv.version).status == "TRAINED"
    ModelVersion.objects.filter(pk=mv.pk).update(status="HOSTED")
    with CaptureQueriesContext(connection) as queries:
        assert VERSION.get(project_id=project.pk, version=mv.version).status == "HOSTED"
    assert len(queries) == 1
    Membership.objects.filter(project=project, user=user).delete()
    with pytest.raises(Project.DoesNotExist):
        PROJECT_FOR_MEMBER.get(name="line-1", user_id=user.pk)


def test_a_value_no_row_can_hold_matches_nothing_as_with_the_orm(user):
    project = make_project(owner=user, name="line-1")
    make_version(project)
    for version in (0, -1, 2**31, 2**40, 2**70, -(2**70)):
        assert not ModelVersion.objects.filter(project_id=project.pk, version=version).exists()
        with pytest.raises(ModelVersion.DoesNotExist):
            VERSION.get(project_id=project.pk, version=version)
    with pytest.raises(ValueError):  # as the ORM: "Field 'version' expected a number"
        VERSION.get(project_id=project.pk, version="one")
    assert VERSION.get(project_id=project.pk, version="1").version == 1  # int("1"), as the ORM


def test_it_refuses_values_its_sql_does_not_use(user):
    ignored = PreparedQuery(
        lambda name, user_id: Project.objects.filter(name=name),
        name=Project._meta.get_field("name"),
        user_id=Membership._meta.get_field("user"),
    )
    with pytest.raises(ImproperlyConfigured):
        ignored.get(name="x", user_id=user.pk)
    with pytest.raises(TypeError):
        VERSION.get(project_id=1)

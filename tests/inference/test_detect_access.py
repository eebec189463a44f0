"""Who may call detect, decided afresh on every call: a token revoked, a member removed, an
account deactivated or a project deleted is refused on the very next call after a successful
one (the lookups are compiled once per connection, core.prepared, and nothing else is kept)."""

import pytest

from accounts.services import account_set_active
from projects.projects import member_remove, member_set, project_delete
from projects.tokens import api_token_create, api_token_revoke
from tests.factories import UserFactory, make_project, make_version
from training.models import Status

pytestmark = pytest.mark.django_db

# A model that is not hosted answers 409 once the caller passed every access check, so no
# inference worker is needed to tell "allowed" (409) from "refused" (401, 404).
ALLOWED = 409


@pytest.fixture
def version(user):
    return make_version(make_project(owner=user, name="line-1"), status=Status.TRAINED)


def detect(client, version: int = 1, name: str = "line-1"):
    return client.post(f"/api/v1/projects/{name}/models/{version}/detect", b"\xff\xd8 photo", content_type="image/jpeg")


def test_a_revoked_token_is_refused_on_the_next_call(user, version, api_client):
    row, token = api_token_create(user=user, name="camera")
    client = api_client(user, token=token)
    assert detect(client).status_code == ALLOWED
    api_token_revoke(user=user, token_id=row.pk)
    assert detect(client).status_code == 401


def test_a_removed_member_is_refused_on_the_next_call(user, version, api_client):
    viewer = UserFactory()
    member_set(project=version.project, username=viewer.username, role="viewer")
    client = api_client(viewer)
    assert detect(client).status_code == ALLOWED
    member_remove(project=version.project, user_id=viewer.pk)
    assert detect(client).status_code == 404


def test_a_deactivated_account_is_refused_on_the_next_call(user, version, api_client):
    admin = UserFactory(is_staff=True)
    member = UserFactory()
    member_set(project=version.project, username=member.username, role="editor")
    client = api_client(member)
    assert detect(client).status_code == ALLOWED
    account_set_active(user=member, active=False, by=admin)
    assert detect(client).status_code == 401


def test_a_deleted_project_or_version_is_not_found_on_the_next_call(user, version, api_client):
    client = api_client(user)
    assert detect(client).status_code == ALLOWED
    assert detect(client, version=2).status_code == 404
    version.delete()
    assert detect(client).status_code == 404
    project_delete(project=version.project)
    assert detect(client).status_code == 404


def test_a_version_that_stops_being_hosted_answers_409_on_the_next_call(user, version, api_client):
    client = api_client(user)
    assert detect(client).json()["error"] == "not_hosted"
    for status in (Status.STOPPING_HOSTING, Status.HOSTING_FAILED, Status.TRAINED):
        version.status = status
        version.save(update_fields=["status"])
        response = detect(client)
        assert response.status_code == 409 and status in response.json()["message"]


def test_a_stranger_is_told_nothing_and_a_viewer_may_detect(user, version, api_client):
    stranger = api_client(UserFactory())
    assert detect(stranger).status_code == 404
    viewer = UserFactory()
    member_set(project=version.project, username=viewer.username, role="viewer")
    assert detect(api_client(viewer)).status_code == ALLOWED
    # A viewer may detect but not change the project.
    assert api_client(viewer).post("/api/v1/projects/line-1/models/1/start").status_code == 403

"""The People pages: Kenpin admins manage accounts in the console, never in /admin."""

import re

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.test import Client

from accounts.services import invitation_create
from tests.factories import PASSWORD, UserFactory, make_project

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "cookie-line-2-inspector"


@pytest.fixture
def admin():
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def as_admin(client, admin):
    client.login(username=admin.username, password=PASSWORD)
    return client


def _link(response) -> str:
    return re.search(r'id="new-link"[^>]*value="([^"]+)"', response.content.decode())[1]


def test_only_admins_see_the_people_pages(signed_in, user):
    assert signed_in.get("/people/").status_code == 403
    assert 'href="/people/"' not in signed_in.get("/").content.decode()
    for url in ("/people/new", "/people/invite", f"/people/{user.pk}/reset", f"/people/{user.pk}/set"):
        assert signed_in.post(url, {"active": "0", "username": "x"}).status_code == 403, url
    assert authenticate(username=user.username, password=PASSWORD) == user


def test_the_people_page_says_who_belongs_to_which_project(as_admin, admin, user):
    make_project(owner=user, name="cookies")
    make_project(owner=admin, name="boards", viewer=user)
    page = as_admin.get("/people/").content.decode()
    row = re.search(rf'<tr data-person="{user.username}".*?</tr>', page, re.S)[0]
    assert 'boards <span class="muted">viewer</span>' in row and 'cookies <span class="muted">owner</span>' in row


def test_an_admin_creates_an_account(as_admin):
    response = as_admin.post(
        "/people/new", {"username": "ed", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "email": ""}
    )
    assert response.status_code == 302
    assert authenticate(username="ed", password=NEW_PASSWORD).is_staff is False
    weak = as_admin.post("/people/new", {"username": "fi", "password1": "1234", "password2": "1234"})
    assert weak.status_code == 400 and "too short" in weak.content.decode()


def test_an_invitation_link_is_shown_once_and_signs_the_colleague_in(as_admin, admin):
    cookies = make_project(owner=admin, name="cookies")
    make_project(owner=admin, name="secret")
    response = as_admin.post("/people/invite", {"days": "7", f"project_{cookies.pk}": "editor"})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    url = _link(response)
    assert url.startswith("http://testserver/welcome/")
    assert url not in as_admin.get("/people/").content.decode()

    colleague = Client()
    page = colleague.get(url)
    assert page.status_code == 200 and "cookies" in page.content.decode()
    assert page["Cache-Control"] == "no-store"
    response = colleague.post(url, {"username": "gus", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    dashboard = colleague.get("/").content.decode()
    assert "cookies" in dashboard and "secret" not in dashboard
    assert colleague.get(url).status_code == 404  # used


def test_an_unknown_invitation_says_so(client, user):
    response = client.get("/welcome/not-a-real-token/")
    assert response.status_code == 404 and "does not work" in response.content.decode()


def test_a_signed_in_person_is_asked_to_sign_out_before_accepting(signed_in, admin):
    _, token = invitation_create(created_by=admin)
    response = signed_in.post(
        f"/welcome/{token}/", {"username": "x", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert "Sign out first" in response.content.decode()
    assert not get_user_model().objects.filter(username="x").exists()


def test_an_admin_resets_a_password_with_a_one_time_link(as_admin, user):
    url = _link(as_admin.post(f"/people/{user.pk}/reset"))
    person = Client()
    assert user.username in person.get(url).content.decode()
    response = person.post(url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert authenticate(username=user.username, password=NEW_PASSWORD) == user
    assert person.get(url).status_code == 404


def test_a_deactivated_person_is_signed_out_and_their_tokens_stop(as_admin, user, api_client):
    theirs = Client()
    theirs.login(username=user.username, password=PASSWORD)
    api = api_client(user)
    assert api.get("/api/v1/projects").status_code == 200
    response = as_admin.post(f"/people/{user.pk}/set", {"active": "0"})
    assert response.status_code == 302
    assert theirs.get("/").status_code == 302  # back to sign in
    assert api.get("/api/v1/projects").status_code == 401
    as_admin.post(f"/people/{user.pk}/set", {"active": "1"})
    assert api.get("/api/v1/projects").status_code == 200


def test_an_admin_gives_and_takes_admin_rights(as_admin, user):
    as_admin.post(f"/people/{user.pk}/set", {"admin": "1"})
    user.refresh_from_db()
    assert user.is_staff and user.is_superuser
    as_admin.post(f"/people/{user.pk}/set", {"admin": "0"})
    user.refresh_from_db()
    assert not user.is_staff


def test_a_pending_link_is_listed_and_can_be_revoked(as_admin, admin):
    link, token = invitation_create(created_by=admin, email="hal@example.com")
    assert "hal@example.com" in as_admin.get("/people/").content.decode()
    as_admin.post(f"/people/links/{link.pk}/revoke")
    assert Client().get(f"/welcome/{token}/").status_code == 404


def test_django_admin_offers_no_add_form_that_would_skip_kenpins_checks(as_admin):
    for model in (
        "projects/project",
        "projects/image",
        "projects/apitoken",
        "training/modelversion",
        "inference/trialdetection",
    ):
        assert as_admin.get(f"/admin/{model}/").status_code == 200, model
        assert as_admin.get(f"/admin/{model}/add/").status_code == 403, model

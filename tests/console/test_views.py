import pytest
from django.contrib.auth import get_user_model

from projects.models import Image, Project
from tests.factories import PASSWORD, UserFactory, add_image, fill_project, make_project

pytestmark = pytest.mark.django_db


def test_a_console_without_accounts_asks_for_the_first_admin(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/setup/"
    response = client.post(
        "/setup/", {"username": "ada", "password1": "kenpin-first-admin", "password2": "kenpin-first-admin"}
    )
    assert response.status_code == 302 and response["Location"] == "/"
    admin = get_user_model().objects.get()
    assert (admin.username, admin.is_superuser, admin.is_staff) == ("ada", True, True)
    assert client.get("/").status_code == 200  # signed in


def test_the_first_admin_page_is_gone_once_an_account_exists(client, user):
    assert client.get("/setup/").status_code == 404
    client.post("/setup/", {"username": "eve", "password1": "kenpin-first-admin", "password2": "kenpin-first-admin"})
    assert not get_user_model().objects.filter(username="eve").exists()


def test_the_first_admin_page_refuses_a_weak_password(client):
    response = client.post("/setup/", {"username": "ada", "password1": "123", "password2": "123"})
    assert response.status_code == 200 and not get_user_model().objects.exists()
    assert b"too short" in response.content


def test_every_console_page_requires_signing_in(client, user):
    for url in ("/", "/projects/new/", "/admin/"):
        response = client.get(url)
        assert response.status_code == 302 and "login" in response["Location"], url


def test_the_dashboard_lists_only_the_users_projects(client, user):
    mine = make_project(owner=user, name="my-cookies")
    make_project(owner=UserFactory(), name="someone-elses")
    client.login(username=user.username, password=PASSWORD)
    page = client.get("/").content.decode()
    assert mine.name in page and "someone-elses" not in page


def test_the_dashboard_says_what_to_do_when_there_is_no_project(client, user):
    client.login(username=user.username, password=PASSWORD)
    assert "Create your first project" in client.get("/").content.decode()


def test_creating_a_project_in_the_console(client, user):
    client.login(username=user.username, password=PASSWORD)
    response = client.post("/projects/new/", {"name": "pcb-line-2", "description": "Boards"})
    assert response.status_code == 302 and response["Location"] == "/projects/pcb-line-2/"
    response = client.post("/projects/new/", {"name": "pcb-line-2"})
    assert response.status_code == 400 and "already exists" in response.content.decode()


# --- A project's overview and its deletion, which compose every app ---------------------------


def test_the_overview_of_an_empty_project_says_to_upload_first(signed_in, project):
    page = signed_in.get("/projects/cookies/").content.decode()
    assert "Upload photos of your product" in page


def test_the_overview_says_what_is_missing_and_offers_the_unlabeled_images(signed_in, project):
    fill_project(project, normal=19, anomaly=10)
    add_image(project)
    page = signed_in.get("/projects/cookies/").content.decode()
    assert "Add 1 more normal image to the training dataset" in page
    assert "Label the 1 unlabeled image" in page


def test_the_overview_offers_training_once_the_data_is_enough(signed_in, project):
    fill_project(project, normal=20, anomaly=10)
    assert "Train your first model" in signed_in.get("/projects/cookies/").content.decode()


def test_deleting_a_project_needs_its_name_typed(signed_in, project):
    add_image(project)
    response = signed_in.post("/projects/cookies/delete", {"confirm_name": "cookie"})
    assert response.status_code == 400 and "Type “cookies” exactly" in response.content.decode()
    assert Project.objects.filter(name="cookies").exists()
    response = signed_in.post("/projects/cookies/delete", {"confirm_name": "cookies"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert not Project.objects.filter(name="cookies").exists() and not Image.objects.exists()

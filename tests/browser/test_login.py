import pytest

from tests.factories import PASSWORD, make_project

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_a_person_signs_in_and_sees_their_projects(page, user, screenshot):
    make_project(owner=user, name="cookie-inspection")
    page.goto("/")
    assert page.url.endswith("/login/?next=/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/")
    assert page.locator("#project-list").inner_text().count("cookie-inspection") == 1
    screenshot(page, "dashboard")


def test_a_wrong_password_is_refused_in_words(page, user):
    page.goto("/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", "wrong")
    page.click("button:has-text('Sign in')")
    assert "didn't match" in page.inner_text("main")


def test_the_first_visit_creates_the_admin_account(page, screenshot):
    page.goto("/")
    assert page.url.endswith("/setup/")
    screenshot(page, "setup")
    page.fill("#id_username", "ada")
    page.fill("#id_password1", "kenpin-first-admin")
    page.fill("#id_password2", "kenpin-first-admin")
    page.click("button:has-text('Create admin account')")
    page.wait_for_url("**/")
    assert "Create your first project" in page.inner_text("main")

import pytest

from tests.browser.actions import sign_in
from tests.factories import UserFactory, make_project
from training.models import Status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_a_version_is_hosted_and_stopped_from_its_page(page, user, restore_model_version, screenshot):
    project = make_project(owner=user, name="hosting-cookies")
    mv = restore_model_version(project)
    sign_in(page, user)
    page.goto(f"/projects/{project.name}/models/{mv.version}/")
    page.click("#start-hosting")
    # The card polls while the inference worker loads the model, then the page refreshes.
    page.wait_for_selector("#detect-example", timeout=60_000)
    mv.refresh_from_db()
    assert mv.status == Status.HOSTED
    assert f"/api/v1/projects/{project.name}/models/{mv.version}/detect" in page.inner_text("#detect-example")
    screenshot(page, "13-version-hosted")
    page.click("#stop-hosting")
    page.wait_for_selector("#start-hosting", timeout=60_000)
    mv.refresh_from_db()
    assert mv.status == Status.TRAINED


def test_a_viewer_sees_the_hosting_state_but_no_buttons(page, user, restore_model_version):
    viewer = UserFactory()
    project = make_project(owner=user, name="hosting-viewed", viewer=viewer)
    mv = restore_model_version(project)
    sign_in(page, viewer)
    page.goto(f"/projects/{project.name}/models/{mv.version}/")
    assert "Start hosting to call this model" in page.inner_text("#model-hosting")
    assert page.locator("#start-hosting").count() == 0

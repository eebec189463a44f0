"""People in Chromium: an admin invites a colleague, who creates their account from the link
and sees only the projects the invitation named."""

import pytest
from playwright.sync_api import expect

from tests.browser.actions import sign_in
from tests.factories import UserFactory, make_project

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_an_admin_invites_a_colleague_who_sees_only_their_projects(page, browser, live_server, screenshot):
    admin = UserFactory(username="ada", is_staff=True, is_superuser=True)
    make_project(owner=admin, name="cookies")
    make_project(owner=admin, name="circuit-boards")

    sign_in(page, admin)
    page.click("header >> text=People")
    page.fill("#id_email", "bo@example.com")
    page.locator("#invite-form label.grant", has_text="cookies").locator("select").select_option("editor")
    page.click("#create-invitation")
    expect(page.locator("#new-link-card")).to_contain_text("works once")
    link = page.input_value("#new-link")
    expect(page.locator("#pending-links")).to_contain_text("joins cookies (editor)")
    screenshot(page, "people")

    colleague = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=live_server.url).new_page()
    errors = []
    colleague.on("pageerror", lambda error: errors.append(str(error)))
    colleague.goto(link)
    expect(colleague.locator("#welcome")).to_contain_text("ada invited you to cookies")
    expect(colleague.locator("#id_email")).to_have_value("bo@example.com")
    colleague.fill("#id_username", "bo")
    colleague.fill("#id_password1", "cookie-line-2-inspector")
    colleague.fill("#id_password2", "cookie-line-2-inspector")
    screenshot(colleague, "welcome")
    colleague.click("button:has-text('Create my account')")
    colleague.wait_for_url(live_server.url + "/")
    rows = colleague.locator("#project-list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("cookies")
    expect(rows).to_contain_text("Editor")
    expect(colleague.locator("header")).not_to_contain_text("People")  # not an admin
    colleague.goto(link)
    expect(colleague.locator("#welcome")).to_contain_text("This invitation does not work")  # used
    colleague.context.close()
    assert not errors

    page.reload()
    expect(page.locator('#people-list tr[data-person="bo"]')).to_contain_text("cookies editor")

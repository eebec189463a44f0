"""The label grid and the larger view of one photo, in Chromium."""

import pytest
from playwright.sync_api import expect

from tests.browser.actions import sign_in
from tests.factories import add_image, make_project

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_a_tall_photo_fits_the_image_page_and_tiles_show_file_names(page, user):
    project = make_project(owner=user, name="boards")
    tall = add_image(project, width=300, height=1800, name="line-scan-strip.png")
    add_image(project, width=300, height=200, name="board-with-a-rather-long-name-1.png")
    sign_in(page, user)
    page.goto("/projects/boards/images/")
    expect(page.locator(".tile .tile-name")).to_have_text(
        ["board-with-a-rather-long-name-1.png", "line-scan-strip.png"]
    )
    page.goto(f"/projects/boards/images/{tall.pk}/")
    photo = page.locator("#image-viewer img").first
    expect(photo).to_be_visible()
    box = photo.bounding_box()
    assert box["y"] + box["height"] <= page.viewport_size["height"], box  # no scrolling to see its bottom
    assert box["height"] > 300


def test_the_project_name_rules_are_in_the_browsers_own_warning(page, user):
    sign_in(page, user)
    page.goto("/projects/new/")
    page.fill("#id_name", "bad name!")
    page.click("button:has-text('Create project')")
    message = page.eval_on_selector("#id_name", "input => input.validationMessage")
    assert "Letters, digits, '-' and '_'" in message, message
    expect(page.locator("#id_name_help")).to_contain_text("starting with a letter or digit")

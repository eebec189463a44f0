"""Numbers people can trust and a view of what the line sees, in Chromium: a 30-photo version
shows its intervals and says how little 30 photos prove; a photo unlike the training photos is
flagged in a trial; the operations view after 200 detect calls."""

import io
import re
import time

import pytest
from PIL import Image as PILImage
from playwright.sync_api import expect

from inference.models import DetectionRecord
from tests.browser.actions import drop_files, sign_in
from tests.conftest import cookie_photos
from tests.factories import fill_project, make_project
from training.models import ModelVersion, Status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

INTERVAL = re.compile(r"^\d\.\d{3}–\d\.\d{3}$")


def test_a_30_photo_version_shows_its_intervals_and_a_plain_warning(page, user, restore_model_version, screenshot):
    project = make_project(owner=user, name="trust-cookies")
    fill_project(project, normal=20, anomaly=10)  # the photos to keep a test dataset aside from
    mv = restore_model_version(project)
    sign_in(page, user)
    page.goto(f"/projects/{project.name}/models/{mv.version}/")
    for metric in ("precision", "recall", "f1", "roc-auc", "average-precision"):
        expect(page.locator(f"#{metric}-ci")).to_have_text(INTERVAL)
    expect(page.locator("#rests-on")).to_contain_text("from 30 photos, cross-validated")
    expect(page.locator("#counts-in-words")).to_contain_text(
        re.compile(r"caught \d+ of \d+ anomalous, \d+ of \d+ normal")
    )
    warning = page.locator("#small-evaluation")
    expect(warning).to_contain_text("Few photos behind these numbers")
    expect(warning).to_contain_text(re.compile(r"F1 \d\.\d{3} \(95 % interval \d\.\d{3}–\d\.\d{3}\)"))
    screenshot(page, "version-intervals")

    # Moving the threshold recounts the intervals in the page.
    before = page.inner_text("#recall-ci")
    page.locator("#threshold").fill("0.99")
    expect(page.locator("#recall")).to_have_text("0.000")
    expect(page.locator("#recall-ci")).not_to_have_text(before)
    expect(page.locator("#f1-ci")).to_have_text(INTERVAL)

    page.click("#keep-test-aside")
    expect(page.locator(".message.success")).to_contain_text("10 normal and 10 anomalous photos")
    page.goto(f"/projects/{project.name}/activity/")
    expect(page.locator("#activity-log")).to_contain_text("kept 10 normal and 10 anomalous photos aside")
    screenshot(page, "activity")


def _framed_cookie(path):
    """A cookie shrunk into a wide grey frame: another framing and proportions than any training photo."""
    cookie = PILImage.open(cookie_photos("normal", "test", 3)[0]).convert("RGB")
    frame = PILImage.new("RGB", (cookie.width * 3, cookie.height), (128, 128, 128))
    frame.paste(cookie.resize((cookie.width // 2, cookie.height // 2)), (cookie.width, cookie.height // 4))
    frame.save(path, format="JPEG")
    return path


def test_a_photo_unlike_the_training_photos_is_flagged_in_a_trial(
    page, user, restore_model_version, tmp_path, screenshot
):
    project = make_project(owner=user, name="unlike-cookies")
    restore_model_version(project)
    sign_in(page, user)
    page.goto(f"/projects/{project.name}/trials/")
    page.fill("#id_name", "new camera")
    drop_files(
        page, "[data-drop-into]", [cookie_photos("normal", "test", 3)[2], _framed_cookie(tmp_path / "framed.jpg")]
    )
    page.click("#run-trial")
    page.wait_for_url("**/trials/*/")
    expect(page.locator("#trial-status")).to_have_attribute("data-status", "COMPLETED", timeout=120_000)
    flagged = page.locator(".trial-card.is-unlike")
    expect(flagged).to_have_count(1)
    expect(flagged).to_have_attribute("data-name", "framed.jpg")
    expect(flagged.locator(".unlike-flag")).to_contain_text("Unlike the training photos")
    expect(flagged.locator(".unlike-flag")).to_contain_text("proportions")
    expect(page.locator("#unlike-summary")).to_contain_text("1 photo unlike the training photos")
    screenshot(page, "trial-unlike")


def test_the_operations_view_after_200_detect_calls(page, user, restore_model_version, api_client, screenshot):
    project = make_project(owner=user, name="line-cookies")
    mv = restore_model_version(project)
    api = api_client(user)
    assert api.post(f"/api/v1/projects/{project.name}/models/{mv.version}/start").status_code == 202
    deadline = time.monotonic() + 60
    while ModelVersion.objects.get(pk=mv.pk).status != Status.HOSTED:
        assert time.monotonic() < deadline, ModelVersion.objects.get(pk=mv.pk).status_message
        time.sleep(0.1)
    photos = [p.read_bytes() for p in cookie_photos("normal", "test", 8) + cookie_photos("anomaly", "test", 4)]
    for i in range(200):
        response = api.post(
            f"/api/v1/projects/{project.name}/models/{mv.version}/detect",
            photos[i % len(photos)],
            content_type="image/jpeg",
        )
        assert response.status_code == 200, response.content[:200]
    flagged = DetectionRecord.objects.filter(model_version=mv, is_anomalous=True).count()
    assert DetectionRecord.objects.filter(model_version=mv).count() == 200 and flagged

    sign_in(page, user)
    page.goto(f"/projects/{project.name}/models/{mv.version}/")
    page.click("#operations-link")
    expect(page.locator("#ops-calls")).to_have_text("200")
    expect(page.locator("#ops-share")).to_have_text(f"{100 * flagged / 200:.0f}%")
    expect(page.locator("#ops-p50")).to_have_text(re.compile(r"^\d+ ms$"))
    expect(page.locator("#ops-unlike")).to_have_text("0")
    for chart in ("calls-chart", "share-chart", "latency-chart"):
        expect(page.locator(f"#{chart}")).to_be_visible()
    photos_shown = page.locator("#recent-anomalous .ops-photos li")
    expect(photos_shown).to_have_count(min(12, flagged))
    expect(photos_shown.first.locator("img.mask-overlay")).to_be_visible()
    screenshot(page, "operations")
    with page.expect_download() as download:
        page.click("#operations-csv")
    lines = io.StringIO(open(download.value.path()).read()).readlines()
    assert len(lines) == 201 and lines[0].startswith("time_utc,version,is_anomalous")
    api.post(f"/api/v1/projects/{project.name}/models/{mv.version}/stop")

"""The whole console flow in Chromium, against a live server, a real Celery worker and the real
engine, on real cookie photos: from an empty console to two compared versions and a verified
trial detection, following only what the pages offer."""

import json
import re
import time
import zipfile

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from projects.models import Image
from tests.browser.actions import drop_files, run_trial, sign_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.worker]

TRAINING_TIMEOUT_S = 300  # the first training also exports the backbone to this run's cache


def watch_training(page, version):
    """Wait on the version page until the training ends; return the states the page showed."""
    seen = []
    deadline = time.monotonic() + TRAINING_TIMEOUT_S
    while True:
        try:
            state, progress = page.evaluate(
                """() => [document.getElementById("model-status")?.dataset.status ?? null,
                          document.getElementById("training-progress")?.textContent ?? ""]"""
            )
        except PlaywrightError:
            state, progress = None, ""  # the page is reloading: htmx refreshes it once training ends
        if state:
            seen.append((state, progress))
        if state in ("TRAINED", "TRAINING_FAILED"):
            break
        assert time.monotonic() < deadline, f"version {version} did not finish training: {seen[-3:]}"
        page.wait_for_timeout(250)
    assert state == "TRAINED", page.locator("#model-status").inner_text()
    return seen


def keys_ready(page):
    """Wait until the page a key press (a form post) navigated to has run its scripts.

    Its text shows while the page is still loading; a key pressed before image.js has attached
    its keydown handler is lost (this failed on a loaded machine: the second key did nothing).
    """
    page.wait_for_load_state("load")


@pytest.fixture
def patient(page):
    """Longer waits for this long test: the 2-core machine is shared with other test runs."""
    page.set_default_timeout(90_000)
    expect.set_options(timeout=30_000)
    yield page
    expect.set_options(timeout=5_000)


def confusion(results, threshold):
    counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for r in results:
        flagged = r["score"] >= threshold
        counts[("t" if flagged == r["anomaly"] else "f") + ("p" if flagged else "n")] += 1
    precision = counts["tp"] / (counts["tp"] + counts["fp"]) if counts["tp"] + counts["fp"] else 0.0
    recall = counts["tp"] / (counts["tp"] + counts["fn"]) if counts["tp"] + counts["fn"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return counts, precision, recall, f1


def test_from_an_empty_console_to_compared_versions_and_a_verified_trial(
    patient, user, celery_worker, cookies_folder, screenshot, tmp_path
):
    page = patient
    cookies = cookies_folder
    normal = sorted((cookies / "normal").iterdir())
    anomaly = sorted((cookies / "anomaly").iterdir())
    first_normal, first_anomaly = normal[:20], anomaly[:10]
    more_normal, more_anomaly = normal[20:25], anomaly[20:25]
    unseen = normal[30:33] + anomaly[30:33]
    anomalous_names = {p.name for p in anomaly}

    # --- Create the project, from the empty dashboard ------------------------------------------
    sign_in(page, user)
    screenshot(page, "01-dashboard-empty")
    page.click("text=Create your first project")
    page.fill("#id_name", "cookies")
    page.fill("#id_description", "Chocolate-chip cookies, line 2")
    page.click("button:has-text('Create project')")
    page.wait_for_url("**/projects/cookies/")
    expect(page.locator("#next-step")).to_contain_text("Upload photos of your product")
    screenshot(page, "02-project-new")

    # --- Drop 20 normal and 10 anomalous photos, unlabeled --------------------------------------
    page.locator("#next-step").get_by_role("link", name="Upload images").click()
    page.wait_for_url("**/upload/")
    drop_files(page, "#dropzone", first_normal + first_anomaly)
    expect(page.locator("#upload-status")).to_have_text("Finished: 30 of 30 added", timeout=120_000)
    expect(page.locator("#overall-progress")).to_have_attribute("value", "1")
    expect(page.locator(".upload-item[data-state=done]")).to_have_count(30)
    expect(page.locator("#counts-bar [data-filter-label=unlabeled] b")).to_have_text("30")
    screenshot(page, "03-upload")

    # --- Label them in the grid, with the keyboard ----------------------------------------------
    page.click("#go-label")
    page.wait_for_url("**/images/?label=unlabeled")
    expect(page.locator(".tile")).to_have_count(30)
    page.keyboard.press("Control+a")
    expect(page.locator("#selection-count")).to_have_text("30 selected")
    page.keyboard.press("n")
    expect(page.locator("#messages")).to_have_text("30 images labeled normal.")
    expect(page.locator(".tile[data-label=normal]")).to_have_count(30)
    for path in first_anomaly:
        page.click(f'.tile[data-name="{path.name}"] .tile-thumb')
    expect(page.locator("#selection-count")).to_have_text("10 selected")
    page.keyboard.press("a")
    expect(page.locator("#messages")).to_have_text("10 images labeled anomaly.")
    # Arrows move the highlight; a key labels the highlighted photo when nothing is selected.
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    highlighted = page.evaluate("document.activeElement.dataset.name")
    page.keyboard.press("u")
    expect(page.locator(f'.tile[data-name="{highlighted}"]')).to_have_attribute("data-label", "unlabeled")
    expect(page.locator("#readiness")).to_contain_text("Add 1 more")
    page.keyboard.press("a" if highlighted in anomalous_names else "n")
    expect(page.locator("#counts-bar [data-filter-label=normal] b")).to_have_text("20")
    expect(page.locator("#counts-bar [data-filter-label=anomaly] b")).to_have_text("10")
    expect(page.locator("#readiness")).to_contain_text("Enough labeled images to train")
    screenshot(page, "04-label-grid")

    # The larger view of one photo: its label keys and its neighbours in the grid's order.
    page.click("[data-filter-label=all]")
    page.locator(f'.tile[data-name="{first_anomaly[0].name}"] [data-open]').click()
    expect(page.locator("#image-label")).to_have_text("Anomaly")
    keys_ready(page)
    screenshot(page, "05-image")
    page.keyboard.press("n")
    expect(page.locator("#image-label")).to_have_text("Normal")
    keys_ready(page)
    page.keyboard.press("a")
    expect(page.locator("#image-label")).to_have_text("Anomaly")
    keys_ready(page)
    shown = page.url
    page.keyboard.press("ArrowRight")
    page.wait_for_url(lambda url: url != shown)
    expect(page.locator("h1")).not_to_have_text(first_anomaly[0].name)

    # --- Train version 1 and watch its progress -------------------------------------------------
    page.click("nav.projectnav >> text=Models")
    expect(page.locator("#train-button")).to_be_enabled()
    page.fill("#id_description", "first 30 photos")
    page.click("#train-button")
    page.wait_for_url("**/models/1/")
    screenshot(page, "06-training")
    seen = watch_training(page, 1)
    assert any(state in ("QUEUED", "TRAINING") and re.fullmatch(r"\d+%", progress) for state, progress in seen), seen

    # --- Version page: metrics, curves, the threshold slider ------------------------------------
    expect(page.locator("#evaluation")).to_contain_text("cross-validation")
    expect(page.locator("#roc-chart")).to_be_visible()
    data = json.loads(page.locator("#version-data").inner_text())
    assert len(data["results"]) == 30 and data["roc"]["fpr"]
    counts, precision, recall, f1 = confusion(data["results"], data["threshold"])
    expect(page.locator("#f1")).to_have_text(f"{f1:.3f}")
    screenshot(page, "07-version")
    page.fill("#threshold", "0.3")
    expect(page.locator("#threshold-value")).to_have_text("0.300")
    counts, precision, recall, f1 = confusion(data["results"], 0.3)
    expect(page.locator("#precision")).to_have_text(f"{precision:.3f}")
    expect(page.locator("#recall")).to_have_text(f"{recall:.3f}")
    expect(page.locator("#f1")).to_have_text(f"{f1:.3f}")
    for key, n in counts.items():
        expect(page.locator(f"#cm-{key}")).to_have_text(str(n))
    page.click("#result-filters >> text=Errors")
    expect(page.locator("#result-grid .result:visible")).to_have_count(counts["fp"] + counts["fn"])
    page.click("#result-filters >> text=All")
    page.locator("#result-grid .result button.thumb").first.click()
    expect(page.locator("#zoom")).to_be_visible()
    screenshot(page, "08-version-zoom")
    page.click("#zoom >> text=Close")
    page.click("#threshold-save")
    expect(page.locator("#messages")).to_contain_text("now flags images scoring 0.300 or more")
    expect(page.locator("#threshold-value")).to_have_text("0.300")

    # --- More data, by zip with normal/ and anomaly/ folders, then version 2 -------------------------
    archive = tmp_path / "more-cookies.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in more_normal:
            zf.write(path, f"more/normal/{path.name}")
        for path in more_anomaly:
            zf.write(path, f"more/anomaly/{path.name}")
    page.click("nav.projectnav >> text=Upload")
    page.set_input_files("#zip-form input[type=file]", str(archive))
    page.click("#zip-form button")
    page.wait_for_url("**/imports/*/")
    # The worker imports the zip in the background while the page polls its progress.
    expect(page.locator("#import-report")).to_have_attribute("data-status", "COMPLETE", timeout=120_000)
    expect(page.locator("#import-report")).to_contain_text("10 images added")
    expect(page.locator("#import-report")).to_contain_text("5 normal, 5 anomaly, 0 unlabeled")
    page.click("nav.projectnav >> text=Models")
    page.fill("#id_description", "10 more photos")
    page.click("#train-button")
    page.wait_for_url("**/models/2/")
    watch_training(page, 2)

    # --- Compare the two versions ---------------------------------------------------------------
    page.click("nav.projectnav >> text=Models")
    expect(page.locator("#version-list tbody tr")).to_have_count(2)
    screenshot(page, "09-models")
    page.check("#version-list input[name=v][value='1']")
    page.check("#version-list input[name=v][value='2']")
    page.click("#compare-button")
    page.wait_for_url(re.compile(r"/models/compare\?v=\d&v=\d$"))
    expect(page.locator("#compare-changes")).to_contain_text("10 images added")
    expect(page.locator("#compare-changes")).to_contain_text("Threshold in use: 0.300 →")
    expect(page.locator("#compare-metrics tr[data-metric=f1] td")).to_have_count(2)
    # Whether the two versions disagree on some photo depends on the training; either answer
    # names how many photos both evaluated.
    expect(page.locator("#compare-disagreements")).to_contain_text(
        re.compile(r"images every version evaluated|all \d+ images that each of them evaluated")
    )
    screenshot(page, "10-compare")

    # --- Trial detection on unseen cookies, verified and added to the dataset --------------------
    page.click("nav.projectnav >> text=Trial detections")
    expect(page.locator("#id_model_version")).to_have_value("2")
    run_trial(page, "unseen cookies", unseen)
    cards = page.locator(".trial-card")
    expect(cards).to_have_count(6)
    expect(page.locator(".trial-card .heatmap")).to_have_count(6)
    for i in range(6):
        card = cards.nth(i)
        truth = "anomaly" if card.get_attribute("data-name") in anomalous_names else "normal"
        verdict = "correct" if card.get_attribute("data-predicted") == truth else "incorrect"
        card.locator(f"button.verdict-{verdict}").click()
        expect(cards.nth(i)).to_have_class(f"trial-card verdict-{verdict}")
    expect(page.locator("#ready-to-add")).to_have_text("6")
    screenshot(page, "11-trial")
    page.click("#add-verified")
    expect(page.locator("#messages")).to_contain_text("6 new images added to the dataset")

    added = {
        image.original_name: image.label for image in Image.objects.filter(original_name__in=[p.name for p in unseen])
    }
    assert added == {p.name: "anomaly" if p.name in anomalous_names else "normal" for p in unseen}

    # --- Back on the dashboard: the counts and the latest model -----------------------------------
    page.click("header >> text=Projects")
    row = page.locator("#project-list tbody tr")
    expect(row).to_contain_text("46")
    expect(row).to_contain_text("Version 2")
    screenshot(page, "12-dashboard")

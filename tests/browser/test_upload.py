"""The upload page in Chromium: refused files say why while the others go in; a chosen folder's
normal/, anomaly/ and mask/ sub-folders label the photos."""

import pytest
from playwright.sync_api import expect

from projects.models import Image
from tests.browser.actions import drop_files, sign_in
from tests.factories import image_bytes, make_project

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_each_refused_file_says_why_while_the_others_go_in(page, user, tmp_path, screenshot):
    make_project(owner=user, name="boards")
    good = [tmp_path / "board-1.png", tmp_path / "board-2.png"]
    for path in good:
        path.write_bytes(image_bytes(width=80, height=60))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    again = tmp_path / "board-1-again.png"
    again.write_bytes(good[0].read_bytes())

    sign_in(page, user)
    page.goto("/projects/boards/upload/")
    page.check("input[name=label][value=normal]")
    drop_files(page, "#dropzone", good + [notes])
    expect(page.locator("#upload-status")).to_have_text("Finished: 2 of 3 added · 1 refused")
    drop_files(page, "#dropzone", [again])  # after the first batch, so that it is a duplicate for sure
    expect(page.locator("#upload-status")).to_have_text("Finished: 2 of 4 added · 2 refused")
    expect(page.locator('.upload-item[data-name="notes.txt"]')).to_contain_text("Refused: This file is not an image")
    expect(page.locator('.upload-item[data-name="board-1-again.png"]')).to_contain_text(
        "Refused: This image is already in the project (as “board-1.png”"
    )
    expect(page.locator("#retry-failed")).to_be_hidden()  # refusals are final; only lost requests retry
    screenshot(page, "upload-refusals")
    assert sorted(Image.objects.values_list("original_name", "label")) == [
        ("board-1.png", "normal"),
        ("board-2.png", "normal"),
    ]
    # The browser logs each refused request; these two are the ones this test asked for.
    expected = [e for e in page.errors if "status of 400" in e or "status of 409" in e]
    assert len(expected) == 2, page.errors
    for error in expected:
        page.errors.remove(error)


def test_a_chosen_folder_labels_its_photos_and_attaches_masks(page, user, tmp_path):
    make_project(owner=user, name="boards")
    folder = tmp_path / "line-2"
    for sub in ("normal", "anomaly", "mask"):
        (folder / sub).mkdir(parents=True)
    (folder / "normal" / "ok.png").write_bytes(image_bytes(width=80, height=60))
    (folder / "anomaly" / "scratch.png").write_bytes(image_bytes(width=80, height=60))
    (folder / "mask" / "scratch.png").write_bytes(image_bytes(width=80, height=60, mode="L"))
    (folder / "unsorted.png").write_bytes(image_bytes(width=80, height=60))

    sign_in(page, user)
    page.goto("/projects/boards/upload/")
    page.check("input[name=split][value=test]")
    page.set_input_files("#folder-input", str(folder))
    expect(page.locator("#upload-status")).to_have_text("Finished: 3 of 3 added")
    expect(page.locator('.upload-item[data-name="scratch.png"]')).to_contain_text("anomaly + mask · test")
    images = {
        i.original_name: (i.label, i.dataset.split, bool(i.mask)) for i in Image.objects.select_related("dataset")
    }
    assert images == {
        "ok.png": ("normal", "test", False),
        "scratch.png": ("anomaly", "test", True),
        "unsorted.png": ("unlabeled", "test", False),
    }
    expect(page.locator("#go-label")).to_be_visible()  # one photo still needs a label


def test_an_interrupted_upload_is_resumed_without_duplicates(page, user, tmp_path, screenshot):
    """Six photos: two go in; the third is stored but its answer is lost (as when the connection
    drops); the last three are still in flight when the person leaves the page. Back on the
    page, it says what was not stored and sends just those three."""
    make_project(owner=user, name="boards")
    paths = []
    for i in range(1, 7):
        path = tmp_path / f"board-{i}.png"
        path.write_bytes(image_bytes(width=80, height=60))
        paths.append(path)
    sent = []
    held = []

    def route(route):
        name = route.request.post_data_buffer.split(b'filename="', 1)[1].split(b'"', 1)[0].decode()
        sent.append(name)
        if name == "board-3.png":
            route.fetch()  # the server stores it...
            route.abort("connectionreset")  # ...but the browser never hears back
        elif name in ("board-4.png", "board-5.png", "board-6.png"):
            held.append(route)  # still in flight when the person leaves
        else:
            route.continue_()

    dialogs = []

    def on_dialog(dialog):
        dialogs.append((dialog.type, dialog.message))
        dialog.dismiss() if dialog.type == "confirm" else dialog.accept()

    page.on("dialog", on_dialog)
    page.route("**/images/add", route)
    sign_in(page, user)
    page.goto("/projects/boards/upload/")
    page.check("input[name=label][value=normal]")  # a real click: the page may now warn before leaving
    drop_files(page, "#dropzone", paths)
    expect(page.locator(".upload-item[data-state=done]")).to_have_count(2)
    expect(page.locator('.upload-item[data-name="board-3.png"]')).to_have_attribute("data-state", "failed")
    page.wait_for_function("() => document.querySelectorAll('.upload-item[data-state=uploading]').length === 3")
    expect(page.locator("#upload-leave-note")).to_be_visible()

    # A console link asks in Kenpin's words; staying keeps the upload going.
    page.click("nav.projectnav >> text=Label")
    assert dialogs[-1][0] == "confirm" and "still uploading" in dialogs[-1][1], dialogs
    assert page.url.endswith("/upload/")
    # Leaving anyway (typing another address): the browser's own warning, accepted.
    page.goto("/projects/boards/")
    assert dialogs[-1][0] == "beforeunload", dialogs
    assert sorted(Image.objects.values_list("original_name", flat=True)) == [
        "board-1.png",
        "board-2.png",
        "board-3.png",
    ]

    page.unroute("**/images/add")
    sent.clear()
    page.route("**/images/add", lambda route: (sent.append("add"), route.continue_()))
    page.goto("/projects/boards/upload/")
    resume = page.locator("#upload-resume")
    expect(resume).to_contain_text("interrupted before Kenpin confirmed 4 photos")
    expect(resume).to_contain_text("1 is in the project after all")
    expect(resume).to_contain_text("3 photos were not stored")
    expect(page.locator(".upload-item[data-state=held]")).to_have_count(3)
    screenshot(page, "upload-resume")
    resume.locator("button[data-role=send]").click()
    expect(page.locator("#upload-status")).to_have_text("Finished: 3 of 3 added")
    assert len(sent) == 3  # board-3 was not sent again
    assert sorted(Image.objects.values_list("original_name", flat=True)) == [p.name for p in paths]
    assert set(Image.objects.values_list("label", flat=True)) == {"normal"}

    page.reload()  # nothing is kept once everything is stored
    expect(page.locator("#upload-resume")).to_be_hidden()
    page.wait_for_timeout(300)
    expect(page.locator("#upload-resume")).to_be_hidden()
    # The lost answer of board-3 is logged by the browser as a failed request: asked for above.
    page.errors[:] = [e for e in page.errors if "ERR_CONNECTION_RESET" not in e]

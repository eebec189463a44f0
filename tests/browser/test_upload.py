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

"""The project pages: overview, settings and members, upload, zip import, label grid, one image."""

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from projects.importer import zip_import_run
from projects.models import Image, Membership, Project, Role, ZipImport
from tests.factories import PASSWORD, UserFactory, add_image, fill_project, image_bytes, make_project

pytestmark = pytest.mark.django_db

JSON = {"HTTP_ACCEPT": "application/json"}


def test_the_counts_bar_names_every_missing_requirement(signed_in, project):
    fill_project(project, normal=3, anomaly=1)
    bar = signed_in.get("/projects/cookies/images/counts").content.decode()
    assert "Add 17 more normal images" in bar and "Add 9 more anomalous images" in bar
    assert "more)" not in bar


# --- Settings, members, deletion ------------------------------------------------------------------


def test_an_editor_changes_the_description(client, project):
    editor = UserFactory()
    Membership.objects.create(project=project, user=editor, role=Role.EDITOR)
    client.login(username=editor.username, password=PASSWORD)
    response = client.post("/projects/cookies/settings/", {"description": "Line 2 cookies"})
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.description == "Line 2 cookies"


def test_the_owner_adds_changes_and_removes_a_member(signed_in, project):
    colleague = UserFactory(username="grace")
    assert signed_in.post("/projects/cookies/members/", {"username": "grace", "role": "viewer"}).status_code == 302
    assert Membership.objects.get(project=project, user=colleague).role == Role.VIEWER
    signed_in.post("/projects/cookies/members/", {"username": "grace", "role": "editor"})
    assert Membership.objects.get(project=project, user=colleague).role == Role.EDITOR
    signed_in.post(f"/projects/cookies/members/{colleague.pk}/remove")
    assert not Membership.objects.filter(project=project, user=colleague).exists()


def test_adding_someone_without_an_account_says_so(signed_in, project):
    response = signed_in.post("/projects/cookies/members/", {"username": "nobody", "role": "editor"})
    assert response.status_code == 400
    assert "There is no user named “nobody”" in response.content.decode()


def test_the_last_owner_cannot_leave_and_is_told_why(signed_in, project, user):
    response = signed_in.post(f"/projects/cookies/members/{user.pk}/remove", follow=True)
    assert "needs at least one owner" in response.content.decode()
    assert Membership.objects.filter(project=project, user=user, role=Role.OWNER).exists()


def test_an_editor_cannot_manage_members_or_delete_the_project(client, project):
    editor = UserFactory()
    Membership.objects.create(project=project, user=editor, role=Role.EDITOR)
    client.login(username=editor.username, password=PASSWORD)
    assert client.post("/projects/cookies/members/", {"username": editor.username, "role": "owner"}).status_code == 403
    assert client.post("/projects/cookies/delete", {"confirm_name": "cookies"}).status_code == 403
    assert Membership.objects.get(user=editor).role == Role.EDITOR and Project.objects.filter(name="cookies").exists()


# --- Upload -----------------------------------------------------------------------------------


def _upload(client, data, *, name="photo.png", **fields):
    return client.post("/projects/cookies/images/add", {"file": SimpleUploadedFile(name, data), **fields}, **JSON)


def test_an_uploaded_image_goes_into_the_chosen_dataset_with_its_label(signed_in, project):
    response = _upload(signed_in, image_bytes(), label="anomaly", split="test")
    assert response.status_code == 201
    image = Image.objects.get(pk=response.json()["id"])
    assert (image.label, image.dataset.split, image.original_name) == ("anomaly", "test", "photo.png")
    assert response.json() == {"id": image.pk, "name": "photo.png", "label": "anomaly", "split": "test", "unlike": ""}


def test_each_refused_upload_says_why_in_words(signed_in, project, settings):
    data = image_bytes()
    assert _upload(signed_in, data).status_code == 201
    duplicate = _upload(signed_in, data, name="again.png")
    assert duplicate.status_code == 409 and duplicate.json()["error"] == "duplicate"
    assert "already in the project" in duplicate.json()["message"]
    text = _upload(signed_in, b"these are not pixels", name="notes.txt")
    assert text.status_code == 400 and "not an image" in text.json()["message"]
    corrupt = _upload(signed_in, image_bytes(fmt="JPEG")[:300], name="cut.jpg")
    assert corrupt.status_code == 400 and "damaged" in corrupt.json()["message"]
    settings.KENPIN_MAX_UPLOAD_BYTES = 1000
    large = _upload(signed_in, image_bytes(width=200, height=200))
    assert large.status_code == 413 and "the largest accepted is" in large.json()["message"]
    assert Image.objects.count() == 1


def test_a_refused_file_names_the_formats_the_upload_page_names(signed_in, project):
    message = _upload(signed_in, b"these are not pixels", name="notes.txt").json()["message"]
    page = signed_in.get("/projects/cookies/upload/").content.decode()
    formats = "JPEG, PNG, BMP, TIFF or WebP"
    assert f"(use {formats})" in message and f"{formats}, up to" in page


def test_the_upload_page_learns_which_photos_the_project_already_has(signed_in, project):
    stored = add_image(project)
    missing = "ab" * 32
    response = signed_in.post("/projects/cookies/images/known", {"sha256": [stored.sha256, missing]})
    assert response.json() == {"known": [stored.sha256]}
    other = make_project(owner=UserFactory(), name="other")
    add_image(other, seed=77)
    assert signed_in.post("/projects/other/images/known", {"sha256": [stored.sha256]}).status_code == 404


def test_an_upload_with_its_defect_mask_becomes_an_anomaly(signed_in, project):
    response = signed_in.post(
        "/projects/cookies/images/add",
        {
            "file": SimpleUploadedFile("crack.png", image_bytes(width=64, height=48)),
            "mask": SimpleUploadedFile("crack-mask.png", image_bytes(width=64, height=48, mode="L")),
        },
        **JSON,
    )
    assert response.status_code == 201
    image = Image.objects.get()
    assert image.label == "anomaly" and image.mask


def test_an_upload_without_a_file_is_refused_in_json(signed_in, project):
    response = signed_in.post("/projects/cookies/images/add", {"label": "normal"}, **JSON)
    assert response.status_code == 400 and response.json()["message"].startswith("File:")


def test_a_zip_import_runs_in_the_background_and_its_page_polls_until_the_report(signed_in, project):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("cookies/normal/a.png", image_bytes())
        zf.writestr("cookies/anomaly/b.png", image_bytes())
        zf.writestr("cookies/anomaly/readme.txt", b"not an image")
    response = signed_in.post(
        "/projects/cookies/images/import",
        {"file": SimpleUploadedFile("cookies.zip", archive.getvalue()), "split": "train"},
    )
    job = ZipImport.objects.get()
    assert response.status_code == 302 and response.url == f"/projects/cookies/imports/{job.pk}/"
    assert not Image.objects.exists()
    page = signed_in.get(response.url).content.decode()
    assert "Queued" in page and "cookies.zip" in page and 'hx-trigger="every 1s"' in page
    assert "cookies.zip" in signed_in.get("/projects/cookies/upload/").content.decode()  # found again later

    zip_import_run(import_id=job.pk)  # what the worker does

    fragment = signed_in.get(response.url, HTTP_HX_REQUEST="true").content.decode()
    assert fragment.startswith('<section class="card" id="import-report"') and "hx-trigger" not in fragment
    assert "2 images added" in fragment and "1 normal, 1 anomaly, 0 unlabeled" in fragment
    assert "cookies/anomaly/readme.txt" in fragment and "not an image" in fragment


def test_a_zip_import_of_another_project_is_not_found(signed_in, project, user):
    other = make_project(owner=UserFactory())
    job = ZipImport.objects.create(project=other, split="train")
    assert signed_in.get(f"/projects/{other.name}/imports/{job.pk}/").status_code == 404
    assert signed_in.get(f"/projects/cookies/imports/{job.pk}/").status_code == 404


def test_a_file_that_is_not_a_zip_is_refused_with_a_message(signed_in, project):
    response = signed_in.post(
        "/projects/cookies/images/import",
        {
            "file": SimpleUploadedFile("photos.zip", b"nope"),
            "split": "train",
        },
        follow=True,
    )
    assert "not a zip archive" in response.content.decode()


def test_a_viewer_sees_the_upload_page_but_cannot_upload(client, project):
    viewer = UserFactory()
    Membership.objects.create(project=project, user=viewer, role=Role.VIEWER)
    client.login(username=viewer.username, password=PASSWORD)
    assert "you can look at its images but not add any" in client.get("/projects/cookies/upload/").content.decode()
    assert _upload(client, image_bytes()).status_code == 403


# --- Label grid -------------------------------------------------------------------------------


def test_the_grid_filters_by_label_and_dataset_and_counts_each_filter(signed_in, project):
    fill_project(project, normal=3, anomaly=2)
    add_image(project, split="test", name="kept-apart.png")
    page = signed_in.get("/projects/cookies/images/?label=unlabeled&split=test").content.decode()
    assert page.count('class="tile"') == 1 and "kept-apart.png" in page
    assert 'data-filter-label="normal"' in page
    counts = signed_in.get("/projects/cookies/images/counts?split=train").content.decode()
    # Label chips count within the training dataset: all 5, unlabeled 0, normal 3, anomaly 2.
    for label, n in (("all", 5), ("unlabeled", 0), ("normal", 3), ("anomaly", 2)):
        assert f'data-filter-label="{label}"' in counts and f"<b>{n}</b>" in counts


def test_the_grid_pages_through_many_images(signed_in, project):
    for _ in range(50):
        add_image(project, width=32, height=32)
    first = signed_in.get("/projects/cookies/images/").content.decode()
    second = signed_in.get("/projects/cookies/images/?page=2").content.decode()
    assert first.count('class="tile"') == 48 and second.count('class="tile"') == 2
    assert "Page 1 of 2" in first


def test_an_empty_project_grid_says_to_upload(signed_in, project):
    assert "No images yet" in signed_in.get("/projects/cookies/images/").content.decode()


def test_labeling_many_images_answers_their_new_state(signed_in, project):
    images = [add_image(project) for _ in range(3)]
    other = add_image(make_project(owner=UserFactory()))
    ids = [i.pk for i in images] + [other.pk]
    response = signed_in.post("/projects/cookies/images/label", {"ids": ids, "label": "anomaly"}, **JSON)
    assert response.status_code == 200
    assert response.json()["message"] == "3 images labeled anomaly."
    assert sorted(s["id"] for s in response.json()["images"]) == sorted(i.pk for i in images)
    assert {s["label"] for s in response.json()["images"]} == {"anomaly"}
    other.refresh_from_db()
    assert other.label == "unlabeled"  # another project's image is never touched


def test_moving_and_deleting_images(signed_in, project):
    a, b = add_image(project), add_image(project)
    response = signed_in.post("/projects/cookies/images/move", {"ids": [a.pk], "split": "test"}, **JSON)
    assert response.json()["images"] == [{"id": a.pk, "label": "unlabeled", "split": "test"}]
    response = signed_in.post("/projects/cookies/images/delete", {"ids": [a.pk, b.pk]}, **JSON)
    assert response.json()["message"] == "2 images deleted." and not Image.objects.exists()


def test_a_bulk_action_without_images_or_with_a_bad_label_says_so(signed_in, project):
    image = add_image(project)
    response = signed_in.post("/projects/cookies/images/label", {"label": "normal"}, **JSON)
    assert response.status_code == 400 and "Select at least one image" in response.json()["message"]
    response = signed_in.post("/projects/cookies/images/label", {"ids": [image.pk], "label": "broken"}, **JSON)
    assert response.status_code == 400 and response.json()["message"].startswith("Label:")


def test_plain_forms_go_back_to_the_page_they_came_from_but_never_elsewhere(signed_in, project):
    image = add_image(project)
    back = f"/projects/cookies/images/{image.pk}/?label=unlabeled"
    response = signed_in.post("/projects/cookies/images/label", {"ids": [image.pk], "label": "normal", "next": back})
    assert response.status_code == 302 and response["Location"] == back
    response = signed_in.post(
        "/projects/cookies/images/label", {"ids": [image.pk], "label": "normal", "next": "https://evil.example/"}
    )
    assert response["Location"] == "/projects/cookies/images/"


def test_removing_the_test_dataset_brings_its_images_back(signed_in, project):
    image = add_image(project, split="test")
    signed_in.post("/projects/cookies/test-dataset/delete")
    image.refresh_from_db()
    assert image.dataset.split == "train" and not project.datasets.filter(split="test").exists()


# --- One image --------------------------------------------------------------------------------


def test_the_larger_view_links_to_its_neighbours_within_the_filter(signed_in, project):
    oldest = add_image(project, label="normal")
    add_image(project, label="anomaly")
    middle = add_image(project, label="normal")
    newest = add_image(project, label="normal")
    page = signed_in.get(f"/projects/cookies/images/{middle.pk}/?label=normal").content.decode()
    assert f'href="/projects/cookies/images/{newest.pk}/?label=normal">← Previous' in page
    assert f'href="/projects/cookies/images/{oldest.pk}/?label=normal">Next →' in page


def test_the_larger_view_shows_the_mask_over_the_image(signed_in, project):
    image = add_image(project, mask=image_bytes(mode="L"))
    page = signed_in.get(f"/projects/cookies/images/{image.pk}/").content.decode()
    assert f"/projects/cookies/images/{image.pk}/mask" in page and 'id="show-mask"' in page
    assert signed_in.get(f"/projects/cookies/images/{image.pk}/mask")["Content-Type"] == "image/png"


def test_a_mask_of_the_wrong_size_is_refused_and_the_image_kept(signed_in, project):
    image = add_image(project, width=64, height=48)
    response = signed_in.post(
        f"/projects/cookies/images/{image.pk}/set-mask",
        {
            "mask": SimpleUploadedFile("m.png", image_bytes(width=10, height=10, mode="L")),
        },
        follow=True,
    )
    assert "The mask was not saved" in response.content.decode()
    image.refresh_from_db()
    assert not image.mask and image.label == "unlabeled"


def test_a_zip_over_the_limit_is_refused_before_it_is_read(signed_in, project, settings):
    settings.KENPIN_MAX_ZIP_BYTES = 100
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("normal/a.png", image_bytes())
    response = signed_in.post(
        "/projects/cookies/images/import",
        {
            "file": SimpleUploadedFile("big.zip", archive.getvalue()),
            "split": "train",
        },
        follow=True,
    )
    assert "import at most" in response.content.decode() and not Image.objects.exists()


def test_an_upload_framed_unlike_the_training_photos_is_told_so_at_once(signed_in, project):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.factories import fill_project, image_bytes

    fill_project(project, normal=6, anomaly=0)  # 64×48 px, 4:3

    def upload(width, height):
        file = SimpleUploadedFile("p.png", image_bytes(width=width, height=height), content_type="image/png")
        return signed_in.post("/projects/cookies/images/add", {"file": file}).json()

    assert upload(64, 48)["unlike"] == ""
    unlike = upload(600, 100)["unlike"]
    assert (
        unlike.startswith("Unlike the training photos: ") and "600×100 px" in unlike and "proportions 6.00:1" in unlike
    )

"""API v1: projects and images."""

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from projects.importer import zip_import_run
from projects.models import Image, Project
from projects.selectors import image_mask_indices
from tests.factories import UserFactory, add_image, image_bytes, make_project

pytestmark = pytest.mark.django_db


def _json(data):
    return {"data": json.dumps(data), "content_type": "application/json"}


def _file(data: bytes, name="photo.png", content_type="image/png"):
    return SimpleUploadedFile(name, data, content_type)


@pytest.fixture
def owner_api(user, api_client):
    return api_client(user)


def test_creating_listing_reading_and_deleting_a_project(owner_api, user):
    response = owner_api.post("/api/v1/projects", **_json({"name": "pcb-line-2", "description": "Boards"}))
    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["description"], body["role"]) == ("pcb-line-2", "Boards", "owner")
    assert [p["name"] for p in owner_api.get("/api/v1/projects").json()] == ["pcb-line-2"]

    detail = owner_api.get("/api/v1/projects/pcb-line-2").json()
    assert detail["datasets"] == {"train": {"normal": 0, "anomaly": 0, "unlabeled": 0}, "test": None}

    assert owner_api.delete("/api/v1/projects/pcb-line-2").status_code == 204
    assert not Project.objects.exists()
    assert owner_api.get("/api/v1/projects/pcb-line-2").status_code == 404


def test_a_project_name_is_checked(owner_api):
    for name, code in (("", "name_required"), ("has space", "invalid_name"), ("-dash-first", "invalid_name")):
        response = owner_api.post("/api/v1/projects", **_json({"name": name}))
        assert response.status_code == 400 and response.json()["error"] == code, name
    owner_api.post("/api/v1/projects", **_json({"name": "taken"}))
    response = owner_api.post("/api/v1/projects", **_json({"name": "taken"}))
    assert response.status_code == 409 and response.json()["error"] == "name_taken"


def test_uploading_labelled_images_into_either_dataset(owner_api, user):
    project = make_project(owner=user, name="cookies")
    data = image_bytes(width=80, height=60)
    response = owner_api.post("/api/v1/projects/cookies/images", {"file": _file(data), "label": "normal"})
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in ("label", "dataset", "width", "height", "sha256", "name")} == {
        "label": "normal",
        "dataset": "train",
        "width": 80,
        "height": 60,
        "sha256": hashlib.sha256(data).hexdigest(),
        "name": "photo.png",
    }
    assert Image.objects.get(pk=body["id"]).project == project

    response = owner_api.post(
        "/api/v1/projects/cookies/images",
        {"file": _file(image_bytes(fmt="JPEG"), "a.jpg", "image/jpeg"), "label": "anomaly", "dataset": "test"},
    )
    assert response.status_code == 201 and (response.json()["label"], response.json()["dataset"]) == ("anomaly", "test")

    response = owner_api.post("/api/v1/projects/cookies/images", {"file": _file(image_bytes())})
    assert response.status_code == 201 and response.json()["label"] == "unlabeled"

    counts = owner_api.get("/api/v1/projects/cookies").json()["datasets"]
    assert counts == {
        "train": {"normal": 1, "anomaly": 0, "unlabeled": 1},
        "test": {"normal": 0, "anomaly": 1, "unlabeled": 0},
    }


def test_an_image_with_a_mask_is_an_anomaly_and_keeps_its_mask(owner_api, user):
    make_project(owner=user, name="cookies")
    mask = image_bytes(width=64, height=48, mode="L", seed=3)
    response = owner_api.post(
        "/api/v1/projects/cookies/images",
        {"file": _file(image_bytes(width=64, height=48)), "mask": _file(mask, "mask.png")},
    )
    assert response.status_code == 201
    assert response.json()["label"] == "anomaly" and response.json()["has_mask"] is True
    # Stored as class indices: every non-black pixel of the upload is the implicit class 1.
    stored = image_mask_indices(image=Image.objects.get(pk=response.json()["id"]))
    assert (stored == (np.asarray(PILImage.open(io.BytesIO(mask))) > 0)).all()


def test_a_mask_of_the_wrong_size_is_refused_and_nothing_is_stored(owner_api, user):
    make_project(owner=user, name="cookies")
    response = owner_api.post(
        "/api/v1/projects/cookies/images",
        {
            "file": _file(image_bytes(width=64, height=48)),
            "mask": _file(image_bytes(width=32, height=32, mode="L"), "mask.png"),
        },
    )
    assert response.status_code == 400 and response.json()["error"] == "wrong_size"
    assert not Image.objects.exists()


def test_bad_uploads_are_refused_with_a_message(owner_api, user, settings):
    make_project(owner=user, name="cookies")
    url = "/api/v1/projects/cookies/images"
    cases = [
        ({"file": _file(b"this is not an image", "notes.png")}, 400, "not_an_image"),
        ({"file": _file(image_bytes()[:60], "cut.png")}, 400, None),
        ({"file": _file(image_bytes()), "label": "broken"}, 400, "invalid"),
        ({"file": _file(image_bytes()), "dataset": "validation"}, 400, "invalid"),
        ({"label": "normal"}, 400, "invalid"),
    ]
    for data, status, code in cases:
        response = owner_api.post(url, data)
        assert response.status_code == status, (data, response.json())
        assert set(response.json()) == {"error", "message"} and (code is None or response.json()["error"] == code)
    settings.KENPIN_MAX_UPLOAD_BYTES = 1000
    response = owner_api.post(url, {"file": _file(image_bytes(width=200, height=200))})
    assert response.status_code == 413 and response.json()["error"] == "too_large"
    assert not Image.objects.exists()


def test_a_duplicate_upload_is_reported_not_stored_twice(owner_api, user):
    make_project(owner=user, name="cookies")
    data = image_bytes()
    first = owner_api.post("/api/v1/projects/cookies/images", {"file": _file(data), "label": "normal"})
    again = owner_api.post("/api/v1/projects/cookies/images", {"file": _file(data, "again.png"), "label": "anomaly"})
    assert first.status_code == 201 and again.status_code == 409
    assert again.json()["error"] == "duplicate" and "already in the project" in again.json()["message"]
    assert Image.objects.count() == 1


def test_listing_images_filters_and_pages(owner_api, user):
    project = make_project(owner=user, name="cookies")
    normals = [add_image(project, label="normal") for _ in range(5)]
    add_image(project, label="anomaly")
    add_image(project, label="anomaly", split="test")
    everything = owner_api.get("/api/v1/projects/cookies/images").json()
    assert everything["count"] == 7 and len(everything["items"]) == 7
    normal = owner_api.get("/api/v1/projects/cookies/images?label=normal").json()
    assert {i["id"] for i in normal["items"]} == {i.pk for i in normals}
    test = owner_api.get("/api/v1/projects/cookies/images?dataset=test").json()
    assert test["count"] == 1 and test["items"][0]["label"] == "anomaly"
    pages = [owner_api.get(f"/api/v1/projects/cookies/images?page={n}&page_size=3").json() for n in (1, 2, 3)]
    assert [len(p["items"]) for p in pages] == [3, 3, 1] and all(p["count"] == 7 for p in pages)
    assert len({i["id"] for p in pages for i in p["items"]}) == 7


def test_relabelling_moving_downloading_and_deleting_an_image(owner_api, user):
    project = make_project(owner=user, name="cookies")
    image = add_image(project, label="normal")
    url = f"/api/v1/projects/cookies/images/{image.pk}"
    body = owner_api.patch(url, **_json({"label": "anomaly"})).json()
    assert (body["label"], body["dataset"]) == ("anomaly", "train")
    body = owner_api.patch(url, **_json({"dataset": "test"})).json()
    assert (body["label"], body["dataset"]) == ("anomaly", "test")
    assert owner_api.get(url).json()["dataset"] == "test"
    response = owner_api.patch(url, **_json({"label": "weird"}))
    assert response.status_code == 400 and response.json()["error"] == "invalid"

    file = owner_api.get(f"{url}/file")
    with image.file.open("rb") as f:
        assert b"".join(file.streaming_content) == f.read()

    assert owner_api.delete(url).status_code == 204
    assert not Image.objects.filter(pk=image.pk).exists()
    assert owner_api.delete(url).status_code == 404


def test_an_image_of_another_project_is_not_found_through_yours(owner_api, user):
    make_project(owner=user, name="mine")
    theirs = add_image(make_project(owner=UserFactory(), name="theirs"))
    for method in ("get", "delete"):
        assert getattr(owner_api, method)(f"/api/v1/projects/mine/images/{theirs.pk}").status_code == 404
    assert owner_api.patch(f"/api/v1/projects/mine/images/{theirs.pk}", **_json({"label": "normal"})).status_code == 404
    assert Image.objects.filter(pk=theirs.pk, label="unlabeled").exists()


def test_an_editor_uploads_and_labels_but_a_viewer_cannot(user, api_client):
    editor, viewer = UserFactory(), UserFactory()
    project = make_project(owner=user, name="cookies", editor=editor, viewer=viewer)
    response = api_client(editor).post("/api/v1/projects/cookies/images", {"file": _file(image_bytes())})
    assert response.status_code == 201
    response = api_client(viewer).post("/api/v1/projects/cookies/images", {"file": _file(image_bytes())})
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    assert "Viewers" in response.json()["message"]
    assert project.images.count() == 1


def _cookies_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("normal/a.png", image_bytes())
        archive.writestr("anomaly/b.png", image_bytes())
        archive.writestr("anomaly/notes.txt", b"not an image")
    return buffer.getvalue()


def test_a_zip_import_is_started_and_polled_until_its_report(owner_api, user):
    make_project(owner=user, name="cookies")
    response = owner_api.post(
        "/api/v1/projects/cookies/imports",
        {"file": _file(_cookies_zip(), "more.zip", "application/zip"), "dataset": "test"},
    )
    assert response.status_code == 202, response.content
    started = response.json()
    assert (started["status"], started["name"], started["dataset"]) == ("QUEUED", "more.zip", "test")
    assert started["total"] == 3 and started["done"] == 0

    zip_import_run(import_id=started["id"])  # what the worker does

    report = owner_api.get(f"/api/v1/projects/cookies/imports/{started['id']}").json()
    assert (report["status"], report["progress"], report["done"]) == ("COMPLETE", 100, 3)
    assert report["added"] == {"normal": 1, "anomaly": 1, "unlabeled": 0}
    assert report["rejected"] == [{"name": "anomaly/notes.txt", "message": report["rejected"][0]["message"]}]
    assert Image.objects.filter(dataset__split="test").count() == 2


def test_a_zip_import_refuses_a_file_that_is_not_a_zip_and_viewers(owner_api, user, api_client):
    viewer = UserFactory()
    make_project(owner=user, name="cookies", viewer=viewer)
    refused = owner_api.post("/api/v1/projects/cookies/imports", {"file": _file(b"nope", "a.zip")})
    assert refused.status_code == 400 and refused.json()["error"] == "not_a_zip"
    as_viewer = api_client(viewer).post("/api/v1/projects/cookies/imports", {"file": _file(_cookies_zip(), "a.zip")})
    assert as_viewer.status_code == 403
    assert api_client(UserFactory()).get("/api/v1/projects/cookies/imports/1").status_code == 404
    assert owner_api.get("/api/v1/projects/cookies/imports/99999999999999999999").status_code in (400, 404)


def test_an_owner_changes_the_description_and_a_viewer_cannot(user, owner_api, api_client):
    viewer = UserFactory()
    make_project(owner=user, name="cookies", viewer=viewer)
    response = owner_api.patch("/api/v1/projects/cookies", **_json({"description": "  Line 2, night shift "}))
    assert response.status_code == 200 and response.json()["description"] == "Line 2, night shift"
    assert Project.objects.get(name="cookies").description == "Line 2, night shift"
    response = api_client(viewer).patch("/api/v1/projects/cookies", **_json({"description": "mine now"}))
    assert response.status_code == 403
    assert Project.objects.get(name="cookies").description == "Line 2, night shift"


def test_owners_add_change_and_remove_members_but_never_the_last_owner(user, owner_api, api_client):
    editor = UserFactory()
    make_project(owner=user, name="cookies", editor=editor)
    newcomer = UserFactory(username="ana")
    url = "/api/v1/projects/cookies/members"
    response = owner_api.post(url, **_json({"username": "ana", "role": "viewer"}))
    assert response.status_code == 200 and response.json() == {
        "user_id": newcomer.pk,
        "username": "ana",
        "role": "viewer",
    }
    owner_api.post(url, **_json({"username": "ana", "role": "editor"}))
    members = {m["username"]: m["role"] for m in owner_api.get(url).json()}
    assert members == {user.username: "owner", editor.username: "editor", "ana": "editor"}

    response = owner_api.post(url, **_json({"username": "nobody", "role": "viewer"}))
    assert response.status_code == 400 and response.json()["error"] == "no_such_user"
    response = owner_api.post(url, **_json({"username": "ana", "role": "admin"}))
    assert response.status_code == 400
    assert api_client(editor).post(url, **_json({"username": "ana", "role": "owner"})).status_code == 403
    assert [m["role"] for m in api_client(editor).get(url).json()]  # members read the list

    response = owner_api.delete(f"{url}/{user.pk}")
    assert response.status_code == 409 and response.json()["error"] == "last_owner"
    assert owner_api.delete(f"{url}/{newcomer.pk}").status_code == 204
    response = owner_api.delete(f"{url}/{newcomer.pk}")
    assert response.status_code == 404 and response.json()["error"] == "not_a_member"
    assert {m["username"] for m in owner_api.get(url).json()} == {user.username, editor.username}


def test_removing_the_test_dataset_moves_its_images_back_to_training(owner_api, user):
    project = make_project(owner=user, name="cookies")
    image = add_image(project, label="anomaly", split="test")
    assert owner_api.get("/api/v1/projects/cookies").json()["datasets"]["test"]["anomaly"] == 1
    assert owner_api.delete("/api/v1/projects/cookies/test-dataset").status_code == 204
    datasets = owner_api.get("/api/v1/projects/cookies").json()["datasets"]
    assert datasets["test"] is None and datasets["train"]["anomaly"] == 1
    assert owner_api.get(f"/api/v1/projects/cookies/images/{image.pk}").json()["dataset"] == "train"


def test_an_images_thumbnail_is_downloaded_by_members_only(owner_api, user, api_client):
    make_project(owner=user, name="cookies")
    created = owner_api.post("/api/v1/projects/cookies/images", {"file": _file(image_bytes(width=640, height=480))})
    url = f"/api/v1/projects/cookies/images/{created.json()['id']}/thumbnail"
    thumbnail = owner_api.get(url)
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/jpeg"
    with PILImage.open(io.BytesIO(b"".join(thumbnail.streaming_content))) as small:
        assert (small.format, small.size) == ("JPEG", (320, 240))
    assert api_client(UserFactory()).get(url).status_code == 404

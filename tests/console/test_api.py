"""The API as a whole: tokens, the one error shape, per-project access on every endpoint, and
the docs served offline. Endpoints' behaviour is tested beside their apps (tests/*/test_api.py)."""

import io
import json
import re
import zipfile

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.utils import timezone
from PIL import Image as PILImage

from console.api import api
from inference.models import TrialDetection, TrialImage
from lookout.models import PackagingJob
from projects.models import AnomalyClass, ApiToken, Project, ZipImport
from projects.tokens import api_token_create, api_token_revoke
from tests.factories import UserFactory, add_image, heatmap_png, image_bytes, make_project
from training.models import ModelVersion, ModelVersionImage, Status

pytestmark = pytest.mark.django_db


def _is_error(response, status: int, code: str | None = None) -> bool:
    body = response.json()
    assert response.status_code == status, (response.status_code, body)
    assert set(body) == {"error", "message"} and body["message"], body
    assert code is None or body["error"] == code, body
    return True


# --- Tokens -----------------------------------------------------------------------------------


def test_a_call_without_a_token_is_refused_with_401_saying_how_to_authenticate(client):
    response = client.get("/api/v1/projects")
    assert _is_error(response, 401, "unauthorized")
    assert "Authorization: Bearer" in response.json()["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer kp_not-a-real-token", "Bearer ", "Token abc", "Basic dXNlcjpwYXNz"])
def test_a_wrong_token_is_refused_with_401(header):
    response = Client(headers={"Authorization": header}).get("/api/v1/projects")
    assert _is_error(response, 401, "unauthorized")


def test_a_revoked_token_is_refused(user, api_client):
    row, token = api_token_create(user=user, name="line 2")
    client = api_client(user, token=token)
    assert client.get("/api/v1/projects").status_code == 200
    api_token_revoke(user=user, token_id=row.pk)
    assert _is_error(client.get("/api/v1/projects"), 401, "unauthorized")


def test_the_token_of_a_deactivated_account_is_refused(user, api_client):
    client = api_client(user)
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    assert _is_error(client.get("/api/v1/projects"), 401)


def test_a_session_cookie_alone_does_not_open_the_api(client, user):
    """The API authenticates bearer tokens only: a signed-in browser cannot be made to call it
    by another site (no cookie authentication, so no CSRF to defend)."""
    client.force_login(user)
    assert _is_error(client.get("/api/v1/projects"), 401)


def test_a_token_is_stored_only_as_its_digest_and_records_its_use(user, api_client):
    row, token = api_token_create(user=user, name="camera")
    assert token not in {row.digest, row.prefix} and not ApiToken.objects.filter(digest__contains=token).exists()
    assert api_client(user, token=token).get("/api/v1/projects").status_code == 200
    row.refresh_from_db()
    assert row.last_used_at and (timezone.now() - row.last_used_at).total_seconds() < 60


def test_a_token_sees_only_its_owners_projects(user, api_client):
    make_project(owner=user, name="mine")
    make_project(owner=UserFactory(), name="theirs")
    names = [p["name"] for p in api_client(user).get("/api/v1/projects").json()]
    assert names == ["mine"]


# --- The one error shape --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing-here",
        "/api/v2/projects",
        "/api/",
        "/api/v1/projects/x/y/z",
    ],
)
def test_an_unknown_route_under_the_api_answers_404_in_the_error_shape(user, api_client, path):
    assert _is_error(api_client(user).get(path), 404, "not_found")
    assert _is_error(Client().post(path), 404, "not_found")


def test_a_method_an_endpoint_does_not_take_answers_405_in_the_error_shape(user, api_client):
    response = api_client(user).put("/api/v1/projects")
    assert _is_error(response, 405, "method_not_allowed")
    assert set(response["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}


def test_a_body_that_is_not_json_answers_400(user, api_client):
    response = api_client(user).post("/api/v1/projects", "{not json", content_type="application/json")
    assert _is_error(response, 400, "invalid")
    assert "JSON" in response.json()["message"]


def test_a_validation_error_names_the_field_in_one_message(user, api_client):
    response = api_client(user).post("/api/v1/projects", {"description": "no name"}, content_type="application/json")
    assert _is_error(response, 400, "invalid")
    assert "name (JSON body): Field required" in response.json()["message"]
    response = api_client(user).get("/api/v1/projects/p/images?page=zero")
    assert _is_error(response, 400, "invalid") and "page (query string)" in response.json()["message"]


def test_an_internal_error_answers_500_in_the_error_shape_and_is_logged(user, api_client, monkeypatch, caplog):
    import projects.api

    def broken(**kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(projects.api, "project_list_for_user", broken)
    response = api_client(user).get("/api/v1/projects")
    assert _is_error(response, 500, "internal")
    assert "disk on fire" not in response.json()["message"]  # details go to the log, not to callers
    assert "disk on fire" in caplog.text


def test_the_console_keeps_its_html_errors(client, user):
    client.force_login(user)
    response = client.get("/projects/no-such-project/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


# --- Per-project access on every endpoint ------------------------------------------------------


@pytest.fixture
def world(user):
    viewer, editor, stranger = UserFactory(), UserFactory(), UserFactory()
    project = make_project(owner=user, viewer=viewer, editor=editor)
    # Every file a GET can ask for exists, so that a viewer's reads all answer 200.
    image = add_image(project, label="anomaly", mask=_mask())
    mv = ModelVersion.objects.create(project=project, version=1, backbone="lite0", status=Status.TRAINED, threshold=0.5)
    result = ModelVersionImage.objects.create(model_version=mv, sha256=image.sha256, split="train", label="anomaly")
    result.score = 0.9
    result.heatmap.save("heat.png", ContentFile(heatmap_png()))
    trial = TrialDetection.objects.create(project=project, model_version=mv, name="t", threshold=0.5)
    trial_image = TrialImage.objects.create(
        trial=trial, image=image, sha256=image.sha256, width=64, height=48, is_anomalous=True
    )
    trial_image.heatmap.save("heat.png", ContentFile(heatmap_png()))
    zipped = default_storage.save(f"projects/{project.pk}/packages/pkg.zip", ContentFile(b"PK\x05\x06" + bytes(18)))
    package = PackagingJob.objects.create(
        project=project, model_version=mv, name="pkg", status="SUCCEEDED", package=zipped
    )
    anomaly_class = AnomalyClass.objects.create(project=project, index=1, name="crack", color="#e6194b")
    zip_import = ZipImport.objects.create(project=project, split="train", original_name="photos.zip")
    values = {
        "name": project.name,
        "import_id": zip_import.pk,
        "class_id": anomaly_class.pk,
        "project": project.name,
        "image_id": image.pk,
        "version": mv.version,
        "trial_id": trial.pk,
        "trial_image_id": trial_image.pk,
        "kind": "heatmap",
        "job_name": package.name,
        "user_id": editor.pk,
        "result_id": result.pk,
    }
    return {"project": project, "viewer": viewer, "editor": editor, "stranger": stranger, "values": values}


def _request_kwargs(operation_id: str) -> dict:
    """A valid request body for each endpoint that takes one, so that access, not validation,
    decides the answer. An endpoint missing here fails the walk until it is added."""
    json_body = lambda data: {"data": json.dumps(data), "content_type": "application/json"}  # noqa: E731
    bodies = {
        "projects_api_upload_image": lambda: {"data": {"file": _png("new.png"), "label": "normal"}},
        "projects_api_update_image": lambda: json_body({"label": "anomaly"}),
        "training_api_start_training": lambda: json_body({}),
        "training_api_update_model": lambda: json_body({"threshold": 0.4}),
        "inference_api_detect": lambda: {"data": image_bytes(fmt="PNG"), "content_type": "image/png"},
        "inference_api_detect_batch": lambda: {"data": {"files": [_png("front.png"), _png("back.png")]}},
        "inference_api_create_trial": lambda: {"data": {"model_version": 1, "files": _png("trial.png")}},
        "inference_api_set_verdict": lambda: json_body({"verdict": "correct"}),
        "inference_api_add_to_dataset": lambda: json_body({"dataset": "train"}),
        "projects_api_create_class": lambda: json_body({"name": "scratch"}),
        "projects_api_update_class": lambda: json_body({"name": "chip"}),
        "projects_api_put_mask": lambda: {"data": image_bytes(fmt="PNG"), "content_type": "image/png"},
        "projects_api_start_zip_import": lambda: {"data": {"file": SimpleUploadedFile("a.zip", _zip())}},
        "projects_api_update_project": lambda: json_body({"description": "changed"}),
        "projects_api_set_member": lambda: json_body({"username": "nobody", "role": "viewer"}),
    }
    return bodies[operation_id]() if operation_id in bodies else {}


def _mask() -> bytes:
    """A binary defect mask the size of factories' default image (64x48)."""
    pixels = np.zeros((48, 64), dtype=np.uint8)
    pixels[10:20, 10:30] = 255
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("normal/a.png", image_bytes())
    return buffer.getvalue()


def _png(name):
    return SimpleUploadedFile(name, image_bytes(), "image/png")


def _project_operations(world):
    """(method, url, operation id) of every API operation on a project, from the OpenAPI description."""
    operations = []
    for template, methods in api.get_openapi_schema()["paths"].items():
        params = re.findall(r"{(\w+)}", template)
        if "name" not in params and "project" not in params:
            continue
        url = template
        for param in params:
            url = url.replace(f"{{{param}}}", str(world["values"][param]))
        operations += [(method, url, op["operationId"]) for method, op in methods.items()]
    assert len(operations) >= 20
    return operations


def _call(client, method, url, operation_id):
    kwargs = _request_kwargs(operation_id)
    return getattr(client, method)(url, **kwargs)


def test_a_strangers_token_gets_404_from_every_project_endpoint(world, api_client):
    stranger = api_client(world["stranger"])
    for method, url, operation_id in _project_operations(world):
        assert _is_error(_call(stranger, method, url, operation_id), 404, "not_found"), f"{method} {url}"


def test_a_viewers_token_reads_but_every_write_is_refused_with_403(world, api_client):
    viewer = api_client(world["viewer"])
    for method, url, operation_id in _project_operations(world):
        response = _call(viewer, method, url, operation_id)
        if method == "get":
            assert response.status_code == 200, f"GET {url}: {response.status_code} {response.content[:200]}"
        elif operation_id.startswith("inference_api_detect"):
            # Detecting changes nothing, so viewers may; this version is not hosted.
            assert _is_error(response, 409, "not_hosted"), url
        else:
            assert _is_error(response, 403, "forbidden"), f"{method.upper()} {url}"


def test_every_endpoint_refuses_a_call_without_a_token(world):
    anonymous = Client()
    for method, url, operation_id in _project_operations(world) + [
        ("get", "/api/v1/projects", ""),
        ("post", "/api/v1/projects", ""),
    ]:
        assert _is_error(_call(anonymous, method, url, operation_id), 401, "unauthorized"), f"{method} {url}"


def test_only_owners_may_delete_a_project(world, api_client):
    name = world["project"].name
    assert _is_error(api_client(world["editor"]).delete(f"/api/v1/projects/{name}"), 403, "forbidden")


# --- Docs, offline ----------------------------------------------------------------------------


def test_the_docs_page_and_all_its_assets_come_from_kenpin_itself(client):
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) >= 3
    for url in assets:
        assert url.startswith("/static/"), f"{url} is not served by Kenpin"
        response = client.get(url)
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert len(body) > 100, url
    assert not re.search(r"https?://|src=\"//|href=\"//", html), "the docs page names another site"
    settings_json = json.loads(
        re.search(r'<script type="application/json" id="swagger-settings">(.*?)</script>', html, re.S)[1]
    )
    # Swagger UI sends the description to validator.swagger.io unless told not to.
    assert settings_json["validatorUrl"] is None and settings_json["url"] == "/api/openapi.json"


def test_the_openapi_description_lists_every_endpoint_and_the_bearer_scheme(client):
    schema = client.get("/api/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/api/v1/projects",
        "/api/v1/projects/{name}/images",
        "/api/v1/projects/{name}/models/{version}",
        "/api/v1/projects/{name}/models/{version}/start",
        "/api/v1/projects/{name}/models/{version}/stop",
        "/api/v1/projects/{name}/models/{version}/detect",
        "/api/v1/projects/{name}/trials",
    ):
        assert path in paths, path
    assert schema["components"]["securitySchemes"]["BearerToken"] == {"type": "http", "scheme": "bearer"}
    detect = paths["/api/v1/projects/{name}/models/{version}/detect"]["post"]
    assert set(detect["requestBody"]["content"]) == {"image/jpeg", "image/png"}


def test_the_docs_need_no_sign_in_even_before_the_first_account_exists(client):
    assert not get_user_model().objects.exists()
    assert client.get("/api/docs").status_code == 200
    assert client.get("/api/openapi.json").status_code == 200


def test_text_with_the_nul_character_is_refused_with_400_not_stored(user, api_client):
    # PostgreSQL cannot store it; schemathesis found the 500 in a project's description.
    client = api_client(user)
    body = '{"name": "nul", "description": "a\\u0000b"}'
    response = client.post("/api/v1/projects", data=body, content_type="application/json")
    if connection.vendor == "postgresql":
        assert response.status_code == 400, response.content
        assert response.json()["error"] == "invalid" and "NUL" in response.json()["message"]
        assert not Project.objects.filter(name="nul").exists()
    else:
        assert response.status_code == 201  # SQLite stores it

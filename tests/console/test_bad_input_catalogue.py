"""The bad-input catalogue: requests a tester sends to break Kenpin, each with the status and the
words it must answer with, and proof that it changed nothing: the counts of projects, images,
model versions and trials, and the stored files, are the same after it as before.

Uploads are limited to 1 MB here, so that bodies over the limit stay cheap.
"""

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from inference.models import TrialDetection
from projects.images import dataset_add_image
from projects.models import Image, Project
from projects.projects import member_set
from projects.tokens import api_token_create
from tests.console.test_bad_requests import _multipart
from tests.factories import PASSWORD, UserFactory, add_image, image_bytes, make_project
from tests.projects.test_zipcheck import overlapping_bomb
from training.models import ModelVersion, Status

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999"
PNG = image_bytes(width=64, height=48, seed=11)
MB = 1024 * 1024


def png(width=64, height=48, seed=12) -> bytes:
    return image_bytes(width=width, height=height, seed=seed)


def encoded(fmt: str, size=(64, 64), mode="RGB") -> bytes:
    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.new(mode, size).save(out, fmt)
    return out.getvalue()


def zipped(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


@dataclass
class Case:
    name: str
    method: str
    path: str
    status: int
    words: str  # must appear in the message (API) or the page / JSON (console)
    body: bytes = b""
    content_type: str = "application/octet-stream"
    who: str = "owner"  # owner, viewer, stranger, nobody, wrong-token

    @property
    def api(self) -> bool:
        return self.path.startswith(("/api/", "/2020-11-20/"))


def multipart(*parts, boundary="kenpin"):
    return _multipart(list(parts), boundary), f"multipart/form-data; boundary={boundary}"


def form(**fields):
    from urllib.parse import urlencode

    return urlencode(fields, doseq=True).encode(), "application/x-www-form-urlencoded"


def j(value):
    return json.dumps(value).encode(), "application/json"


P = "/api/v1/projects"


def _c(name, method, path, status, words, payload=(b"", "application/octet-stream"), who="owner") -> Case:
    body, content_type = payload
    return Case(name, method, path, status, words, body, content_type, who)


CASES = [
    # --- Projects ---
    _c("project without a name", "POST", P, 400, "Give the project a name", j({"name": ""})),
    _c("project name with a space", "POST", P, 400, "letters, digits", j({"name": "my project"})),
    _c("project named new", "POST", P, 400, "“new” is a word the console uses", j({"name": "new"})),
    _c("project named NEW", "POST", P, 400, "choose another name", j({"name": "NEW"})),
    _c("project name of 256 characters", "POST", P, 400, "255", j({"name": "a" * 256})),
    _c("project name taken", "POST", P, 409, "already exists", j({"name": "cookies"})),
    _c("project name that is a number", "POST", P, 400, "name", j({"name": 5})),
    _c("project body that is broken JSON", "POST", P, 400, "not valid JSON", (b'{"name": ', "application/json")),
    _c("project body that is a JSON array", "POST", P, 400, "not valid", j([1, 2])),
    _c(
        "project description of 100,000 characters",
        "POST",
        P,
        400,
        "1000",
        j({"name": "x1", "description": "y" * 100_000}),
    ),
    _c("project that does not exist", "GET", f"{P}/nope", 404, "Not found"),
    _c("a stranger's project", "GET", f"{P}/other", 404, "Not found"),
    _c("deleting a project as a viewer", "DELETE", f"{P}/cookies", 403, "Only the project's owners", who="viewer"),
    # --- Uploads ---
    _c("upload without a file", "POST", f"{P}/cookies/images", 400, "file", multipart(("label", None, b"normal"))),
    _c(
        "upload that is not an image",
        "POST",
        f"{P}/cookies/images",
        400,
        "not an image",
        multipart(("file", "a.png", b"hello")),
    ),
    _c("empty upload", "POST", f"{P}/cookies/images", 400, "empty", multipart(("file", "a.png", b""))),
    _c("truncated PNG", "POST", f"{P}/cookies/images", 400, "damaged", multipart(("file", "a.png", png()[:200]))),
    _c(
        "GIF upload",
        "POST",
        f"{P}/cookies/images",
        400,
        "JPEG, PNG, BMP, TIFF or WebP",
        multipart(("file", "a.gif", encoded("GIF"))),
    ),
    _c(
        "ICO upload",
        "POST",
        f"{P}/cookies/images",
        400,
        "JPEG, PNG, BMP, TIFF or WebP",
        multipart(("file", "a.ico", encoded("ICO"))),
    ),
    _c(
        "EPS upload",
        "POST",
        f"{P}/cookies/images",
        400,
        "JPEG, PNG, BMP, TIFF or WebP",
        multipart(("file", "a.eps", encoded("EPS"))),
    ),
    _c(
        "20,000 x 20,000 PNG bomb",
        "POST",
        f"{P}/cookies/images",
        400,
        "megapixels",
        multipart(("file", "bomb.png", encoded("PNG", (20_000, 20_000), "1"))),
    ),
    _c("16-pixel image", "POST", f"{P}/cookies/images", 400, "at least 32", multipart(("file", "a.png", png(16, 16)))),
    _c(
        "unknown label",
        "POST",
        f"{P}/cookies/images",
        400,
        "label",
        multipart(("file", "a.png", png()), ("label", None, b"weird")),
    ),
    _c(
        "unknown dataset",
        "POST",
        f"{P}/cookies/images",
        400,
        "dataset",
        multipart(("file", "a.png", png()), ("dataset", None, b"val")),
    ),
    _c(
        "label normal with a mask",
        "POST",
        f"{P}/cookies/images",
        400,
        "An image with a defect mask is an anomaly",
        multipart(("file", "a.png", png()), ("label", None, b"normal"), ("mask", "m.png", png(seed=3))),
    ),
    _c(
        "mask of another size",
        "POST",
        f"{P}/cookies/images",
        400,
        "same size",
        multipart(("file", "a.png", png()), ("mask", "m.png", png(80, 60))),
    ),
    _c(
        "image already in the project",
        "POST",
        f"{P}/cookies/images",
        409,
        "already in the project",
        multipart(("file", "a.png", PNG)),
    ),
    _c(
        "multipart without a boundary",
        "POST",
        f"{P}/cookies/images",
        400,
        "boundary",
        (_multipart([("file", "a.png", png())]), "multipart/form-data"),
    ),
    _c(
        "truncated multipart",
        "POST",
        f"{P}/cookies/images",
        400,
        "",
        (_multipart([("file", "a.png", png())])[:-40], "multipart/form-data; boundary=kenpin"),
    ),
    _c(
        "a 1,004-character file name",
        "POST",
        f"{P}/cookies/images",
        400,
        "shorten it",
        multipart(("file", "a" * 1000 + ".png", png())),
    ),
    _c(
        "upload over the size limit",
        "POST",
        f"{P}/cookies/images",
        413,
        "the largest accepted is 1 MB",
        multipart(("file", "big.bmp", b"B" * (MB + 10))),
    ),
    _c(
        "upload by a viewer",
        "POST",
        f"{P}/cookies/images",
        403,
        "Viewers cannot change this project",
        multipart(("file", "a.png", png())),
        who="viewer",
    ),
    _c(
        "upload by a stranger",
        "POST",
        f"{P}/cookies/images",
        404,
        "Not found",
        multipart(("file", "a.png", png())),
        who="stranger",
    ),
    _c(
        "upload without a token",
        "POST",
        f"{P}/cookies/images",
        401,
        "Authorization: Bearer",
        multipart(("file", "a.png", png())),
        who="nobody",
    ),
    _c(
        "upload with a wrong token",
        "POST",
        f"{P}/cookies/images",
        401,
        "not valid",
        multipart(("file", "a.png", png())),
        who="wrong-token",
    ),
    # --- Images ---
    _c("relabel with an unknown label", "PATCH", f"{P}/cookies/images/{{image}}", 400, "label", j({"label": "weird"})),
    _c(
        "relabel an image id beyond the database",
        "PATCH",
        f"{P}/cookies/images/{HUGE}",
        404,
        "Not found",
        j({"label": "normal"}),
    ),
    _c("relabel image 0", "PATCH", f"{P}/cookies/images/0", 404, "Not found", j({"label": "normal"})),
    _c("delete another project's image", "DELETE", f"{P}/cookies/images/{{other_image}}", 404, "Not found"),
    _c("image id that is a word", "GET", f"{P}/cookies/images/abc", 400, "image_id"),
    # --- Trials ---
    _c(
        "trial of 2,001 files",
        "POST",
        f"{P}/cookies/trials",
        400,
        "too many files",
        multipart(*[("files", f"{i}.png", b"x") for i in range(2001)], ("model_version", None, b"1")),
    ),
    _c(
        "trial of 2,001 project images",
        "POST",
        f"{P}/cookies/trials",
        400,
        "at most 2000 images",
        form(model_version=1, image_ids=list(range(1, 2002))),
    ),
    _c(
        "trial image id beyond the database",
        "POST",
        f"{P}/cookies/trials",
        400,
        "too large",
        form(model_version=1, image_ids=[HUGE]),
    ),
    _c(
        "trial of a version beyond the database",
        "POST",
        f"{P}/cookies/trials",
        400,
        "has no model version",
        form(model_version=HUGE, image_ids=[1]),
    ),
    _c(
        "trial of a version that is a word",
        "POST",
        f"{P}/cookies/trials",
        400,
        "model_version",
        form(model_version="abc"),
    ),
    _c(
        "trial of a version that does not exist",
        "POST",
        f"{P}/cookies/trials",
        400,
        "has no model version",
        form(model_version=99, image_ids=[1]),
    ),
    _c(
        "trial of a failed version",
        "POST",
        f"{P}/cookies/trials",
        409,
        "not trained",
        form(model_version=2, image_ids=[1]),
    ),
    _c("trial without images", "POST", f"{P}/cookies/trials", 400, "no usable image", form(model_version=1)),
    _c(
        "trial of files that are no images",
        "POST",
        f"{P}/cookies/trials",
        400,
        "no usable image",
        multipart(("files", "a.png", b"nope"), ("model_version", None, b"1")),
    ),
    # --- Models ---
    _c("training with too few images", "POST", f"{P}/cookies/models", 400, "Not enough labeled images", j({})),
    _c("training with an unknown backbone", "POST", f"{P}/cookies/models", 400, "backbone", j({"backbone": "resnet"})),
    _c("threshold above 1", "PATCH", f"{P}/cookies/models/1", 400, "threshold", j({"threshold": 1.5})),
    _c("threshold that is a word", "PATCH", f"{P}/cookies/models/1", 400, "threshold", j({"threshold": "x"})),
    _c("hosting a failed version", "POST", f"{P}/cookies/models/2/start", 409, "TRAINING_FAILED"),
    _c("deleting a version that does not exist", "DELETE", f"{P}/cookies/models/99", 404, "Not found"),
    _c("version beyond the database", "GET", f"{P}/cookies/models/{HUGE}", 404, "Not found"),
    # --- Detect ---
    _c(
        "detect on a version that is not hosted",
        "POST",
        f"{P}/cookies/models/1/detect",
        409,
        "Start it",
        (PNG, "image/png"),
    ),
    _c(
        "detect on a failed version", "POST", f"{P}/cookies/models/2/detect", 409, "train a new one", (PNG, "image/png")
    ),
    _c(
        "detect over the size limit",
        "POST",
        f"{P}/cookies/models/1/detect",
        413,
        "the largest accepted is 1 MB",
        (b"x" * (MB + 1), "image/png"),
    ),
    _c(
        "detect without credentials at Lookout for Vision's path",
        "POST",
        "/2020-11-20/projects/cookies/models/1/detect",
        403,
        "Missing Authentication Token",
        (PNG, "image/png"),
        who="nobody",
    ),
    _c("detect on a stranger's project", "POST", f"{P}/other/models/1/detect", 404, "Not found", (PNG, "image/png")),
    # --- The console ---
    _c("console: project named new", "POST", "/projects/new/", 400, "is a word the console uses", form(name="new")),
    _c(
        "console: labeling nothing",
        "POST",
        "/projects/cookies/images/label",
        400,
        "Select at least one image",
        form(label="normal"),
    ),
    _c(
        "console: labeling an id beyond the database",
        "POST",
        "/projects/cookies/images/label",
        400,
        "below 2⁶³",
        form(ids=[HUGE], label="normal"),
    ),
    _c(
        "console: moving no image of this project",
        "POST",
        "/projects/cookies/images/move",
        400,
        "None of the selected images",
        form(ids=["OTHER_IMAGE"], split="test"),
    ),
    _c(
        "console: moving to an unknown dataset",
        "POST",
        "/projects/cookies/images/move",
        400,
        "val is not one of",
        form(ids=[1], split="val"),
    ),
    _c(
        "console: upload that is not an image",
        "POST",
        "/projects/cookies/images/add",
        400,
        "not an image",
        multipart(("file", "a.png", b"nope")),
    ),
    _c(
        "console: zip that is not a zip",
        "POST",
        "/projects/cookies/images/import",
        302,
        "not a zip archive",
        multipart(("file", "a.zip", b"nope"), ("split", None, b"train")),
    ),
    _c(
        "console: the 59 KB zip bomb",
        "POST",
        "/projects/cookies/images/import",
        302,
        "would unpack to 9.6 GB",
        multipart(("file", "bomb.zip", overlapping_bomb()), ("split", None, b"train")),
    ),
    _c(
        "console: removing a member id beyond the database",
        "POST",
        f"/projects/cookies/members/{HUGE}/remove",
        302,
        "not a member",
    ),
    _c(
        "console: a stranger's upload",
        "POST",
        "/projects/cookies/images/add",
        404,
        "Not found",
        multipart(("file", "a.png", png())),
        who="stranger",
    ),
]


def _ids(case: Case) -> str:
    return case.name


@pytest.fixture
def world(settings):
    settings.KENPIN_MAX_UPLOAD_BYTES = MB
    owner, viewer, stranger = UserFactory(), UserFactory(), UserFactory()
    project = make_project(owner=owner, name="cookies")
    member_set(project=project, username=viewer.username, role="viewer")
    first = dataset_add_image(project=project, data=PNG, name="first.png", label="normal")
    add_image(project, label="anomaly")
    other = make_project(owner=stranger, name="other")
    other_image = add_image(other, label="normal")
    ModelVersion.objects.create(project=project, version=1, backbone="lite0", status=Status.TRAINED, threshold=0.5)
    ModelVersion.objects.create(project=project, version=2, backbone="lite0", status=Status.TRAINING_FAILED)
    ModelVersion.objects.create(project=other, version=1, backbone="lite0", status=Status.TRAINED, threshold=0.5)
    tokens = {
        who: api_token_create(user=user, name="catalogue")[1]
        for who, user in (("owner", owner), ("viewer", viewer), ("stranger", stranger))
    }
    return {
        "users": {"owner": owner, "viewer": viewer, "stranger": stranger},
        "tokens": tokens,
        "image": first.pk,
        "other_image": other_image.pk,
    }


def _state() -> dict:
    media = Path(django_settings.MEDIA_ROOT)
    return {
        "projects": Project.objects.count(),
        "images": Image.objects.count(),
        "versions": ModelVersion.objects.count(),
        "trials": TrialDetection.objects.count(),
        "labels": sorted(Image.objects.values_list("pk", "label", "dataset__split")),
        "files": sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file()) if media.exists() else [],
    }


def test_the_catalogue_has_at_least_60_cases():
    assert len(CASES) >= 60
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_a_bad_request_is_refused_in_words_and_changes_nothing(client, world, case):
    path = case.path.replace("{image}", str(world["image"])).replace("{other_image}", str(world["other_image"]))
    body = case.body.replace(b"OTHER_IMAGE", str(world["other_image"]).encode())
    headers = {}
    if case.api and case.who in world["tokens"]:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {world['tokens'][case.who]}"
    elif case.api and case.who == "wrong-token":
        headers["HTTP_AUTHORIZATION"] = "Bearer kp_not-a-token"
    elif not case.api and case.who in world["users"]:
        client.login(username=world["users"][case.who].username, password=PASSWORD)
    if not case.api and any(script in path for script in ("images/add", "images/label", "images/move")):
        headers["HTTP_ACCEPT"] = "application/json"
    before = _state()
    response = client.generic(case.method, path, body, content_type=case.content_type, **headers)
    assert response.status_code == case.status, response.content[:500]
    if response.status_code == 302:  # back to a page that shows the refusal
        response = client.get(response.url)
    text = response.content.decode(errors="replace")
    if case.api or "application/json" in response.get("Content-Type", ""):
        message = response.json()["message"]
        assert message and case.words in message, message
    else:
        from html import unescape

        assert case.words in unescape(text), text[:2000]
    assert _state() == before

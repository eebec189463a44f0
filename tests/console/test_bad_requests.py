"""No request makes Kenpin fail with 500: every write route, found by walking the URL resolver
and the API's OpenAPI schema (so that routes added later are covered without a test of their
own), gets malformed multipart, oversize names, too many parts, huge ids, wrong types and broken
JSON, as its owner, and must answer each with a status below 500.
"""

import json
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from console.api import api
from projects.tokens import api_token_create
from tests.factories import PASSWORD, UserFactory, add_image, image_bytes, make_project
from training.models import ModelVersion, Status

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999"  # beyond SQLite's and PostgreSQL's integers


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "kenpin") -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


PNG = image_bytes(width=40, height=40, seed=7)
FORM_FIELDS = [
    ("label", None, b"normal"),
    ("dataset", None, b"train"),
    ("split", None, b"train"),
    ("model_version", None, b"1"),
]

BAD_BODIES = {
    "multipart without a boundary": ("multipart/form-data", _multipart([("file", "a.png", PNG)])),
    "truncated multipart": ("multipart/form-data; boundary=kenpin", _multipart([("file", "a.png", PNG)])[:-30]),
    "multipart with garbage": ("multipart/form-data; boundary=kenpin", b"\x00\xff" * 500),
    "a 1,004-character file name": (
        "multipart/form-data; boundary=kenpin",
        _multipart([("file", "a" * 1000 + ".png", PNG), ("files", "b" * 1000 + ".png", PNG), *FORM_FIELDS]),
    ),
    "2,001 files": (
        "multipart/form-data; boundary=kenpin",
        _multipart([("files", f"{i}.png", b"x") for i in range(2001)] + FORM_FIELDS),
    ),
    "1,001 ids": (
        "application/x-www-form-urlencoded",
        "&".join([f"ids={i}" for i in range(1, 1002)] + [f"image_ids={i}" for i in range(1, 1002)]).encode()
        + b"&model_version=1&label=normal&split=test",
    ),
    "huge ids in a form": (
        "application/x-www-form-urlencoded",
        f"ids={HUGE}&image_ids={HUGE}&model_version={HUGE}&version={HUGE}&user_id={HUGE}&label=normal&split=test".encode(),
    ),
    "huge ids in multipart": (
        "multipart/form-data; boundary=kenpin",
        _multipart(
            [("model_version", None, HUGE.encode()), ("image_ids", None, HUGE.encode()), ("files", "a.png", PNG)]
        ),
    ),
    "wrong types in JSON": (
        "application/json",
        json.dumps(
            {
                "name": 5,
                "description": [],
                "threshold": "x",
                "label": {},
                "dataset": 3,
                "verdict": 1,
                "ids": "x",
                "backbone": None,
            }
        ).encode(),
    ),
    "huge numbers in JSON": (
        "application/json",
        json.dumps({"threshold": 1e308, "ids": [int(HUGE)], "name": "x" * 5000, "description": "y" * 100_000}).encode(),
    ),
    "broken JSON": ("application/json", b'{"name": '),
    "a JSON array": ("application/json", b"[1, 2, 3]"),
    "bytes that are no image": ("image/jpeg", b"\xff\xd8\xff" + b"\x00" * 3000),
}


def _routes(resolver: URLResolver, prefix: str = ""):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield "/" + prefix + str(pattern.pattern)


def _api_operations() -> set[tuple[str, str]]:
    """(method, route) of every write operation in the OpenAPI schema, `{param}` in the route."""
    schema = api.get_openapi_schema(path_prefix="")
    return {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in ("post", "put", "patch", "delete")
    }


def _console_routes() -> set[str]:
    routes = set()
    for route in _routes(get_resolver()):
        if route.startswith(("/api/", "/2020-11-20/", "/admin/", "/static/")):
            continue
        routes.add(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))
    return routes


CASES = sorted(_api_operations()) + sorted(("POST", route) for route in _console_routes())


@pytest.fixture
def world(client):
    owner = UserFactory(is_staff=True, is_superuser=True)
    project = make_project(owner=owner, name="cookies")
    image = add_image(project, label="normal")
    ModelVersion.objects.create(project=project, version=1, backbone="lite0", status=Status.TRAINED, threshold=0.5)
    _, token = api_token_create(user=owner, name="bad requests")
    client.login(username=owner.username, password=PASSWORD)
    ids = {"name": "cookies", "project": "cookies", "version": 1, "image_id": image.pk, "user_id": owner.pk}
    return {"token": token, "ids": ids}


def _path(route: str, ids: dict, *, huge: bool) -> str:
    def fill(match):
        name = match.group(1)
        if name in ("name", "project"):
            return ids[name]
        return HUGE if huge else str(ids.get(name, 1))

    return re.sub(r"\{(\w+)\}", fill, route)


@pytest.mark.parametrize(("method", "route"), CASES, ids=[f"{m} {r}" for m, r in CASES])
def test_no_bad_request_makes_a_write_route_fail_with_500(client, world, method, route):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {world['token']}"} if route.startswith(("/api/", "/2020-11-20/")) else {}
    failures = []
    for huge in (False, True):
        if huge and "{" not in route.replace("{name}", "").replace("{project}", ""):
            continue
        path = _path(route, world["ids"], huge=huge)
        for what, (content_type, body) in BAD_BODIES.items():
            response = client.generic(method, path, body, content_type=content_type, **headers)
            if response.status_code >= 500:
                failures.append(f"{what}{' (huge ids in the path)' if huge else ''}: {response.status_code}")
    assert failures == []

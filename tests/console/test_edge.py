"""console.edge through the real web server (gunicorn): refusals before the body is read,
chunked bodies, and one keep-alive connection that survives every kind of error answer; and,
called directly, what it lets through without looking at the route.

The server runs with a 2 MB upload limit, so that bodies over the limits stay cheap to send.
"""

import io
import socket
import time

import pytest
import requests

from projects.models import Image
from projects.tokens import api_token_create
from tests.factories import UserFactory, image_bytes, make_project
from tests.served import Gunicorn
from training.models import ModelVersion, Status

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1024 * 1024
UPLOAD_LIMIT = 2 * MB


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    web = Gunicorn(KENPIN_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT), KENPIN_MAX_ZIP_BYTES=str(8 * MB))
    yield web
    web.stop()


@pytest.fixture
def owner(db):
    user = UserFactory()
    project = make_project(owner=user, name="cookies")
    ModelVersion.objects.create(project=project, version=1, backbone="lite0", status=Status.TRAINED)
    _, token = api_token_create(user=user, name="edge")
    return {"Authorization": f"Bearer {token}"}


def raw_request(port: int, head: str, body: bytes = b"", *, read_timeout: float = 10) -> tuple[bytes, float]:
    """Send `head` (and `body`) on a fresh connection; the whole answer until the server closes
    or goes quiet, and the seconds it took to start."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        started = time.monotonic()
        sock.sendall(head.encode() + body)
        answer = sock.recv(65536)
        first = time.monotonic() - started
        sock.settimeout(1)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    return answer, first


def test_one_session_survives_404_401_409_413_and_400_answers_to_large_bodies(server, owner):
    session = requests.Session()
    big = b"\xff\xd8" + b"x" * 470_000  # a detect body as large as a real photo
    base = f"{server.url}/api/v1/projects"
    calls = [
        (404, lambda: session.post(f"{base}/nothing/models/1/detect", data=big, headers=owner)),
        (401, lambda: session.post(f"{base}/cookies/models/1/detect", data=big)),
        (409, lambda: session.post(f"{base}/cookies/models/1/detect", data=big, headers=owner)),
        (413, lambda: session.post(f"{base}/cookies/models/1/detect", data=b"x" * (UPLOAD_LIMIT + 1), headers=owner)),
        (400, lambda: session.post(f"{base}/cookies/images", files={"file": ("a.jpg", big)}, headers=owner)),
        (404, lambda: session.post(f"{server.url}/api/v1/nowhere", data=big, headers=owner)),
    ]
    for _ in range(3):
        for status, call in calls:
            response = call()
            assert response.status_code == status, response.text
            assert response.json()["message"]
            assert session.get(f"{base}/cookies", headers=owner).status_code == 200
    pools = session.get_adapter(server.url).poolmanager.pools
    opened = sum(pools[key].num_connections for key in pools.keys())
    assert opened == 1, f"{opened} connections opened: one was not kept across the error answers"


def test_a_chunked_upload_of_a_valid_image_is_stored(server, owner):
    photo = image_bytes(width=120, height=90, fmt="JPEG")

    def chunks():
        for i in range(0, len(photo), 1000):
            yield photo[i : i + 1000]

    boundary = "kenpinboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="chunked.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    response = requests.post(
        f"{server.url}/api/v1/projects/cookies/images",
        data=(part for part in (body, *chunks(), f"\r\n--{boundary}--\r\n".encode())),
        headers={**owner, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 201, response.text
    assert Image.objects.get().original_name == "chunked.jpg"


def test_a_chunked_body_over_the_limit_is_refused_while_it_arrives(server, owner):
    def endless():
        for _ in range(200):  # 12.8 MB, more than any route here takes
            yield b"x" * 65536

    try:
        response = requests.post(
            f"{server.url}/api/v1/projects/cookies/images",
            data=endless(),
            headers={**owner, "Content-Type": "multipart/form-data; boundary=x"},
        )
    except requests.ConnectionError:
        pytest.fail("the refusal did not reach the client")
    assert response.status_code == 413 and response.headers["Connection"] == "close"
    assert "at most" in response.json()["message"] or "over" in response.json()["message"]


def test_a_body_over_the_routes_limit_is_refused_from_its_length_without_reading_it(server, owner):
    head = (
        "POST /api/v1/projects/cookies/images HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {owner['Authorization']}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        "Content-Length: 1073741824\r\n\r\n"
    )
    answer, seconds = raw_request(server.port, head)  # not one byte of the 1 GB body is sent
    assert answer.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in answer
    assert b"1024 MB; this address accepts at most 5 MB" in answer
    assert seconds < 1


@pytest.mark.parametrize("role", ["stranger", "viewer"])
def test_a_write_without_the_right_is_refused_before_its_body_is_read(server, owner, role):
    member = UserFactory()
    if role == "viewer":
        from projects.projects import member_set

        member_set(project=ModelVersion.objects.get().project, username=member.username, role="viewer")
    _, token = api_token_create(user=member, name="edge")
    head = (
        "POST /api/v1/projects/cookies/images HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {UPLOAD_LIMIT}\r\n\r\n"
    )
    answer, seconds = raw_request(server.port, head)  # the body never comes: the answer must not wait for it
    expected = b"HTTP/1.1 404 " if role == "stranger" else b"HTTP/1.1 403 "
    assert answer.startswith(expected) and seconds < 2, answer[:200]


def test_a_signed_in_strangers_form_post_is_refused_before_the_csrf_check_reads_it(server, db):
    from django.test import Client

    owner_user = UserFactory()
    make_project(owner=owner_user, name="private")
    stranger = UserFactory()
    client = Client()
    client.force_login(stranger)
    cookie = client.cookies["sessionid"].value
    head = (
        "POST /projects/private/images/add HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Cookie: sessionid={cookie}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {UPLOAD_LIMIT}\r\n\r\n"
    )
    answer, seconds = raw_request(server.port, head)
    assert answer.startswith(b"HTTP/1.1 404 ") and seconds < 2, answer[:200]


def test_a_body_within_every_routes_limit_goes_through_without_resolving_its_route(monkeypatch):
    # Resolving costs 0.1-0.3 ms of every detect call, and Django resolves the route again anyway.
    from console import edge

    resolved = []
    monkeypatch.setattr(edge, "resolve", lambda path: resolved.append(path))
    seen = []

    def application(environ, start_response):
        seen.append(environ["wsgi.input"].read())
        start_response("200 OK", [])
        return [b""]

    body = b"\xff\xd8" + b"x" * 470_000
    environ = {
        "PATH_INFO": "/api/v1/projects/cookies/models/1/detect",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    edge.EdgeApp(application)(environ, lambda status, headers: None)
    assert seen == [body] and resolved == []

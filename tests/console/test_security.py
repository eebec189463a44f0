"""Content-Security-Policy that the console's own pages satisfy, HTTPS settings, and throttling.

The inline-script checks walk every template and every page the URL resolver knows, so pages
added later are held to the same rule without a test of their own.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver

from console.security import CONTENT_SECURITY_POLICY
from tests.factories import PASSWORD, UserFactory, add_image, make_project

ROOT = Path(settings.BASE_DIR)

SCRIPT_TAG = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
EVENT_HANDLER = re.compile(r"<[a-z][^>]*\s(on[a-z]+)\s*=", re.I)
JS_URL = re.compile(r"""(href|src|action)\s*=\s*["']\s*javascript:""", re.I)


def inline_script_problems(html: str) -> list[str]:
    problems = []
    for attributes, body in SCRIPT_TAG.findall(html):
        data_block = re.search(r"type\s*=\s*[\"']application/(ld\+)?json[\"']", attributes)
        if "src=" not in attributes and not data_block:
            problems.append(f"inline <script{attributes}>{body.strip()[:60]}")
        elif body.strip() and not data_block:
            problems.append(f"<script{attributes}> with a body")
    problems += [f"inline event handler {name}=" for name in EVENT_HANDLER.findall(html)]
    problems += [f"javascript: URL in {attr}=" for attr in JS_URL.findall(html)]
    return problems


def our_templates() -> list[Path]:
    folders = [ROOT / "templates"] + [p for p in ROOT.glob("*/templates") if ".venv" not in p.parts]
    return sorted(path for folder in folders for path in folder.rglob("*.html"))


def test_no_template_holds_an_inline_script_event_handler_or_javascript_url():
    templates = our_templates()
    assert len(templates) > 20
    problems = {str(p.relative_to(ROOT)): found for p in templates if (found := inline_script_problems(p.read_text()))}
    assert problems == {}, "Move scripts to static/ and pass data with json_script: " + json.dumps(problems, indent=1)


def test_the_scan_finds_what_it_looks_for():
    assert inline_script_problems("<script>alert(1)</script>")
    assert inline_script_problems('<button onclick="go()">')
    assert inline_script_problems('<a href="javascript:go()">')
    assert not inline_script_problems('<script src="/static/a.js" defer></script>')
    assert not inline_script_problems('<script id="x" type="application/json">{"a": 1}</script>')


def _pages(resolver: URLResolver, prefix: str = ""):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from _pages(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


def _fill(route: str, values: dict) -> str | None:
    """A route with every <converter:name> replaced by a value of that name; None when unknown."""
    missing = []

    def value(match):
        name = match.group(2)
        if name not in values:
            missing.append(name)
            return ""
        return str(values[name])

    path = re.sub(r"<(?:(\w+):)?(\w+)>", value, route)
    return None if missing or path.startswith("^") else "/" + path


@pytest.mark.django_db
def test_every_console_page_has_the_policy_and_no_inline_script(client, restore_model_version):
    owner = UserFactory(is_staff=True, is_superuser=True)
    project = make_project(owner=owner, name="cookies")
    image = add_image(project, label="normal")
    mv = restore_model_version(project)
    client.login(username=owner.username, password=PASSWORD)
    values = {
        "name": project.name,
        "project": project.name,
        "version": mv.version,
        "image_id": image.pk,
        "user_id": owner.pk,
        "token_id": 1,
        "row_id": mv.images.first().pk,
    }
    checked = []
    for route in _pages(get_resolver()):
        path = _fill(route, values)
        if path is None or path.startswith(("/static/", "/api/openapi", "/admin/")):
            continue
        response = client.get(path)
        if response.status_code != 200 or "text/html" not in response.get("Content-Type", ""):
            continue
        checked.append(path)
        assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
        html = b"".join(response.streaming_content if response.streaming else [response.content]).decode()
        assert inline_script_problems(html) == [], path
    assert len(checked) > 10, checked


def test_the_policy_allows_only_our_own_scripts():
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY and "object-src 'none'" in CONTENT_SECURITY_POLICY


def _settings_with(**env) -> dict:
    code = (
        "import json, django; from django.conf import settings; django.setup(); print(json.dumps({k: getattr("
        "settings, k, None) for k in ('SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', "
        "'SECURE_PROXY_SSL_HEADER', 'SECURE_SSL_REDIRECT')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "console.settings", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_behind_https_cookies_are_secure_and_hsts_is_sent():
    plain = _settings_with()
    assert plain["SESSION_COOKIE_SECURE"] is False and not plain["SECURE_HSTS_SECONDS"]
    https = _settings_with(KENPIN_HTTPS="true")
    assert https["SESSION_COOKIE_SECURE"] is True and https["CSRF_COOKIE_SECURE"] is True
    assert https["SECURE_HSTS_SECONDS"] == 365 * 24 * 3600 and https["SECURE_SSL_REDIRECT"] is True
    assert https["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert _settings_with(KENPIN_SECURE_COOKIES="true")["SESSION_COOKIE_SECURE"] is True


@pytest.mark.django_db
def test_sign_in_is_refused_with_429_after_too_many_wrong_passwords_even_with_the_right_one(client, settings):
    settings.KENPIN_LOGIN_FAILURES = 5
    user = UserFactory()
    for _ in range(5):
        assert client.post("/login/", {"username": user.username, "password": "wrong"}).status_code == 200
    response = client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 429 and 0 < int(response["Retry-After"]) <= settings.KENPIN_LOGIN_WINDOW
    assert "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # Another person signs in as usual.
    other = UserFactory()
    assert client.post("/login/", {"username": other.username, "password": PASSWORD}).status_code == 302


@pytest.mark.django_db
def test_a_right_password_clears_the_count_of_wrong_ones(client, settings):
    settings.KENPIN_LOGIN_FAILURES = 3
    user = UserFactory()
    for _ in range(2):
        client.post("/login/", {"username": user.username, "password": "wrong"})
    assert client.post("/login/", {"username": user.username, "password": PASSWORD}).status_code == 302
    client.logout()
    for _ in range(2):
        assert client.post("/login/", {"username": user.username, "password": "wrong"}).status_code == 200
    assert client.post("/login/", {"username": user.username, "password": PASSWORD}).status_code == 302


@pytest.mark.django_db
def test_api_calls_beyond_the_rate_answer_429_with_retry_after(api_client, settings):
    settings.KENPIN_API_RATE = 3
    user = UserFactory()
    api = api_client(user)
    assert [api.get("/api/v1/projects").status_code for _ in range(3)] == [200, 200, 200]
    response = api.get("/api/v1/projects")
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1
    assert response.json()["error"] == "throttled" and "at most 3 a minute" in response.json()["message"]
    # Another token has its own count.
    assert api_client(user).get("/api/v1/projects").status_code == 200


def test_api_calls_are_answered_when_the_throttles_redis_fails_midway(api_client, settings, monkeypatch):
    # redis-py 8 can raise ValueError ("I/O operation on closed file") when a new connection's
    # handshake times out: not counting for a moment beats answering 500.
    from console import security

    class Broken:
        def pipeline(self):
            raise ValueError("I/O operation on closed file.")

        def get(self, key):
            raise OSError(9, "Bad file descriptor")

    settings.KENPIN_API_RATE = 5
    monkeypatch.setattr(security, "client", lambda: Broken())
    client = api_client(UserFactory())
    assert all(client.get("/api/v1/projects").status_code == 200 for _ in range(8))

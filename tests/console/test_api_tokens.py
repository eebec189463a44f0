"""The console's API tokens page and `manage.py create_token`."""

import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from projects.models import ApiToken
from projects.tokens import api_token_authenticate, api_token_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_the_top_bar_links_to_the_tokens_page(signed_in):
    assert 'href="/account/tokens/"' in signed_in.get("/").content.decode()


def test_a_token_is_shown_once_and_works_for_the_api(signed_in, user):
    response = signed_in.post("/account/tokens/", {"name": "line-2-camera"})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    token = re.search(r'id="new-token"[^>]*value="([^"]+)"', response.content.decode())[1]
    assert api_token_authenticate(token=token) == user
    assert Client(headers={"Authorization": f"Bearer {token}"}).get("/api/v1/projects").status_code == 200

    again = signed_in.get("/account/tokens/").content.decode()
    assert "line-2-camera" in again and token[:10] in again and token not in again


def test_revoking_a_token_stops_it(signed_in, user):
    row, token = api_token_create(user=user, name="old")
    response = signed_in.post(f"/account/tokens/{row.pk}/revoke")
    assert response.status_code == 302 and response["Location"] == "/account/tokens/"
    assert api_token_authenticate(token=token) is None
    assert "old" not in signed_in.get("/account/tokens/").content.decode().split('id="token-list"')[-1]


def test_nobody_revokes_or_sees_someone_elses_token(signed_in):
    row, token = api_token_create(user=UserFactory(), name="someone-elses")
    assert "someone-elses" not in signed_in.get("/account/tokens/").content.decode()
    assert signed_in.post(f"/account/tokens/{row.pk}/revoke").status_code == 404
    assert api_token_authenticate(token=token) is not None


def test_the_tokens_page_requires_signing_in(client):
    UserFactory()
    response = client.get("/account/tokens/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_create_token_prints_only_the_token(user):
    out = io.StringIO()
    call_command("create_token", user.username, "--name", "ci", stdout=out)
    token = out.getvalue().strip()
    assert out.getvalue() == token + "\n" and " " not in token
    assert api_token_authenticate(token=token) == user
    assert ApiToken.objects.get(user=user).name == "ci"


def test_create_token_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="no user named"):
        call_command("create_token", "nobody", stdout=io.StringIO())


def test_a_new_token_comes_with_an_aws_access_key_shown_once(signed_in, user):
    from lookout.services import access_key_authenticate

    page = signed_in.post("/account/tokens/", {"name": "sdk"}).content.decode()
    key_id = re.search(r'id="new-access-key-id"[^>]*value="([^"]+)"', page)[1]
    secret = re.search(r'id="new-secret-access-key"[^>]*value="([^"]+)"', page)[1]
    assert key_id.startswith("AKKP") and len(key_id) == 20 and len(secret) == 40
    assert access_key_authenticate(access_key_id=key_id) == (user, secret)
    again = signed_in.get("/account/tokens/").content.decode()
    assert key_id in again and secret not in again


def test_create_token_with_aws_prints_the_key_and_secret_on_its_last_line(user):
    from lookout.models import AccessKey
    from lookout.services import access_key_authenticate

    out = io.StringIO()
    call_command("create_token", user.username, "--aws", stdout=out)
    token, last = out.getvalue().splitlines()
    key_id, secret = last.split(" ")
    assert api_token_authenticate(token=token) == user
    assert access_key_authenticate(access_key_id=key_id) == (user, secret)
    assert secret not in AccessKey.objects.get(access_key_id=key_id).secret_ciphertext

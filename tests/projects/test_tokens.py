import pytest

from projects.tokens import api_token_authenticate, api_token_create, api_token_revoke

pytestmark = pytest.mark.django_db


def test_api_tokens_are_stored_hashed_and_can_be_revoked(user):
    row, token = api_token_create(user=user, name="line 2")
    assert token.startswith("kp_") and token not in (row.digest, row.prefix) and len(token) > 40
    assert api_token_authenticate(token=token) == user
    assert api_token_authenticate(token=token + "x") is None
    api_token_revoke(user=user, token_id=row.pk)
    assert api_token_authenticate(token=token) is None

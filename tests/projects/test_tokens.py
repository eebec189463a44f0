import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from projects.tokens import api_token_authenticate, api_token_create, api_token_revoke

pytestmark = pytest.mark.django_db


def test_api_tokens_are_stored_hashed_and_can_be_revoked(user):
    row, token = api_token_create(user=user, name="line 2")
    assert token.startswith("kp_") and token not in (row.digest, row.prefix) and len(token) > 40
    assert api_token_authenticate(token=token) == user
    assert api_token_authenticate(token=token + "x") is None
    api_token_revoke(user=user, token_id=row.pk)
    assert api_token_authenticate(token=token) is None


def test_a_token_is_checked_in_one_query_that_sorts_nothing(user):
    # Every API call asks; sorting the one row it can find (first()) was work for nothing.
    _, token = api_token_create(user=user, name="line 2")
    api_token_authenticate(token=token)  # records last_used_at, at most once a minute
    with CaptureQueriesContext(connection) as queries:
        assert api_token_authenticate(token=token) == user
    [query] = queries.captured_queries
    assert "ORDER BY" not in query["sql"]

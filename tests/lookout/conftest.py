import boto3
import pytest
from botocore.config import Config

from lookout.services import access_key_create
from projects.services import api_token_create


@pytest.fixture
def aws_keys():
    """aws_keys(user) -> (access key id, secret) of a new API token of `user`."""

    def make(user):
        token, _ = api_token_create(user=user, name="aws")
        key, secret = access_key_create(token=token)
        return key.access_key_id, secret

    return make


@pytest.fixture
def lookoutvision_for(live_server, aws_keys):
    """lookoutvision_for(user) -> the real boto3 `lookoutvision` client, signing as `user`,
    talking to this test's Kenpin server. No retries: a test sees each answer as it is."""

    def make(user, **overrides):
        key_id, secret = aws_keys(user)
        options = {
            "endpoint_url": live_server.url,
            "region_name": "eu-west-1",
            "aws_access_key_id": key_id,
            "aws_secret_access_key": secret,
            "config": Config(retries={"max_attempts": 1, "mode": "standard"}),
        }
        return boto3.client("lookoutvision", **{**options, **overrides})

    return make


@pytest.fixture
def lookoutvision(lookoutvision_for, user):
    return lookoutvision_for(user)

import boto3
import pytest
from botocore.config import Config

from lookout.services import access_key_create
from projects.tokens import api_token_create


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


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server at AWS_ENDPOINT_URL_S3 (tests/settings.py), for the whole session: the
    worker processes read manifests and images from it with the standard credential chain."""
    import os

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(os.environ["KENPIN_TEST_S3_PORT"]), verbose=False)
    server.start()
    yield os.environ["AWS_ENDPOINT_URL_S3"]
    server.stop()


@pytest.fixture
def s3(s3_server):
    """A boto3 S3 client on the test server, and a fresh bucket named `lines` emptied after the test."""
    import uuid

    client = boto3.client("s3")
    bucket = f"lines-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    client.bucket = bucket
    yield client
    for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


def wait_for(read, done, *, timeout=120, interval=0.3, what=""):
    """Call `read()` until `done(value)`; the last value. Fails with `what` after `timeout` s."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {value}"
        time.sleep(interval)

"""The AWS CLI (`aws lookoutvision`, awscli of the pinned botocore) against Kenpin."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

AWS = Path(sys.executable).parent / "aws"


@pytest.fixture(autouse=True)
def _live(transactional_db):
    pass


def aws(live_server, key_id, secret, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="ap-northeast-1")
    return subprocess.run(
        [str(AWS), "lookoutvision", *args, "--endpoint-url", live_server.url, "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_aws_cli_creates_lists_and_describes_projects(live_server, aws_keys, user):
    key_id, secret = aws_keys(user)
    created = aws(live_server, key_id, secret, "create-project", "--project-name", "cookies")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["ProjectMetadata"]["ProjectArn"].startswith(
        "arn:aws:lookoutvision:ap-northeast-1:"
    )
    listed = aws(live_server, key_id, secret, "list-projects")
    assert [p["ProjectName"] for p in json.loads(listed.stdout)["Projects"]] == ["cookies"]
    missing = aws(live_server, key_id, secret, "describe-project", "--project-name", "nothing")
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr and "nothing" in missing.stderr
    wrong = aws(live_server, key_id, "not-the-secret", "list-projects")
    assert wrong.returncode != 0 and "InvalidSignatureException" in wrong.stderr

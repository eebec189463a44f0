"""S3 settings switch image storage to an S3-compatible store with no code change.

A real S3 protocol server (moto's) on localhost stands in for AWS or MinIO; separate Kenpin
processes configured only through S3_* variables store an image there and delete it again.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]

STORE = """
from django.contrib.auth import get_user_model
from django.core.files.storage import storages
from projects.images import dataset_add_image
from projects.projects import project_create
from tests.factories import image_bytes

assert type(storages["default"]).__name__ == "S3Storage", storages["default"]
project = project_create(user=get_user_model().objects.create(username="s3"), name="s3-project")
data = image_bytes(width=120, height=80, fmt="JPEG")
image = dataset_add_image(project=project, data=data, name="a.jpg", label="normal")
with image.file.open("rb") as f:
    assert f.read() == data
"""

DELETE = """
from django.db import transaction
from projects.models import Image
from projects.images import images_delete

image = Image.objects.get()
with transaction.atomic():
    images_delete(project=image.project, image_ids=[image.pk])
"""


DELETE_PROJECT_FILES = """
from django.contrib.auth import get_user_model
from projects.images import dataset_add_image
from projects.projects import project_create
from projects.tasks import project_delete_files
from tests.factories import image_bytes

user = get_user_model().objects.create(username="s3")
doomed, kept = (project_create(user=user, name=name) for name in ("doomed", "kept"))
for project in (doomed, doomed, kept):
    dataset_add_image(project=project, data=image_bytes(width=120, height=80), name="a.png")
assert project_delete_files(doomed.pk) == 4  # two images and their thumbnails
assert project_delete_files(doomed.pk) == 0  # a redelivered task finds nothing left
print(kept.pk)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def kenpin_on_s3(s3_server, tmp_path):
    """(manage, keys): run manage.py in a Kenpin configured for S3 only by S3_* variables, and
    list the bucket's keys."""
    credentials = {"aws_access_key_id": "kenpin", "aws_secret_access_key": "kenpin-secret", "region_name": "us-east-1"}
    s3 = boto3.client("s3", endpoint_url=s3_server, **credentials)
    s3.create_bucket(Bucket="kenpin-images")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KENPIN_", "DATABASE_URL", "S3_", "AWS_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="console.settings",
        KENPIN_DATA_DIR=str(tmp_path),
        S3_BUCKET="kenpin-images",
        S3_ENDPOINT_URL=s3_server,
        S3_REGION="us-east-1",
        S3_PREFIX="site-a",
        S3_ACCESS_KEY_ID=credentials["aws_access_key_id"],
        S3_SECRET_ACCESS_KEY=credentials["aws_secret_access_key"],
    )

    def manage(*args) -> str:
        run = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return run.stdout

    def keys():
        return sorted(o["Key"] for o in s3.list_objects_v2(Bucket="kenpin-images").get("Contents", []))

    manage("migrate", "-v0")
    return manage, keys


def test_images_go_to_an_s3_compatible_store_when_s3_is_configured(kenpin_on_s3, tmp_path):
    manage, keys = kenpin_on_s3
    manage("shell", "-c", STORE)
    stored = keys()
    assert [k.split("/")[:4:3] for k in stored] == [["site-a", "images"], ["site-a", "thumbnails"]], stored
    manage("shell", "-c", DELETE)
    assert keys() == []
    assert not (tmp_path / "media").exists()  # nothing went to local disk


def test_a_deleted_projects_files_are_listed_and_deleted_on_s3(kenpin_on_s3):
    manage, keys = kenpin_on_s3
    kept = manage("shell", "-c", DELETE_PROJECT_FILES).split()[-1]
    remaining = keys()
    assert len(remaining) == 2 and all(key.startswith(f"site-a/projects/{kept}/") for key in remaining), remaining

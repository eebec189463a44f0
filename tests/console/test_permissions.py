"""Every project URL, walked for every kind of visitor. New URLs are covered automatically:
a URL with a parameter this test does not know fails until a value is added to `values`."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from inference.models import DetectionRecord, TrialDetection, TrialImage
from lookout.models import DatasetJob, PackagingJob
from projects.classes import anomaly_class_create
from projects.models import ZipImport
from tests.factories import PASSWORD, UserFactory, add_image, image_bytes, make_project
from training.models import ModelVersion, Status

pytestmark = pytest.mark.django_db


def _project_urls(patterns=None, prefix="", namespace=""):
    """(pattern, view name, default kwargs) of every URL whose route names a project."""
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _project_urls(entry.url_patterns, route, ns)
        elif isinstance(entry, URLPattern) and "<str:name>" in route:
            yield route, namespace + entry.name, entry.default_args


@pytest.fixture
def world(user):
    viewer, editor = UserFactory(), UserFactory()
    project = make_project(owner=user, viewer=viewer, editor=editor)
    image = add_image(project, label="anomaly", mask=image_bytes(mode="L", seed=5))
    anomaly_class = anomaly_class_create(project=project, name="crack")
    mv = ModelVersion.objects.create(project=project, version=1, backbone="lite0", status=Status.TRAINED, threshold=0.5)
    trial = TrialDetection.objects.create(project=project, model_version=mv, name="t", threshold=0.5)
    trial_image = TrialImage.objects.create(trial=trial, sha256="0" * 64, width=64, height=48, is_anomalous=True)
    dataset_job = DatasetJob.objects.create(project=project, split="train", kind="create", status="CREATE_COMPLETE")
    package = PackagingJob.objects.create(project=project, model_version=mv, name="pkg", status="SUCCEEDED")
    zip_import = ZipImport.objects.create(project=project, split="train", status="COMPLETE")
    detection = DetectionRecord.objects.create(
        model_version=mv,
        at=timezone.now(),
        is_anomalous=True,
        score=0.9,
        anomalous_fraction=0.1,
        latency_ms=40,
        inference_ms=20,
    )
    values = {
        "name": project.name,
        "image_id": image.pk,
        "version": mv.version,
        "trial_id": trial.pk,
        "trial_image_id": trial_image.pk,
        "user_id": viewer.pk,
        "row_id": 1,
        "job_id": dataset_job.pk,
        "job_name": package.name,
        "class_id": anomaly_class.pk,
        "import_id": zip_import.pk,
        "record_id": detection.pk,
    }
    return {"project": project, "viewer": viewer, "editor": editor, "owner": user, "values": values}


def _urls(world):
    urls = []
    for route, name, defaults in _project_urls():
        params = set(re.findall(r"<(?:\w+:)?(\w+)>", route)) - set(defaults)
        unknown = params - set(world["values"])
        assert not unknown, f"{name} takes {unknown}: add a value to `values` in {__file__}"
        urls.append((name, reverse(name, kwargs={p: world["values"][p] for p in params})))
    assert len(urls) >= 5
    return urls


def _client(client, user):
    client.login(username=user.username, password=PASSWORD)
    return client


def test_a_stranger_gets_404_for_every_project_url(client, world):
    """404 for every method the URL takes; a method it never takes gets 405 whatever the
    project, so that answer reveals nothing either."""
    stranger = _client(client, UserFactory())
    project = world["project"].name
    for name, url in _urls(world):
        for method in (stranger.get, stranger.post):
            status = method(url).status_code
            if status == 405:
                status = method(url.replace(f"/{project}/", "/no-such-project/", 1)).status_code
                assert status == 405, f"{method.__name__.upper()} {url} ({name})"
            else:
                assert status == 404, f"{method.__name__.upper()} {url} ({name})"


def test_an_anonymous_visitor_is_sent_to_sign_in(client, world):
    for _name, url in _urls(world):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url


def test_a_viewer_reads_but_never_changes_anything(client, world):
    viewer = _client(client, world["viewer"])
    for _name, url in _urls(world):
        get, post = viewer.get(url), viewer.post(url)
        assert get.status_code not in (403, 500), f"GET {url}: {get.status_code}"
        assert post.status_code in (403, 405), f"POST {url}: {post.status_code}"

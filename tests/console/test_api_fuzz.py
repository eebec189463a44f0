"""The v1 API fuzzed by schemathesis against its own OpenAPI schema (/api/openapi.json), through
Kenpin's real web server (gunicorn and the edge, on the test database): the examples, coverage,
fuzzing and stateful phases with every check, on a seeded project, so that requests reach the code
behind the 404s. Bounded (examples per operation, steps) so that it stays a couple of minutes on
two cores."""

import re

import pytest
import schemathesis
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from schemathesis import engine
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events

from console.api import api
from inference.models import TrialDetection, TrialImage
from lookout.models import PackagingJob
from projects.classes import anomaly_class_create
from projects.models import ZipImport
from projects.tokens import api_token_create
from tests.factories import UserFactory, add_image, fill_project, image_bytes, make_project, make_trained_version
from tests.served import Gunicorn

pytestmark = [pytest.mark.django_db(transaction=True)]

MAX_EXAMPLES = 6  # per operation and phase

BINARY_BODIES = [
    ("POST", "/api/v1/projects/{name}/images"),
    ("POST", "/api/v1/projects/{name}/imports"),
    ("PUT", "/api/v1/projects/{name}/images/{image_id}/mask"),
    ("POST", "/api/v1/projects/{name}/models/{version}/detect"),
    ("POST", "/api/v1/projects/{name}/models/{version}/detect-batch"),
    ("POST", "/api/v1/projects/{name}/trials"),
]


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    # Thousands of calls a minute from one token: the throttle is tested elsewhere.
    web = Gunicorn(KENPIN_API_RATE="0")
    yield web
    web.stop()


@pytest.fixture
def seeded(user):
    """A project with something behind every route: images (one with a mask), a class, a trained
    version, a trial, a zip import, a model package. The fuzzer's token is an editor's: it may
    change anything in the project but not delete it (owners only), so the run keeps its seed;
    the projects it creates are its own to delete."""
    editor = UserFactory()
    project = make_project(owner=user, name="cookies", editor=editor)
    # Enough images to train (Lookout for Vision's 20 normal and 10 anomalous, and a few to spare
    # for what the fuzzer relabels), so that starting a training is accepted, not refused.
    fill_project(project, normal=22, anomaly=9)
    normal = add_image(project, label="normal", name="n.png")
    anomaly = add_image(project, label="anomaly", name="a.png", mask=image_bytes(mode="L", seed=3))
    crack = anomaly_class_create(project=project, name="crack", color="")
    mv = make_trained_version(project, scores={normal: 0.1, anomaly: 0.9})
    trial = TrialDetection.objects.create(project=project, model_version=mv, name="t", threshold=0.5)
    trial_image = TrialImage.objects.create(trial=trial, sha256="0" * 64, width=64, height=48, is_anomalous=True)
    zip_import = ZipImport.objects.create(project=project, split="train", status="COMPLETE")
    package = default_storage.save(f"projects/{project.pk}/packages/pkg.zip", ContentFile(b"PK\x05\x06" + bytes(18)))
    PackagingJob.objects.create(project=project, model_version=mv, name="pkg", status="SUCCEEDED", package=package)
    _, token = api_token_create(user=editor, name="fuzz")
    values = {
        "name": "cookies",
        "image_id": normal.pk,
        "class_id": crack.pk,
        "version": mv.version,
        "trial_id": trial.pk,
        "trial_image_id": trial_image.pk,
        "import_id": zip_import.pk,
        "result_id": mv.images.first().pk,
        "kind": "thumbnail",  # a trial image's file, thumbnail or heatmap: the enum is checked by the API tests
        "job_name": "pkg",
    }
    return token, values


def operations(values: dict) -> list[dict]:
    """schemathesis's settings of each operation: the seed's values in its path, so that calls reach
    the code behind the 404s. Not for what DELETE removes: those come from what the run creates
    (the stateful phase follows the links), or the seed would be gone before the run ends."""
    configs = []
    for path, methods in api.get_openapi_schema()["paths"].items():
        for method in methods:
            names = re.findall(r"{(\w+)}", path)
            if method == "delete":
                names = [n for n in names[:-1] if n != "name" or path != "/api/v1/projects/{name}"]
            config = {
                "include-path": path,
                "include-method": method.upper(),
                "parameters": {f"path.{n}": values[n] for n in names},
            }
            if (method.upper(), path) in BINARY_BODIES:
                # A body that must be a photo (or a zip, or a mask of the image's size) cannot be
                # told apart from other bytes by a JSON Schema: valid by the schema, it may be
                # refused with 400 and a message, which is what these operations must do.
                # 403 too: the fuzzer's token is an editor's, refused where only owners may act.
                config["checks"] = {"positive_data_acceptance": {"expected-statuses": ["2xx", 400, 403, 404, 409]}}
            configs.append(config)
    return configs


def describe(event) -> list[str]:
    found = []
    for case_id, checks in event.recorder.checks.items():
        for check in checks:
            if check.status == Status.FAILURE:
                case = event.recorder.cases[case_id].value
                info = check.failure_info
                interaction = event.recorder.interactions.get(case_id)
                answer = interaction.response.content[:300] if interaction and interaction.response else b""
                found.append(
                    f"{event.label} [{event.phase.value}] {check.name}: {info.failure.title if info else ''}\n"
                    f"  {info.failure.message if info else ''}\n  {case.as_curl_command()[:600]}\n  -> {answer!r}"
                )
    return found


def test_the_api_answers_as_its_schema_says_to_whatever_schemathesis_sends(server, seeded):
    token, values = seeded
    common = {"seed": 20261203, "headers": {"Authorization": f"Bearer {token}"}}
    # The examples, coverage and fuzzing phases call each operation on the seeded project.
    by_operation = {
        **common,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
        "phases": {"stateful": {"enabled": False}},
        "operations": operations(values),
    }
    # The stateful phase chains calls by the links between operations (a project created, then
    # images uploaded into it, listed, relabelled, deleted...), on what it creates itself: values
    # fixed in paths would point it at rows an earlier step of its own may have deleted.
    stateful = {
        **common,
        "generation": {"max-examples": MAX_EXAMPLES},
        "phases": {
            "examples": {"enabled": False},
            "coverage": {"enabled": False},
            "fuzzing": {"enabled": False},
            "stateful": {"enabled": True, "max-steps": 30},
        },
        "operations": [{k: v for k, v in c.items() if k != "parameters"} for c in operations(values) if "checks" in c],
    }
    failures, errors, phases = [], [], {}
    for settings in (by_operation, stateful):
        config = SchemathesisConfig.from_dict(settings)
        schema = schemathesis.openapi.from_url(f"{server.url}/api/openapi.json", config=config)
        for event in engine.from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                phases[event.phase.value] = phases.get(event.phase.value, 0) + 1
                failures += describe(event)
            elif isinstance(event, events.NonFatalError):
                errors.append(f"{event.label}: {event.info.message}")
            elif isinstance(event, events.FatalError):
                raise event.exception
    assert not errors, "\n".join(errors)
    assert not failures, f"{len(failures)} failures:\n" + "\n\n".join(failures)
    assert {"examples", "coverage", "fuzzing", "stateful"} <= set(phases), phases

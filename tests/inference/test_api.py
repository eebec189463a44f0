"""API v1: hosting and DetectAnomalies, with a real model in the real inference worker."""

import base64
import io
import json
import re
import threading
import time

import numpy as np
import pytest
from django.db import connection
from PIL import Image as PILImage

from console.celery import app
from inference import handoff
from inference.control import unload_everywhere
from inference.models import DetectionRecord, TrialDetection, TrialStatus
from projects.models import Image, Label
from projects.projects import member_set
from tests.conftest import cookie_photos
from tests.factories import UserFactory, add_image, image_bytes, make_project
from tests.workers import Worker
from training.models import ModelVersion, Status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

UNSEEN_NORMAL = cookie_photos("normal", "test", 4)
UNSEEN_ANOMALY = cookie_photos("anomaly", "test", 4)


def wait_for_status(mv: ModelVersion, goal: str, timeout: float = 60) -> ModelVersion:
    deadline = time.monotonic() + timeout
    while (mv := ModelVersion.objects.get(pk=mv.pk)).status != goal:
        assert time.monotonic() < deadline, f"still {mv.status} ({mv.status_message}), not {goal}"
        time.sleep(0.05)
    return mv


def hosted_in(worker: Worker) -> list[int]:
    replies = app.control.broadcast("kenpin_hosted_models", reply=True, destination=[worker.name], timeout=5)
    assert replies, f"{worker.name} did not answer"
    return replies[0][worker.name]["hosted"]


@pytest.fixture
def owner_api(user, api_client):
    return api_client(user)


@pytest.fixture
def hosted(project, owner_api, restore_model_version, celery_worker):
    """A real cookie model, hosted through the API in the real inference worker."""
    mv = restore_model_version(project)
    response = owner_api.post(f"/api/v1/projects/cookies/models/{mv.version}/start")
    assert response.status_code == 202 and response.json() == {"version": mv.version, "status": "STARTING_HOSTING"}
    mv = wait_for_status(mv, Status.HOSTED)
    yield mv
    unload_everywhere(model_version_ids=[mv.pk])  # the session's worker outlives this test's rows


def detect(client, mv, path, *, legacy=False):
    url = (
        f"/2020-11-20/projects/{mv.project.name}/models/{mv.version}/detect"
        if legacy
        else f"/api/v1/projects/{mv.project.name}/models/{mv.version}/detect"
    )
    content_type = "image/png" if path.suffix == ".png" else "image/jpeg"
    return client.post(url, path.read_bytes(), content_type=content_type)


def check_detect_anomaly_result(body: dict, *, width: int, height: int) -> dict:
    """Lookout for Vision's DetectAnomalies response, field for field, and a mask that agrees with it."""
    assert list(body) == ["DetectAnomalyResult"]
    result = body["DetectAnomalyResult"]
    assert list(result)[:5] == ["Source", "IsAnomalous", "Confidence", "AnomalyMask", "Anomalies"]
    # Kenpin's own path adds whether the photo is like the training photos; Lookout for Vision's does not.
    assert list(result)[5:] in ([], ["UnlikeTrainingPhotos", "UnlikeTrainingPhotosReason"])
    assert result["Source"] == {"Type": "direct"}
    assert isinstance(result["IsAnomalous"], bool)
    assert isinstance(result["Confidence"], float) and 0.0 <= result["Confidence"] <= 1.0
    anomalies = result["Anomalies"]
    assert anomalies[0]["Name"] == "background" and anomalies[0]["PixelAnomaly"]["Color"] == "#FFFFFF"
    for anomaly in anomalies:
        assert list(anomaly) == ["Name", "PixelAnomaly"]
        assert list(anomaly["PixelAnomaly"]) == ["TotalPercentageArea", "Color"]
        assert 0.0 <= anomaly["PixelAnomaly"]["TotalPercentageArea"] <= 1.0
    assert [a["Name"] for a in anomalies[1:]] in ([], ["anomaly"])
    assert sum(a["PixelAnomaly"]["TotalPercentageArea"] for a in anomalies) == pytest.approx(1.0)

    mask = PILImage.open(io.BytesIO(base64.b64decode(result["AnomalyMask"], validate=True)))
    assert mask.format == "PNG" and mask.size == (width, height)
    rgb = np.asarray(mask.convert("RGB")).reshape(-1, 3)
    colours = {f"#{r:02X}{g:02X}{b:02X}": n for (r, g, b), n in zip(*np.unique(rgb, axis=0, return_counts=True))}
    expected = {a["Name"]: a["PixelAnomaly"] for a in anomalies}
    assert set(colours) <= {p["Color"] for p in expected.values()}
    for pixel_anomaly in expected.values():
        share = colours.get(pixel_anomaly["Color"], 0) / (width * height)
        assert share == pytest.approx(pixel_anomaly["TotalPercentageArea"], abs=1e-6)
    return result


# --- DetectAnomalies ----------------------------------------------------------------------------


def test_detect_answers_lookout_for_visions_response_on_real_photos(hosted, owner_api):
    answers = {}
    for path in UNSEEN_NORMAL + UNSEEN_ANOMALY:
        response = detect(owner_api, hosted, path)
        assert response.status_code == 200, response.content[:300]
        width, height = PILImage.open(path).size
        answers[path.name] = check_detect_anomaly_result(response.json(), width=width, height=height)
    # The worker's share first, then every stage of the call (scripts/detect_bench.py reads them).
    timing = dict(m.split(";dur=") for m in response["Server-Timing"].split(", "))
    assert list(timing)[0] == "inference"
    assert {"take", "decode", "predict", "mask_png", "handoff", "record", "access", "body"} <= set(timing)
    assert all(re.fullmatch(r"\d+(\.\d+)?", ms) for ms in timing.values()), timing
    right = [answers[p.name]["IsAnomalous"] is False for p in UNSEEN_NORMAL]
    right += [answers[p.name]["IsAnomalous"] is True for p in UNSEEN_ANOMALY]
    # Photos the model never saw: a working model gets nearly all right (the engine's own
    # benchmark measures its accuracy; here a broken pipeline would score about half).
    assert sum(right) >= 7, {name: a["IsAnomalous"] for name, a in answers.items()}
    flagged = [a for a in answers.values() if a["IsAnomalous"]]
    assert flagged and all(len(a["Anomalies"]) == 2 for a in flagged), "an anomalous photo has no defect area"
    # Photos of the same line, framed as the training photos were: none is called unlike them.
    assert not any(a["UnlikeTrainingPhotos"] for a in answers.values())

    # Every call is recorded for the operations view; anomalous ones keep their photo and mask.
    records = list(DetectionRecord.objects.filter(model_version=hosted).order_by("at"))
    assert len(records) == 8 and [r.is_anomalous for r in records] == [a["IsAnomalous"] for a in answers.values()]
    assert all(r.latency_ms >= r.inference_ms > 0 for r in records)
    assert all(bool(r.photo) == bool(r.mask) == r.is_anomalous for r in records)
    mask = PILImage.open(records[-1].mask.open("rb")) if records[-1].mask else None
    assert mask is None or mask.size == PILImage.open(UNSEEN_ANOMALY[-1]).size
    # The photo kept is a thumbnail the worker made from the photo it decoded.
    kept = [PILImage.open(r.photo.open("rb")) for r in records if r.photo]
    assert kept and all(p.format == "JPEG" and max(p.size) == 320 for p in kept)


def test_a_photo_unlike_the_training_photos_is_flagged_beside_lookout_for_visions_fields(hosted, owner_api):
    url = f"/api/v1/projects/cookies/models/{hosted.version}/detect"
    result = owner_api.post(url, framed_cookie(), content_type="image/jpeg").json()["DetectAnomalyResult"]
    assert result["UnlikeTrainingPhotos"] is True
    assert result["UnlikeTrainingPhotosReason"].startswith("Unlike the training photos:")
    assert "proportions" in result["UnlikeTrainingPhotosReason"] or "aspect" in result["UnlikeTrainingPhotosReason"]
    assert DetectionRecord.objects.get(model_version=hosted).unlike is True


def test_lookout_for_visions_own_path_answers_the_same_body(hosted, owner_api):
    for path in (UNSEEN_NORMAL[0], UNSEEN_ANOMALY[0]):
        v1 = detect(owner_api, hosted, path)
        legacy = detect(owner_api, hosted, path, legacy=True)
        assert v1.status_code == legacy.status_code == 200
        # The same answer; Lookout for Vision's path writes its members in the service model's order.
        kenpin = v1.json()
        assert kenpin["DetectAnomalyResult"].pop("UnlikeTrainingPhotos") is False
        assert kenpin["DetectAnomalyResult"].pop("UnlikeTrainingPhotosReason") == ""
        assert legacy.json() == kenpin
        assert legacy["Content-Type"].startswith("application/json")


def test_png_and_greyscale_images_are_detected_too(hosted, owner_api):
    photo = PILImage.open(UNSEEN_NORMAL[0])
    for mode in ("RGB", "L", "RGBA"):
        out = io.BytesIO()
        photo.convert(mode).save(out, format="PNG")
        url = f"/api/v1/projects/cookies/models/{hosted.version}/detect"
        response = owner_api.post(url, out.getvalue(), content_type="image/png")
        assert response.status_code == 200, (mode, response.content[:300])
        check_detect_anomaly_result(response.json(), width=photo.width, height=photo.height)


def test_a_bad_image_answers_400_with_a_message(hosted, owner_api):
    url = f"/api/v1/projects/cookies/models/{hosted.version}/detect"
    truncated = UNSEEN_NORMAL[0].read_bytes()[:5000]
    for body, code in (
        (b"not an image at all", "not_an_image"),
        (truncated, None),
        (b"", "empty"),
        (image_bytes(width=8, height=8), "too_small"),
    ):
        response = owner_api.post(url, body, content_type="image/jpeg")
        assert response.status_code == 400, (code, response.content[:300])
        assert set(response.json()) == {"error", "message"} and response.json()["message"]
        assert code is None or response.json()["error"] == code
    # The model is still hosted and answering.
    assert detect(owner_api, hosted, UNSEEN_NORMAL[0]).status_code == 200


def test_a_body_over_the_upload_limit_answers_413_before_it_is_read(hosted, owner_api, settings):
    settings.KENPIN_MAX_UPLOAD_BYTES = UNSEEN_NORMAL[0].stat().st_size // 2
    response = detect(owner_api, hosted, UNSEEN_NORMAL[0])
    assert response.status_code == 413 and response.json()["error"] == "too_large"


def test_detect_on_a_model_that_is_not_hosted_answers_409(project, owner_api, restore_model_version):
    mv = restore_model_version(project)
    response = detect(owner_api, mv, UNSEEN_NORMAL[0])
    assert response.status_code == 409 and response.json()["error"] == "not_hosted"
    assert "POST" in response.json()["message"] and "/start" in response.json()["message"]
    assert detect(owner_api, mv, UNSEEN_NORMAL[0], legacy=True).status_code == 409
    response = owner_api.post("/api/v1/projects/cookies/models/99/detect", b"x", content_type="image/jpeg")
    assert response.status_code == 404


def test_a_viewer_may_detect(hosted, api_client):
    viewer = UserFactory()
    member_set(project=hosted.project, username=viewer.username, role="viewer")
    assert detect(api_client(viewer), hosted, UNSEEN_ANOMALY[0]).status_code == 200


def test_no_inference_worker_answering_in_time_is_503(hosted, owner_api, settings):
    # Calls go where no worker listens: a waiting worker takes a call within a millisecond.
    settings.KENPIN_REDIS_PREFIX = f"{settings.KENPIN_REDIS_PREFIX}nobody-listens:"
    settings.KENPIN_DETECT_TIMEOUT = 0.2
    response = detect(owner_api, hosted, UNSEEN_NORMAL[0])
    assert response.status_code == 503 and response.json()["error"] == "unavailable"
    assert response["Retry-After"] == "5"


def test_detect_while_redis_is_unreachable_answers_503_with_retry_after(hosted, owner_api, settings):
    settings.KENPIN_HANDOFF_REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    handoff._client.cache_clear()
    try:
        response = detect(owner_api, hosted, UNSEEN_NORMAL[0])
    finally:
        handoff._client.cache_clear()
    assert response.status_code == 503 and response.json()["error"] == "unavailable"
    assert "cannot reach its Redis" in response.json()["message"] and response["Retry-After"] == "5"


def test_detect_answers_503_when_a_redis_connection_breaks_in_its_handshake(hosted, owner_api, monkeypatch):
    class Broken:  # what redis-py 8 lets escape when a new connection's handshake times out
        def pipeline(self, *args, **kwargs):
            raise ValueError("I/O operation on closed file.")

        def delete(self, *keys):
            raise OSError(9, "Bad file descriptor")

    monkeypatch.setattr(handoff, "client", lambda: Broken())
    response = detect(owner_api, hosted, UNSEEN_NORMAL[0])
    assert response.status_code == 503 and "cannot reach its Redis" in response.json()["message"]
    assert response["Retry-After"] == "5"


# --- Several photos in one request -----------------------------------------------------------------


def detect_batch(client, mv, parts):
    """parts: [(file name, bytes)], sent as multipart parts named `files`, in order."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    files = [SimpleUploadedFile(name, data, "image/jpeg") for name, data in parts]
    return client.post(f"/api/v1/projects/{mv.project.name}/models/{mv.version}/detect-batch", {"files": files})


def test_a_batch_answers_each_photo_in_order_as_a_call_for_that_photo_alone(hosted, owner_api):
    photos = [UNSEEN_ANOMALY[0], UNSEEN_NORMAL[0], UNSEEN_NORMAL[1], UNSEEN_ANOMALY[1], UNSEEN_NORMAL[0]]
    records = DetectionRecord.objects.count()
    response = detect_batch(owner_api, hosted, [(p.name, p.read_bytes()) for p in photos])
    assert response.status_code == 200, response.content[:300]
    results = response.json()["Results"]
    assert [r["File"] for r in results] == [p.name for p in photos]
    assert all(r["Error"] is None for r in results)
    for photo, result in zip(photos, results):
        width, height = PILImage.open(photo).size
        check_detect_anomaly_result({"DetectAnomalyResult": result["DetectAnomalyResult"]}, width=width, height=height)
        assert result["DetectAnomalyResult"] == detect(owner_api, hosted, photo).json()["DetectAnomalyResult"]
    assert [r["DetectAnomalyResult"]["IsAnomalous"] for r in results][:2] == [True, False]
    # Each photo is one detect call on the Operations page (and the single calls above, one each).
    assert DetectionRecord.objects.count() == records + 2 * len(photos)


def test_a_photo_that_cannot_be_used_answers_its_error_in_its_place(hosted, owner_api, settings):
    good = UNSEEN_NORMAL[0].read_bytes()
    settings.KENPIN_MAX_UPLOAD_BYTES = len(good) + 10
    parts = [
        ("a.jpg", good),
        ("notes.txt", b"not an image at all"),
        ("half.jpg", good[:5000]),
        ("tiny.png", image_bytes(width=8, height=8)),
        ("huge.jpg", good + b"x" * 100),
        ("b.jpg", good),
    ]
    response = detect_batch(owner_api, hosted, parts)
    assert response.status_code == 200, response.content[:300]
    results = response.json()["Results"]
    assert [r["File"] for r in results] == [name for name, _ in parts]
    assert [r["Error"]["error"] if r["Error"] else None for r in results] == [
        None,
        "not_an_image",
        "corrupt",
        "too_small",
        "too_large",
        None,
    ]
    assert all(r["Error"]["message"] and r["DetectAnomalyResult"] is None for r in results[1:5])
    assert results[0]["DetectAnomalyResult"] == results[5]["DetectAnomalyResult"]


def test_a_batch_is_refused_whole_without_photos_with_too_many_or_on_a_model_not_hosted(
    hosted, owner_api, project, restore_model_version, api_client
):
    photo = (UNSEEN_NORMAL[0].name, UNSEEN_NORMAL[0].read_bytes())
    response = detect_batch(owner_api, hosted, [photo] * 17)
    assert response.status_code == 400 and response.json()["error"] == "too_many_files"
    assert "16" in response.json()["message"]
    assert detect_batch(owner_api, hosted, [photo] * 16).status_code == 200
    url = f"/api/v1/projects/cookies/models/{hosted.version}/detect-batch"
    for body in ({}, {"files": "not a file"}):
        response = owner_api.post(url, body)
        assert response.status_code == 400 and set(response.json()) == {"error", "message"}, response.content
    response = owner_api.post(url, b"raw bytes", content_type="image/jpeg")
    assert response.status_code == 400 and set(response.json()) == {"error", "message"}
    # Hosting, access and the version as for one photo.
    other = restore_model_version(project)
    response = detect_batch(owner_api, other, [photo])
    assert response.status_code == 409 and response.json()["error"] == "not_hosted"
    stranger = api_client(UserFactory())
    assert detect_batch(stranger, hosted, [photo]).status_code == 404
    viewer = UserFactory()
    member_set(project=hosted.project, username=viewer.username, role="viewer")
    assert detect_batch(api_client(viewer), hosted, [photo]).status_code == 200
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = owner_api.post(
        "/api/v1/projects/cookies/models/99/detect-batch", {"files": [SimpleUploadedFile(*photo, "image/jpeg")]}
    )
    assert response.status_code == 404


def test_a_batch_with_no_worker_answering_in_time_is_503(hosted, owner_api, settings):
    # As for one photo: a 1 ms timeout alone was a race, lost once the worker got faster (it claims
    # a call within a millisecond and the caller's wait is at least 10 ms).
    settings.KENPIN_REDIS_PREFIX = f"{settings.KENPIN_REDIS_PREFIX}nobody-listens:"
    settings.KENPIN_DETECT_TIMEOUT = 0.2
    response = detect_batch(owner_api, hosted, [(UNSEEN_NORMAL[0].name, UNSEEN_NORMAL[0].read_bytes())] * 2)
    assert response.status_code == 503 and response.json()["error"] == "unavailable"


def test_a_new_threshold_applies_to_the_next_call(hosted, owner_api):
    url = f"/api/v1/projects/cookies/models/{hosted.version}"
    photo = UNSEEN_NORMAL[0]
    result = detect(owner_api, hosted, photo).json()["DetectAnomalyResult"]
    # Confidence is 0.5 at the threshold and 1 at score 0 (or 1): the score follows from it.
    threshold, share = hosted.threshold, 2 * result["Confidence"] - 1
    score = threshold + share * (1 - threshold) if result["IsAnomalous"] else threshold - share * threshold
    assert 0.01 < score < 0.99, score
    for new_threshold, flagged in ((score * 0.98, True), (score * 1.02, False)):
        assert (
            owner_api.patch(url, json.dumps({"threshold": new_threshold}), content_type="application/json").status_code
            == 200
        )
        assert detect(owner_api, hosted, photo).json()["DetectAnomalyResult"]["IsAnomalous"] is flagged


# --- A hosted model under load ------------------------------------------------------------------


def test_a_hosted_model_survives_many_sequential_and_concurrent_calls(hosted, owner_api, api_client, user):
    photos = UNSEEN_NORMAL + UNSEEN_ANOMALY
    expected = {p.name: detect(owner_api, hosted, p).content for p in photos}
    for i in range(40):
        photo = photos[i % len(photos)]
        assert detect(owner_api, hosted, photo).content == expected[photo.name], f"call {i} on {photo.name}"

    wrong, done = [], []

    def client(n):
        own = api_client(user)
        try:
            for i in range(12):
                photo = photos[(n + i) % len(photos)]
                response = detect(own, hosted, photo)
                done.append(1)
                if response.status_code != 200 or response.content != expected[photo.name]:
                    wrong.append((n, i, photo.name, response.status_code))
        finally:
            # Each thread has its own database connection; left open, it keeps PostgreSQL from
            # dropping the test database at the end of the run.
            connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Every caller got the answer for its own photo, identical to the one-at-a-time answer.
    assert len(done) == 96 and wrong == []
    assert ModelVersion.objects.get(pk=hosted.pk).status == Status.HOSTED


def test_detect_calls_do_not_fill_the_workers_log(hosted, owner_api, celery_worker):
    assert detect(owner_api, hosted, UNSEEN_NORMAL[0]).status_code == 200
    before = len(celery_worker.log.read_text(errors="replace").splitlines())
    for _ in range(3):
        assert detect(owner_api, hosted, UNSEEN_NORMAL[0]).status_code == 200
    assert celery_worker.log.read_text(errors="replace").splitlines()[before:] == []


# --- Hosting ----------------------------------------------------------------------------------


def test_hosting_loads_the_model_into_the_inference_worker_and_stopping_unloads_it(hosted, owner_api, celery_worker):
    assert hosted.pk in hosted_in(celery_worker)
    body = owner_api.get(f"/api/v1/projects/cookies/models/{hosted.version}").json()
    assert body["status"] == "HOSTED"

    response = owner_api.post(f"/api/v1/projects/cookies/models/{hosted.version}/stop")
    assert response.status_code == 202 and response.json() == {"version": hosted.version, "status": "STOPPING_HOSTING"}
    wait_for_status(hosted, Status.TRAINED)
    assert hosted.pk not in hosted_in(celery_worker)
    assert detect(owner_api, hosted, UNSEEN_NORMAL[0]).status_code == 409


def test_starting_twice_changes_nothing_and_a_training_model_cannot_be_hosted(hosted, owner_api, project):
    response = owner_api.post(f"/api/v1/projects/cookies/models/{hosted.version}/start")
    assert response.status_code == 202 and response.json()["status"] == "HOSTED"
    training = ModelVersion.objects.create(
        project=project, version=hosted.version + 1, backbone="lite0", status=Status.TRAINING
    )
    for action in ("start", "stop"):
        response = owner_api.post(f"/api/v1/projects/cookies/models/{training.version}/{action}")
        assert response.status_code == 409, action
    response = owner_api.delete(f"/api/v1/projects/cookies/models/{hosted.version}")
    assert response.status_code == 409 and response.json()["error"] == "hosted"


def test_several_models_are_hosted_at_once(hosted, project, user, owner_api, restore_model_version, celery_worker):
    second = restore_model_version(project)
    owner_api.post(f"/api/v1/projects/cookies/models/{second.version}/start")
    second = wait_for_status(second, Status.HOSTED)
    other_project = make_project(owner=user, name="other-line")
    third = restore_model_version(other_project)
    owner_api.post(f"/api/v1/projects/other-line/models/{third.version}/start")
    third = wait_for_status(third, Status.HOSTED)
    try:
        assert {hosted.pk, second.pk, third.pk} <= set(hosted_in(celery_worker))
        answers = {detect(owner_api, mv, UNSEEN_ANOMALY[1]).content for mv in (hosted, second, third)}
        assert len(answers) == 1  # the same model restored three times answers the same
    finally:
        unload_everywhere(model_version_ids=[second.pk, third.pk])


def test_a_model_that_cannot_be_loaded_ends_hosting_failed_with_the_reason(
    project, owner_api, restore_model_version, celery_worker
):
    mv = restore_model_version(project)
    with mv.weights_file.open("wb") as f:
        f.write(b"these are not safetensors")
    owner_api.post(f"/api/v1/projects/cookies/models/{mv.version}/start")
    mv = wait_for_status(mv, Status.HOSTING_FAILED)
    assert "could not be loaded" in mv.status_message
    response = owner_api.post(f"/api/v1/projects/cookies/models/{mv.version}/stop")
    assert response.status_code == 202 and response.json()["status"] == "TRAINED"


def test_a_hosted_model_that_no_longer_loads_fails_its_hosting_instead_of_every_call(hosted, owner_api, celery_worker):
    """As after an engine upgrade or lost files: the worker lost its copy and cannot read it again."""
    unload_everywhere(model_version_ids=[hosted.pk])
    deadline = time.monotonic() + 10
    while hosted.pk in hosted_in(celery_worker):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with hosted.weights_file.open("wb") as f:
        f.write(b"no longer a model")
    response = detect(owner_api, hosted, UNSEEN_NORMAL[0])
    assert response.status_code == 409 and response.json()["error"] == "not_hosted"
    assert "HOSTING_FAILED" in response.json()["message"]
    mv = ModelVersion.objects.get(pk=hosted.pk)
    assert mv.status == Status.HOSTING_FAILED and "could not be loaded" in mv.status_message


def test_an_inference_worker_that_starts_loads_the_hosted_models(hosted):
    """A restarted (or added) inference worker holds the hosted models before any call needs them."""
    worker = Worker(queues="inference", concurrency=1)
    try:
        worker.wait_ready()
        deadline = time.monotonic() + 30
        while hosted.pk not in hosted_in(worker):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
    finally:
        worker.stop()


def test_deleting_the_project_unloads_its_hosted_model(hosted, owner_api, celery_worker):
    assert owner_api.delete("/api/v1/projects/cookies").status_code == 204
    deadline = time.monotonic() + 10
    while hosted.pk in hosted_in(celery_worker):
        assert time.monotonic() < deadline
        time.sleep(0.1)


# --- Trial detections ------------------------------------------------------------------------


def _wait_trial(trial_id: int, timeout: float = 60) -> TrialDetection:
    deadline = time.monotonic() + timeout
    while not (trial := TrialDetection.objects.get(pk=trial_id)).is_final:
        assert time.monotonic() < deadline, f"trial still {trial.status}"
        time.sleep(0.1)
    return trial


def test_a_trial_detection_from_creation_to_verified_images_in_the_dataset(
    project, owner_api, restore_model_version, celery_worker
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    mv = restore_model_version(project)
    known = add_image(project, label=Label.UNLABELED, width=96, height=96)
    files = [SimpleUploadedFile(p.name, p.read_bytes(), "image/jpeg") for p in (UNSEEN_NORMAL[1], UNSEEN_ANOMALY[1])]
    files.append(SimpleUploadedFile("notes.txt", b"not an image", "text/plain"))
    response = owner_api.post(
        "/api/v1/projects/cookies/trials",
        {"model_version": mv.version, "trial_name": "line 2, Monday", "files": files, "image_ids": [known.pk]},
    )
    assert response.status_code == 202, response.content
    created = response.json()
    assert created["name"] == "line 2, Monday" and created["model_version"] == mv.version
    assert created["image_count"] == 3 and [r["name"] for r in created["rejected"]] == ["notes.txt"]

    trial = _wait_trial(created["id"])
    assert trial.status == TrialStatus.COMPLETED
    progress = owner_api.get(f"/api/v1/projects/cookies/trials/{trial.pk}").json()
    assert (progress["status"], progress["progress"]) == ("COMPLETED", 100)
    assert [t["id"] for t in owner_api.get("/api/v1/projects/cookies/trials").json()] == [trial.pk]

    results = owner_api.get(f"/api/v1/projects/cookies/trials/{trial.pk}/images").json()
    assert results["count"] == 3
    rows = {r["name"]: r for r in results["items"]}
    for row in rows.values():
        assert isinstance(row["is_anomalous"], bool) and 0 <= row["confidence"] <= 1 and row["error"] == ""
        assert row["verdict"] == "unverified" and row["verified_label"] is None
    assert rows[known.original_name]["image_id"] == known.pk

    normal, anomaly = rows[UNSEEN_NORMAL[1].name], rows[UNSEEN_ANOMALY[1].name]
    url = f"/api/v1/projects/cookies/trials/{trial.pk}/images"
    photo = owner_api.get(f"{url}/{anomaly['id']}/file")
    assert b"".join(photo.streaming_content) == UNSEEN_ANOMALY[1].read_bytes()
    for kind, magic in (("thumbnail", b"\xff\xd8"), ("heatmap", b"\x89PNG")):
        response = owner_api.get(f"{url}/{anomaly['id']}/{kind}")
        assert response.status_code == 200 and b"".join(response.streaming_content).startswith(magic), kind
    assert owner_api.get(f"{url}/{rows[known.original_name]['id']}/thumbnail").status_code == 200  # the project's
    assert owner_api.get(f"{url}/{anomaly['id']}/mask").status_code in (400, 404)
    # Verdicts chosen so that the verified labels are the photos' true labels whatever was predicted.
    for row, truth in ((normal, False), (anomaly, True)):
        verdict = "correct" if row["is_anomalous"] == truth else "incorrect"
        body = owner_api.patch(
            f"{url}/{row['id']}", json.dumps({"verdict": verdict}), content_type="application/json"
        ).json()
        assert body["verdict"] == verdict and body["verified_label"] == ("anomaly" if truth else "normal")
    response = owner_api.patch(
        f"{url}/{normal['id']}", json.dumps({"verdict": "maybe"}), content_type="application/json"
    )
    assert response.status_code == 400

    report = owner_api.post(
        f"/api/v1/projects/cookies/trials/{trial.pk}/add-to-dataset",
        json.dumps({"dataset": "test"}),
        content_type="application/json",
    ).json()
    assert report == {"added": 2, "relabeled": 0, "skipped": []}
    added = {
        i.original_name: (i.label, i.dataset.split) for i in Image.objects.filter(project=project).exclude(pk=known.pk)
    }
    assert added == {UNSEEN_NORMAL[1].name: ("normal", "test"), UNSEEN_ANOMALY[1].name: ("anomaly", "test")}
    again = owner_api.post(
        f"/api/v1/projects/cookies/trials/{trial.pk}/add-to-dataset", "{}", content_type="application/json"
    )
    assert again.json() == {"added": 0, "relabeled": 0, "skipped": []}

    assert owner_api.delete(f"/api/v1/projects/cookies/trials/{trial.pk}").status_code == 204
    assert not TrialDetection.objects.exists()


def framed_cookie() -> bytes:
    """A cookie shrunk into a wide grey frame: another framing and proportions than any training photo."""
    cookie = PILImage.open(UNSEEN_NORMAL[0]).convert("RGB")
    frame = PILImage.new("RGB", (cookie.width * 3, cookie.height), (128, 128, 128))
    frame.paste(cookie.resize((cookie.width // 2, cookie.height // 2)), (cookie.width, cookie.height // 4))
    out = io.BytesIO()
    frame.save(out, format="JPEG")
    return out.getvalue()


def test_a_trial_flags_the_photo_unlike_the_training_photos(project, owner_api, restore_model_version, celery_worker):
    from django.core.files.uploadedfile import SimpleUploadedFile

    mv = restore_model_version(project)
    files = [
        SimpleUploadedFile("usual.jpg", UNSEEN_NORMAL[2].read_bytes(), "image/jpeg"),
        SimpleUploadedFile("framed.jpg", framed_cookie(), "image/jpeg"),
    ]
    response = owner_api.post("/api/v1/projects/cookies/trials", {"model_version": mv.version, "files": files})
    trial = _wait_trial(response.json()["id"])
    results = {
        r["name"]: r for r in owner_api.get(f"/api/v1/projects/cookies/trials/{trial.pk}/images").json()["items"]
    }
    assert results["usual.jpg"]["unlike"] is False and results["usual.jpg"]["unlike_message"] == ""
    assert results["framed.jpg"]["unlike"] is True
    assert results["framed.jpg"]["unlike_message"].startswith("Unlike the training photos: ")


def test_a_trial_needs_a_trained_version_and_a_usable_image(project, owner_api):
    from django.core.files.uploadedfile import SimpleUploadedFile

    training = ModelVersion.objects.create(project=project, version=1, backbone="lite0", status=Status.TRAINING)
    photo = SimpleUploadedFile("a.jpg", UNSEEN_NORMAL[0].read_bytes(), "image/jpeg")
    response = owner_api.post("/api/v1/projects/cookies/trials", {"model_version": training.version, "files": [photo]})
    assert response.status_code == 409 and response.json()["error"] == "not_trained"
    response = owner_api.post("/api/v1/projects/cookies/trials", {"model_version": 42, "files": [photo]})
    assert response.status_code == 400 and response.json()["error"] == "unknown_model_version"
    assert "no model version 42" in response.json()["message"]
    ModelVersion.objects.filter(pk=training.pk).update(status=Status.TRAINED, threshold=0.5)
    junk = SimpleUploadedFile("junk.jpg", b"junk", "image/jpeg")
    response = owner_api.post("/api/v1/projects/cookies/trials", {"model_version": 1, "files": [junk]})
    assert (
        response.status_code == 400
        and response.json()["error"] == "no_images"
        and "junk.jpg" in response.json()["message"]
    )
    response = owner_api.post("/api/v1/projects/cookies/trials", {"files": [photo]})
    assert response.status_code == 400 and "model_version" in response.json()["message"]

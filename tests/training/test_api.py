"""API v1: model versions."""

import json

import pytest

from engine.metrics import metrics_at_threshold, wilson_interval
from tests.factories import add_image, fill_project, make_project
from training import tasks
from training.models import ModelVersion, Status

pytestmark = pytest.mark.django_db


def _json(data):
    return {"data": json.dumps(data), "content_type": "application/json"}


@pytest.fixture
def owner_api(user, api_client):
    return api_client(user)


def test_training_is_refused_with_what_is_missing(user, owner_api):
    project = make_project(owner=user, name="cookies")
    add_image(project, label="normal")
    response = owner_api.post("/api/v1/projects/cookies/models", **_json({}))
    assert response.status_code == 400 and response.json()["error"] == "not_enough_data"
    assert "Add 19 more normal images" in response.json()["message"]
    assert not ModelVersion.objects.exists()


def test_starting_a_training_queues_it_and_answers_202(user, owner_api, monkeypatch):
    queued = []
    monkeypatch.setattr(tasks.train_model_version, "delay", queued.append)
    project = make_project(owner=user, name="cookies")
    fill_project(project)
    response = owner_api.post(
        "/api/v1/projects/cookies/models", **_json({"description": "first try", "backbone": "lite2"})
    )
    assert response.status_code == 202 and response.json() == {"version": 1, "status": "QUEUED"}
    mv = ModelVersion.objects.get()
    assert (mv.description, mv.backbone, mv.created_by) == ("first try", "lite2", user)
    listed = owner_api.get("/api/v1/projects/cookies/models").json()
    assert [(m["version"], m["status"], m["training_seconds"]) for m in listed] == [(1, "QUEUED", None)]
    body = owner_api.get("/api/v1/projects/cookies/models/1").json()
    assert body["performance"] is None and body["evaluation"] is None and body["status_message"]


def test_an_unknown_backbone_is_refused(user, owner_api):
    make_project(owner=user, name="cookies")
    response = owner_api.post("/api/v1/projects/cookies/models", **_json({"backbone": "resnet-9000"}))
    assert response.status_code == 400 and "backbone (JSON body)" in response.json()["message"]


def test_a_missing_version_is_404(user, owner_api):
    make_project(owner=user, name="cookies")
    for method in ("get", "delete"):
        assert getattr(owner_api, method)("/api/v1/projects/cookies/models/7").status_code == 404


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_trained_version_reports_its_performance_and_follows_its_threshold(user, owner_api, restore_model_version):
    project = make_project(owner=user, name="cookies")
    mv = restore_model_version(project)
    body = owner_api.get(f"/api/v1/projects/cookies/models/{mv.version}").json()
    assert body["status"] == "TRAINED" and body["backbone"] == mv.backbone
    assert body["training_seconds"] == pytest.approx(mv.training_seconds)
    assert body["evaluation"] in ("test_dataset", "cross_validation")
    performance = body["performance"]
    assert set(performance) == {
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "average_precision",
        "threshold",
        "trained_threshold",
        "confusion_matrix",
        "evaluated_images",
        "evaluated_normal",
        "evaluated_anomalous",
        "ci",
        "small_evaluation",
        "warning",
    }
    assert set(performance["confusion_matrix"]) == {"tp", "fp", "tn", "fn"}
    # At the trained threshold, the numbers and their intervals are the training's own.
    for key in ("precision", "recall", "f1", "roc_auc", "average_precision"):
        assert performance[key] == pytest.approx(mv.metrics[key]), key
        assert performance["ci"][key] == pytest.approx(mv.metrics["ci"][key]), key
        low, high = performance["ci"][key]
        assert low <= performance[key] <= high, key
    assert performance["ci"]["mask_iou"] == mv.metrics["ci"]["mask_iou"]
    assert performance["confusion_matrix"] == mv.metrics["confusion_matrix"]
    assert sum(performance["confusion_matrix"].values()) == performance["evaluated_images"] == 30
    assert performance["evaluated_normal"] + performance["evaluated_anomalous"] == 30
    # 30 photos prove little, and the answer says so with the F1 and its interval.
    assert performance["small_evaluation"] is True
    low, high = performance["ci"]["f1"]
    assert f"F1 {performance['f1']:.3f} (95 % interval {low:.2f}-{high:.3f}) from 30 photos" in performance["warning"]

    rows = list(mv.images.values_list("score", "label"))
    scores = sorted(score for score, _ in rows)
    threshold = (scores[14] + scores[15]) / 2  # the 15 highest-scoring images flagged
    response = owner_api.patch(f"/api/v1/projects/cookies/models/{mv.version}", **_json({"threshold": threshold}))
    assert response.status_code == 200
    moved = response.json()["performance"]
    expected = metrics_at_threshold([s for s, _ in rows], [int(label == "anomaly") for _, label in rows], threshold)
    assert moved["threshold"] == threshold and moved["trained_threshold"] == mv.trained_threshold
    assert moved["confusion_matrix"] == expected["confusion_matrix"]
    assert moved["confusion_matrix"]["tp"] + moved["confusion_matrix"]["fp"] == 15
    assert moved["roc_auc"] == performance["roc_auc"]  # threshold-free
    assert moved["ci"]["roc_auc"] == performance["ci"]["roc_auc"]
    assert moved["ci"]["precision"] == pytest.approx(
        list(wilson_interval(moved["confusion_matrix"]["tp"], 15)), abs=1e-5
    )
    assert ModelVersion.objects.get(pk=mv.pk).threshold == threshold

    for bad in (0, 1, 1.5, -0.2, "high"):
        response = owner_api.patch(f"/api/v1/projects/cookies/models/{mv.version}", **_json({"threshold": bad}))
        assert response.status_code == 400 and response.json()["error"] == "invalid", bad


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_deleting_a_version_removes_it_and_its_files(user, owner_api, restore_model_version):
    from django.core.files.storage import default_storage

    project = make_project(owner=user, name="cookies")
    mv = restore_model_version(project)
    names = [field.name for field in mv.artifact_files.values()]
    assert len(names) == 3
    assert owner_api.delete(f"/api/v1/projects/cookies/models/{mv.version}").status_code == 204
    assert not ModelVersion.objects.filter(pk=mv.pk).exists()
    assert not any(default_storage.exists(n) for n in names)


def test_a_threshold_of_an_untrained_version_cannot_be_set(user, owner_api):
    project = make_project(owner=user, name="cookies")
    ModelVersion.objects.create(project=project, version=1, backbone="lite0", status=Status.TRAINING)
    response = owner_api.patch("/api/v1/projects/cookies/models/1", **_json({"threshold": 0.3}))
    assert response.status_code == 409 and response.json()["error"] == "not_trained"


def test_a_running_training_is_cancelled_once_by_an_editor_not_a_viewer(user, owner_api, api_client):
    from tests.factories import UserFactory

    viewer = UserFactory()
    project = make_project(owner=user, name="cookies", viewer=viewer)
    mv = ModelVersion.objects.create(project=project, version=1, backbone="lite0", status=Status.TRAINING)
    url = "/api/v1/projects/cookies/models/1/cancel"
    assert api_client(viewer).post(url).status_code == 403
    response = owner_api.post(url)
    assert response.status_code == 200 and response.json() == {"version": 1, "status": "TRAINING_FAILED"}
    mv.refresh_from_db()
    assert mv.status == Status.TRAINING_FAILED and "Cancelled" in mv.status_message
    response = owner_api.post(url)
    assert response.status_code == 409 and response.json()["error"] == "not_training"
    assert owner_api.post("/api/v1/projects/cookies/models/2/cancel").status_code == 404


def test_a_versions_evaluated_images_are_listed_by_score_with_their_heatmaps(user, owner_api, api_client):
    from django.core.files.base import ContentFile

    from tests.factories import UserFactory, image_bytes
    from training.models import ModelVersionImage

    project = make_project(owner=user, name="cookies")
    mv = ModelVersion.objects.create(project=project, version=1, backbone="lite0", status=Status.TRAINED)
    heatmap = image_bytes(width=8, height=8, mode="RGBA")
    rows = [
        ModelVersionImage.objects.create(
            model_version=mv, sha256=f"{i:064x}", original_name=f"p{i}.jpg", split="train", label=label, score=score
        )
        for i, (label, score) in enumerate((("normal", 0.1), ("anomaly", 0.9), ("normal", 0.4)))
    ]
    ModelVersionImage.objects.create(model_version=mv, sha256="f" * 64, split="train", label="normal")  # not evaluated
    rows[1].heatmap.save("heat.png", ContentFile(heatmap))

    body = owner_api.get("/api/v1/projects/cookies/models/1/results").json()
    assert body["count"] == 3
    assert [(r["name"], r["label"], r["score"], r["has_heatmap"]) for r in body["items"]] == [
        ("p1.jpg", "anomaly", 0.9, True),
        ("p2.jpg", "normal", 0.4, False),
        ("p0.jpg", "normal", 0.1, False),
    ]
    url = f"/api/v1/projects/cookies/models/1/results/{rows[1].pk}/heatmap"
    response = owner_api.get(url)
    assert response.status_code == 200 and b"".join(response.streaming_content) == heatmap
    assert owner_api.get(f"/api/v1/projects/cookies/models/1/results/{rows[0].pk}/heatmap").status_code == 404
    assert api_client(UserFactory()).get(url).status_code == 404

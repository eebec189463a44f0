"""The model pages: train, live status, version results with the threshold, compare."""

import json
import re

import pytest

from projects.models import Membership, Role
from tests.factories import PASSWORD, UserFactory, add_image, fill_project, make_trained_version
from training.models import ModelVersion, Status

pytestmark = pytest.mark.django_db


def _scored(images, *, normal_score=0.2, anomaly_score=0.8):
    return {image: anomaly_score if image.label == "anomaly" else normal_score for image in images}


# --- Training ---------------------------------------------------------------------------------


def test_train_is_disabled_and_says_exactly_what_is_missing(signed_in, project):
    fill_project(project, normal=18, anomaly=10)
    page = signed_in.get("/projects/cookies/models/").content.decode()
    assert re.search(r'<button class="primary" id="train-button" disabled>', page)
    assert "Add 2 more normal images to the training dataset (it has 18, training needs at least 20)." in page


def test_training_starts_with_a_description_and_backbone_and_shows_its_progress(signed_in, project):
    fill_project(project)
    page = signed_in.get("/projects/cookies/models/").content.decode()
    assert 'id="train-button" disabled' not in page and 'name="backbone"' in page
    response = signed_in.post("/projects/cookies/models/train", {"description": "first", "backbone": "lite2"})
    assert response.status_code == 302 and response["Location"] == "/projects/cookies/models/1/"
    mv = ModelVersion.objects.get()
    assert (mv.description, mv.backbone, mv.status) == ("first", "lite2", Status.QUEUED)
    page = signed_in.get("/projects/cookies/models/1/").content.decode()
    assert 'hx-get="/projects/cookies/models/1/status"' in page and "Waiting for a training worker" in page


def test_starting_a_training_without_enough_data_says_why(signed_in, project):
    fill_project(project, normal=3, anomaly=0)
    response = signed_in.post("/projects/cookies/models/train", {"backbone": "lite0"}, follow=True)
    assert "Not enough labeled images to train. Add 17 more normal images" in response.content.decode()
    assert not ModelVersion.objects.exists()


def test_the_status_fragment_polls_while_training_and_refreshes_the_page_when_done(signed_in, project):
    mv = ModelVersion.objects.create(
        project=project, version=1, backbone="lite0", status=Status.TRAINING, stage="features", progress=42
    )
    fragment = signed_in.get("/projects/cookies/models/1/status", HTTP_HX_REQUEST="true")
    assert "Looking at the images" in fragment.content.decode() and "42%" in fragment.content.decode()
    assert "hx-trigger" in fragment.content.decode() and "HX-Refresh" not in fragment
    ModelVersion.objects.filter(pk=mv.pk).update(status=Status.TRAINED)
    fragment = signed_in.get("/projects/cookies/models/1/status", HTTP_HX_REQUEST="true")
    assert fragment["HX-Refresh"] == "true" and "hx-trigger" not in fragment.content.decode()


def test_a_failed_training_shows_why_and_what_to_do(signed_in, project):
    ModelVersion.objects.create(
        project=project,
        version=1,
        backbone="lite0",
        status=Status.TRAINING_FAILED,
        status_message="The image “x.png” was deleted after this training was started.",
    )
    page = signed_in.get("/projects/cookies/models/1/").content.decode()
    assert "Why:</strong> The image “x.png” was deleted" in page
    assert "What to do:" in page and "train a new version" in page


def test_cancelling_a_training(signed_in, project):
    ModelVersion.objects.create(project=project, version=1, backbone="lite0", status=Status.TRAINING)
    response = signed_in.post("/projects/cookies/models/1/cancel", follow=True)
    assert "was cancelled" in response.content.decode()
    assert ModelVersion.objects.get().status == Status.TRAINING_FAILED
    response = signed_in.post("/projects/cookies/models/1/cancel", follow=True)
    assert "already ended" in response.content.decode()


def test_a_viewer_cannot_start_or_cancel_trainings(client, project):
    viewer = UserFactory()
    Membership.objects.create(project=project, user=viewer, role=Role.VIEWER)
    fill_project(project)
    client.login(username=viewer.username, password=PASSWORD)
    assert "Viewers cannot start trainings" in client.get("/projects/cookies/models/").content.decode()
    assert client.post("/projects/cookies/models/train", {"backbone": "lite0"}).status_code == 403
    assert not ModelVersion.objects.exists()


# --- Version page -----------------------------------------------------------------------------


def test_the_version_page_counts_the_matrix_at_the_threshold_in_use(signed_in, project):
    images = fill_project(project, normal=4, anomaly=2)
    scores = _scored(images)
    scores[images[0]] = 0.6  # a normal image above 0.5: a false positive at the trained threshold
    make_trained_version(project, scores=scores, threshold=0.5)
    page = signed_in.get("/projects/cookies/models/1/").content.decode()
    assert re.search(r'id="cm-fp"[^>]*>1<', page) and re.search(r'id="cm-tp"[^>]*>2<', page)
    assert re.search(r'id="precision">0.667<', page) and re.search(r'id="recall">1.000<', page)
    assert "cross-validation" in page and "4 normal and 2 anomalous" in page
    data = json.loads(re.search(r'<script id="version-data" type="application/json">(.*?)</script>', page).group(1))
    assert data["threshold"] == 0.5 and len(data["results"]) == 6
    assert {"id", "score", "anomaly"} == set(data["results"][0]) and data["roc"]["fpr"] == [0, 0.5, 1]
    assert page.count('class="result is-error"') == 1 and "false positive" in page

    # Moved to 0.7, the same scores give no false positive; nothing is retrained.
    ModelVersion.objects.filter(pk=ModelVersion.objects.get().pk).update(threshold=0.7)
    page = signed_in.get("/projects/cookies/models/1/").content.decode()
    assert re.search(r'id="cm-fp"[^>]*>0<', page) and re.search(r'id="precision">1.000<', page)


def test_the_version_page_gives_each_metric_its_interval_and_warns_that_30_photos_prove_little(signed_in, project):
    from engine.metrics import threshold_intervals, wilson_interval

    images = fill_project(project, normal=20, anomaly=10)
    scores = _scored(images)
    make_trained_version(
        project,
        scores=scores,
        metrics={
            "roc_auc": 1.0,
            "average_precision": 1.0,
            "ci": {"roc_auc": [0.91, 1.0], "average_precision": [0.8, 1.0]},
        },
    )
    page = signed_in.get("/projects/cookies/models/1/").content.decode()
    expected = threshold_intervals(list(scores.values()), [int(i.label == "anomaly") for i in scores], 0.5)
    low, high = wilson_interval(10, 10)
    assert re.search(rf'id="recall-ci"[^>]*>{low:.3f}–{high:.3f}<', page)
    assert re.search(rf'id="f1-ci"[^>]*>{expected["f1"][0]:.3f}–1.000<', page)
    assert re.search(r'id="roc-auc-ci"[^>]*>0.910–1.000<', page)
    assert re.search(r'id="average-precision-ci"[^>]*>0.800–1.000<', page)
    assert "from 30 photos, cross-validated" in page
    assert "caught 10 of 10 anomalous, 0 of 20 normal flagged" in page
    warning = re.search(r'<section class="callout[^"]*" id="small-evaluation">(.*?)</section>', page, re.S).group(1)
    assert "F1 <strong>1.000</strong> (95 % interval" in warning and "Keep a test dataset aside" in warning
    # A cell counting no error is not painted as one.
    assert re.search(r'class="none" id="cm-fp"', page) and re.search(r'class="none" id="cm-fn"', page)
    data = json.loads(re.search(r'<script id="version-data" type="application/json">(.*?)</script>', page).group(1))
    assert data["intervals"]["f1"] == expected["f1"]


def test_a_large_evaluation_gets_intervals_but_no_warning(signed_in, project):
    fill_project(project, normal=10, anomaly=0)
    test = fill_project(project, normal=60, anomaly=40, split="test")
    make_trained_version(project, scores=_scored(test), evaluation="test_dataset")
    page = signed_in.get("/projects/cookies/models/1/").content.decode()
    assert 'id="small-evaluation"' not in page and 'id="keep-test-aside"' not in page
    assert "from 100 photos of the test dataset" in page and re.search(r'id="f1-ci"[^>]*>0.9\d\d–1.000<', page)


def test_keeping_a_test_dataset_aside_in_one_click(signed_in, project):
    from projects.models import Activity, Image

    fill_project(project, normal=30, anomaly=12)
    response = signed_in.post("/projects/cookies/test-dataset/keep-aside", follow=True)
    assert "10 normal and 10 anomalous photos, chosen at random, are now the test dataset" in response.content.decode()
    test = Image.objects.filter(project=project, dataset__split="test")
    assert test.filter(label="normal").count() == 10 and test.filter(label="anomaly").count() == 10
    assert Activity.objects.filter(project=project, action="test_dataset_created").count() == 1
    # A second click moves nothing more.
    response = signed_in.post("/projects/cookies/test-dataset/keep-aside", follow=True)
    assert "already has a test dataset" in response.content.decode() and test.count() == 20


def test_keeping_a_test_dataset_aside_with_too_few_photos_says_how_many_to_add(signed_in, project):
    from projects.models import Image

    fill_project(project, normal=15, anomaly=10)
    response = signed_in.post("/projects/cookies/test-dataset/keep-aside", follow=True)
    assert "add 5 more normal photos first" in response.content.decode()
    assert not Image.objects.filter(project=project, dataset__split="test").exists()


def test_the_version_page_says_when_a_test_dataset_was_used(signed_in, project):
    fill_project(project, normal=10, anomaly=0)
    test = fill_project(project, normal=10, anomaly=10, split="test")
    make_trained_version(project, scores=_scored(test), evaluation="test_dataset")
    page = signed_in.get("/projects/cookies/models/1/").content.decode()
    assert "Obtained on the <strong>test dataset</strong>: 10 normal and 10" in page


def test_saving_a_threshold_and_refusing_a_bad_one(signed_in, project):
    make_trained_version(project, scores=_scored(fill_project(project, normal=2, anomaly=2)))
    response = signed_in.post("/projects/cookies/models/1/threshold", {"threshold": "0.62"}, follow=True)
    assert "now flags images scoring 0.620 or more" in response.content.decode()
    assert ModelVersion.objects.get().threshold == 0.62
    response = signed_in.post("/projects/cookies/models/1/threshold", {"threshold": "1"}, follow=True)
    assert "The threshold was not changed: The threshold must be between 0 and 1" in response.content.decode()
    response = signed_in.post("/projects/cookies/models/1/threshold", {"threshold": "high"}, follow=True)
    assert "The threshold was not changed" in response.content.decode()
    assert ModelVersion.objects.get().threshold == 0.62


def test_the_heatmap_of_a_result_is_served_to_members_only_for_that_version(signed_in, client, project):
    images = fill_project(project, normal=2, anomaly=1)
    v1 = make_trained_version(project, scores=_scored(images))
    make_trained_version(project, scores=_scored(images))
    row = v1.images.first()
    response = signed_in.get(f"/projects/cookies/models/1/results/{row.pk}/heatmap")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert signed_in.get(f"/projects/cookies/models/2/results/{row.pk}/heatmap").status_code == 404


def test_deleting_a_version(signed_in, project):
    make_trained_version(project, scores=_scored(fill_project(project, normal=2, anomaly=1)))
    response = signed_in.post("/projects/cookies/models/1/delete", follow=True)
    assert "Version 1 was deleted" in response.content.decode() and not ModelVersion.objects.exists()


# --- Compare ----------------------------------------------------------------------------------


def test_compare_asks_for_two_versions(signed_in, project):
    make_trained_version(project, scores=_scored(fill_project(project, normal=2, anomaly=1)))
    page = signed_in.get("/projects/cookies/models/compare?v=1").content.decode()
    assert "Choose at least two versions to compare." in page
    assert signed_in.get("/projects/cookies/models/compare?v=1&v=7").status_code == 400


def test_compare_shows_metrics_what_changed_and_where_versions_disagree(signed_in, project):
    images = fill_project(project, normal=3, anomaly=2)
    first = _scored(images)
    make_trained_version(project, scores=first, description="first")
    newcomer = add_image(project, label="anomaly", name="new-crack.png")
    from projects.images import images_set_label

    images_set_label(project=project, image_ids=[images[1].pk], label="anomaly")
    images[1].refresh_from_db()
    second = _scored(images + [newcomer])
    second[images[0]] = 0.9  # version 2 flags a normal image that version 1 passed
    make_trained_version(project, scores=second, backbone="lite2", threshold=0.55)

    page = signed_in.get("/projects/cookies/models/compare?v=1&v=2").content.decode()
    assert "Version 1 → version 2" in page
    assert "<strong>1</strong> image added" in page and "new-crack.png (anomaly, train)" in page
    assert "<strong>1</strong> image relabeled" in page and "n1.png: normal → anomaly" in page
    assert (
        "Backbone: lite0 → <strong>lite2</strong>" in page
        and "Threshold in use: 0.500 → <strong>0.550</strong>" in page
    )
    # n0 is predicted differently; n1 too (relabeled, so its score moved from 0.2 to 0.8).
    disagreements = re.findall(r'<tr data-name="([^"]+)">', page)
    assert disagreements == ["n0.png", "n1.png"]
    assert "of the 5 images every version evaluated" in page


def test_the_version_list_shows_metrics_at_each_versions_threshold_in_use(signed_in, project):
    images = fill_project(project, normal=4, anomaly=2)
    scores = _scored(images)
    scores[images[0]] = 0.6
    make_trained_version(project, scores=scores, threshold=0.5)
    make_trained_version(project, scores=scores, threshold=0.7)
    ModelVersion.objects.create(project=project, version=3, backbone="lite0", status=Status.TRAINING)
    rows = re.findall(
        r'<tr data-version="(\d)">(.*?)</tr>', signed_in.get("/projects/cookies/models/").content.decode(), re.S
    )
    cells = {v: re.findall(r"<td>([0-9.—]+)</td>", html) for v, html in rows}
    assert cells["1"][:4] == ["0.667", "1.000", "0.800", "0.500"]
    assert cells["2"][:4] == ["1.000", "1.000", "1.000", "0.700"]
    assert cells["3"][:4] == ["—", "—", "—", "—"]


def test_compare_with_a_version_still_training_says_what_it_can(signed_in, project):
    make_trained_version(project, scores=_scored(fill_project(project, normal=2, anomaly=1)))
    ModelVersion.objects.create(project=project, version=2, backbone="lite0", status=Status.TRAINING)
    page = signed_in.get("/projects/cookies/models/compare?v=1&v=2").content.decode()
    assert "At least two of the chosen versions must be trained" in page
    assert re.search(
        r'<tr data-metric="f1"><th>F1</th><td>[0-9.]+<span class="ci">[0-9.–]+</span></td><td>—<span class="ci"></span></td></tr>',
        page,
    )


def test_compare_shows_each_metrics_interval_and_what_it_rests_on(signed_in, project):
    images = fill_project(project, normal=20, anomaly=10)
    make_trained_version(project, scores=_scored(images))
    make_trained_version(project, scores=_scored(images, normal_score=0.6))
    page = signed_in.get("/projects/cookies/models/compare?v=1&v=2").content.decode()
    f1 = re.search(r'<tr data-metric="f1">(.*?)</tr>', page, re.S).group(1)
    assert len(re.findall(r'<span class="ci">\d\.\d{3}–\d\.\d{3}</span>', f1)) == 2
    evidence = re.search(r'<tr data-metric="evidence">(.*?)</tr>', page, re.S).group(1)
    assert evidence.count("from 30 photos, cross-validated") == 2 and "too few to rely on" in evidence
    assert "caught 10 of 10 anomalous, 20 of 20 normal flagged" in evidence


def test_versions_evaluated_on_different_images_cannot_be_compared_image_by_image(signed_in, project):
    first = fill_project(project, normal=2, anomaly=1)
    make_trained_version(project, scores=_scored(first))
    second = fill_project(project, normal=2, anomaly=1, split="test")
    make_trained_version(
        project, scores={**{image: None for image in first}, **_scored(second)}, evaluation="test_dataset"
    )
    page = signed_in.get("/projects/cookies/models/compare?v=1&v=2").content.decode()
    assert "No image was evaluated by all of these versions" in page
    assert "<strong>3</strong> images added" in page

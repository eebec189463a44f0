"""The trial detection pages: start a trial, follow it, verify its predictions, add them to the dataset."""

import re

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from inference.models import TrialDetection, TrialImage, TrialStatus, Verdict
from projects.models import Image, Membership, Role
from tests.factories import PASSWORD, UserFactory, add_image, heatmap_png, image_bytes, make_trained_version
from training.models import ModelVersion, Status

pytestmark = pytest.mark.django_db


@pytest.fixture
def trained(project):
    images = [add_image(project, label="normal"), add_image(project, label="anomaly")]
    return make_trained_version(project, scores={images[0]: 0.1, images[1]: 0.9}, description="first")


def _completed_trial(project, mv, *, predictions):
    """A trial as the worker leaves it: each upload predicted, with a heatmap."""
    trial = TrialDetection.objects.create(
        project=project,
        model_version=mv,
        name="Monday",
        threshold=mv.threshold,
        status=TrialStatus.COMPLETED,
        progress=100,
    )
    rows = []
    for i, is_anomalous in enumerate(predictions):
        data = image_bytes()
        rows.append(
            TrialImage.objects.create(
                trial=trial,
                original_name=f"new-{i}.png",
                sha256=f"{i:064d}",
                width=64,
                height=48,
                file=default_storage.save(f"t/{trial.pk}/{i}.png", ContentFile(data)),
                thumbnail=default_storage.save(f"t/{trial.pk}/{i}-thumb.png", ContentFile(data)),
                heatmap=default_storage.save(f"t/{trial.pk}/{i}-heat.png", ContentFile(heatmap_png())),
                is_anomalous=is_anomalous,
                confidence=0.93,
                score=0.8 if is_anomalous else 0.2,
                anomalous_fraction=0.04,
            )
        )
    return trial, rows


def test_without_a_trained_model_the_page_says_to_train_first(signed_in, project):
    ModelVersion.objects.create(project=project, version=1, backbone="lite0", status=Status.TRAINING)
    page = signed_in.get("/projects/cookies/trials/").content.decode()
    assert "No trained model yet" in page and "Train a model" in page and 'id="trial-form"' not in page


def test_the_form_offers_trained_versions_and_the_unlabeled_images(signed_in, project, trained):
    unlabeled = add_image(project, name="unsure.png")
    page = signed_in.get("/projects/cookies/trials/?version=1").content.decode()
    assert re.search(r'<option value="1" selected>Version 1 — first', page)
    assert f'name="image_ids" value="{unlabeled.pk}"' in page


def test_a_trial_of_uploads_and_project_images_starts_and_leaves_bad_files_out(signed_in, project, trained):
    unlabeled = add_image(project)
    response = signed_in.post(
        "/projects/cookies/trials/",
        {
            "model_version": "1",
            "name": "line 2",
            "files": [SimpleUploadedFile("a.png", image_bytes()), SimpleUploadedFile("notes.txt", b"text")],
            "image_ids": [unlabeled.pk],
        },
        follow=True,
    )
    trial = TrialDetection.objects.get()
    assert response.redirect_chain[-1][0] == f"/projects/cookies/trials/{trial.pk}/"
    assert (trial.name, trial.status, trial.images.count()) == ("line 2", TrialStatus.QUEUED, 2)
    page = response.content.decode()
    assert "notes.txt was left out: This file is not an image" in page
    assert f'hx-get="/projects/cookies/trials/{trial.pk}/status"' in page


def test_a_trial_without_images_is_refused_in_words(signed_in, project, trained):
    response = signed_in.post("/projects/cookies/trials/", {"model_version": "1"})
    assert response.status_code == 400
    assert "Add photos to try the model on" in response.content.decode()
    assert not TrialDetection.objects.exists()


def test_a_viewer_cannot_start_a_trial(client, project, trained):
    viewer = UserFactory()
    Membership.objects.create(project=project, user=viewer, role=Role.VIEWER)
    client.login(username=viewer.username, password=PASSWORD)
    assert "Viewers cannot run trial detections" in client.get("/projects/cookies/trials/").content.decode()
    response = client.post(
        "/projects/cookies/trials/", {"model_version": "1", "files": [SimpleUploadedFile("a.png", image_bytes())]}
    )
    assert response.status_code == 403 and not TrialDetection.objects.exists()


def test_the_status_fragment_refreshes_the_page_once_the_trial_is_over(signed_in, project, trained):
    trial = TrialDetection.objects.create(
        project=project, model_version=trained, name="t", threshold=0.5, status=TrialStatus.RUNNING, progress=40
    )
    fragment = signed_in.get(f"/projects/cookies/trials/{trial.pk}/status", HTTP_HX_REQUEST="true")
    assert "40%" in fragment.content.decode() and "HX-Refresh" not in fragment
    TrialDetection.objects.filter(pk=trial.pk).update(status=TrialStatus.FAILED, status_message="The worker died.")
    fragment = signed_in.get(f"/projects/cookies/trials/{trial.pk}/status", HTTP_HX_REQUEST="true")
    assert fragment["HX-Refresh"] == "true" and "The worker died." in fragment.content.decode()


def test_a_running_trial_updates_its_row_in_the_past_trials_table(signed_in, project, trained):
    trial = TrialDetection.objects.create(
        project=project, model_version=trained, name="line 3", threshold=0.5, status=TrialStatus.RUNNING, progress=40
    )
    page = signed_in.get("/projects/cookies/trials/").content.decode()
    assert f'hx-get="/projects/cookies/trials/{trial.pk}/status?row=1"' in page
    row = signed_in.get(f"/projects/cookies/trials/{trial.pk}/status?row=1", HTTP_HX_REQUEST="true").content.decode()
    assert row.startswith(f'<tr id="trial-{trial.pk}"') and "40%" in row and "hx-get" in row
    TrialDetection.objects.filter(pk=trial.pk).update(status=TrialStatus.COMPLETED, progress=100)
    row = signed_in.get(f"/projects/cookies/trials/{trial.pk}/status?row=1", HTTP_HX_REQUEST="true").content.decode()
    assert "Completed" in row and "hx-get" not in row  # final: the row stops polling


def test_predictions_show_their_heatmap_and_filters(signed_in, project, trained):
    trial, rows = _completed_trial(project, trained, predictions=[True, False, True])
    page = signed_in.get(f"/projects/cookies/trials/{trial.pk}/").content.decode()
    assert page.count('class="trial-card') == 3 and "93% confident" in page and "Defect area 4.0% of the photo" in page
    assert f"/projects/cookies/trials/{trial.pk}/images/{rows[0].pk}/heatmap" in page
    anomalous = signed_in.get(f"/projects/cookies/trials/{trial.pk}/?show=anomalous").content.decode()
    assert anomalous.count('class="trial-card') == 2
    heat = signed_in.get(f"/projects/cookies/trials/{trial.pk}/images/{rows[0].pk}/heatmap")
    assert heat.status_code == 200 and heat["Content-Type"] == "image/png"


def test_a_project_image_in_a_trial_is_shown_from_the_project(signed_in, project, trained):
    image = add_image(project)
    trial = TrialDetection.objects.create(project=project, model_version=trained, name="t", threshold=0.5)
    row = TrialImage.objects.create(trial=trial, image=image, sha256=image.sha256, width=64, height=48)
    response = signed_in.get(f"/projects/cookies/trials/{trial.pk}/images/{row.pk}/thumbnail")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"


def test_verifying_swaps_the_card_and_the_add_panel(signed_in, project, trained):
    trial, rows = _completed_trial(project, trained, predictions=[True, False])
    url = f"/projects/cookies/trials/{trial.pk}/images/{rows[1].pk}/verdict"
    response = signed_in.post(url, {"verdict": "incorrect"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert f'id="ti-{rows[1].pk}"' in html and "Verified: <strong>anomaly</strong>" in html
    assert 'id="add-panel" hx-swap-oob="true"' in html and re.search(r'id="ready-to-add">1<', html)
    # Pressing it again undoes it.
    assert '"verdict": "unverified"' in html
    rows[1].refresh_from_db()
    assert rows[1].verdict == Verdict.INCORRECT


def test_a_verdict_on_an_image_without_prediction_is_refused_in_words(signed_in, project, trained):
    trial = TrialDetection.objects.create(
        project=project, model_version=trained, name="t", threshold=0.5, status=TrialStatus.COMPLETED
    )
    row = TrialImage.objects.create(trial=trial, sha256="1" * 64, width=64, height=48, error="The file is damaged.")
    response = signed_in.post(
        f"/projects/cookies/trials/{trial.pk}/images/{row.pk}/verdict", {"verdict": "correct"}, HTTP_HX_REQUEST="true"
    )
    assert "This image has no prediction to verify." in response.content.decode()


def test_verified_images_are_added_to_the_dataset_once(signed_in, project, trained):
    trial, rows = _completed_trial(project, trained, predictions=[True, False, True])
    before = Image.objects.count()
    TrialImage.objects.filter(pk=rows[0].pk).update(verdict=Verdict.CORRECT)
    TrialImage.objects.filter(pk=rows[1].pk).update(verdict=Verdict.INCORRECT)
    response = signed_in.post(f"/projects/cookies/trials/{trial.pk}/add-to-dataset", {"split": "test"}, follow=True)
    assert "2 new images added to the dataset with the labels you verified" in response.content.decode()
    added = Image.objects.order_by("-id")[:2]
    assert sorted(image.label for image in added) == ["anomaly", "anomaly"]
    assert {image.dataset.split for image in added} == {"test"} and Image.objects.count() == before + 2
    response = signed_in.post(f"/projects/cookies/trials/{trial.pk}/add-to-dataset", {"split": "test"}, follow=True)
    assert "No verified image is waiting" in response.content.decode() and Image.objects.count() == before + 2


def test_deleting_a_trial(signed_in, project, trained):
    trial, _ = _completed_trial(project, trained, predictions=[True])
    response = signed_in.post(f"/projects/cookies/trials/{trial.pk}/delete", follow=True)
    assert "deleted" in response.content.decode() and not TrialDetection.objects.exists()


def test_a_photo_unlike_the_training_photos_is_flagged_in_the_trial(signed_in, project, trained):
    trial, rows = _completed_trial(project, trained, predictions=[True, False])
    TrialImage.objects.filter(pk=rows[0].pk).update(
        unlike=True, unlike_message="Unlike the training photos: proportions 3:1, the training photos 4:3."
    )
    page = signed_in.get(f"/projects/cookies/trials/{trial.pk}/").content.decode()
    card = re.search(rf'<li class="trial-card[^"]*is-unlike[^"]*" id="ti-{rows[0].pk}".*?</li>', page, re.S).group(0)
    assert "Unlike the training photos</strong>: the verdict may not apply. proportions 3:1" in card
    assert f'id="ti-{rows[1].pk}"' in page and page.count("is-unlike") == 1
    assert "1 photo unlike the training photos" in page and "?show=unlike" in page
    only = signed_in.get(f"/projects/cookies/trials/{trial.pk}/?show=unlike").content.decode()
    assert f'id="ti-{rows[0].pk}"' in only and f'id="ti-{rows[1].pk}"' not in only


def test_the_trial_says_how_often_the_verified_predictions_were_right_with_its_interval(signed_in, project, trained):
    from engine.metrics import wilson_interval

    trial, rows = _completed_trial(project, trained, predictions=[True, True, False, False])
    page = signed_in.get(f"/projects/cookies/trials/{trial.pk}/").content.decode()
    assert 'id="trial-accuracy"' not in page  # nothing verified yet
    for row, verdict in zip(rows, ("correct", "correct", "correct", "incorrect")):
        TrialImage.objects.filter(pk=row.pk).update(verdict=verdict)
    page = signed_in.get(f"/projects/cookies/trials/{trial.pk}/").content.decode()
    low, high = wilson_interval(3, 4)
    assert (
        f"Right on <strong>3 of 4</strong> verified photos\n    (75%, 95 % interval {low:.3f}–{high:.3f}): too few"
        in page
    )

"""The activity log: every action a person takes in a project, done through the console's pages
(as people do), leaves one entry saying who did what; the project shows them and exports them."""

import csv
import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from inference.models import TrialDetection, TrialImage, TrialStatus
from projects.importer import zip_import_run
from projects.models import Activity, Image, ZipImport
from tests.factories import (
    PASSWORD,
    UserFactory,
    add_image,
    fill_project,
    image_bytes,
    make_project,
    make_trained_version,
)
from training.models import ModelVersion, Status

pytestmark = pytest.mark.django_db


def _latest(project, action) -> Activity:
    entry = Activity.objects.filter(project=project, action=action).order_by("-at", "-id").first()
    assert entry is not None, (
        f"no {action} entry; the log has {list(Activity.objects.values_list('action', flat=True))}"
    )
    return entry


def _assert_entry(project, action, user, *words):
    entry = _latest(project, action)
    assert entry.user == user and entry.username == user.username
    for word in words:
        assert word in entry.summary, (word, entry.summary)
    return entry


def test_creating_a_project_and_changing_its_description(signed_in, user):
    signed_in.post("/projects/new/", {"name": "biscuits", "description": ""})
    project = user.memberships.get().project
    _assert_entry(project, "project_created", user, "created biscuits")
    signed_in.post("/projects/biscuits/settings/", {"description": "Line 3 biscuits"})
    assert _assert_entry(project, "project_updated", user).detail["description"] == "Line 3 biscuits"


def test_adding_changing_and_removing_a_member(signed_in, user, project):
    colleague = UserFactory(username="bob")
    signed_in.post("/projects/cookies/members/", {"username": "bob", "role": "viewer"})
    _assert_entry(project, "member_added", user, "added bob as viewer")
    signed_in.post("/projects/cookies/members/", {"username": "bob", "role": "editor"})
    _assert_entry(project, "member_role_changed", user, "made bob editor (was viewer)")
    signed_in.post(f"/projects/cookies/members/{colleague.pk}/remove")
    _assert_entry(project, "member_removed", user, "removed bob")


def test_uploads_of_one_person_fold_into_one_entry_per_dataset(signed_in, user, project):
    for i in range(3):
        file = SimpleUploadedFile(f"p{i}.png", image_bytes(seed=i), content_type="image/png")
        assert signed_in.post("/projects/cookies/images/add", {"file": file, "label": "normal"}).status_code == 201
    entry = _assert_entry(project, "images_uploaded", user, "uploaded 3 images to the training dataset")
    assert entry.count == 3 and entry.detail["names"] == ["p0.png", "p1.png", "p2.png"]
    file = SimpleUploadedFile("t.png", image_bytes(seed=9), content_type="image/png")
    signed_in.post("/projects/cookies/images/add", {"file": file, "split": "test"})
    _assert_entry(project, "images_uploaded", user, "uploaded 1 image to the test dataset")


def test_a_zip_import_is_one_entry(signed_in, user, project):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("normal/a.png", image_bytes(seed=1))
        archive.writestr("anomaly/b.png", image_bytes(seed=2))
        archive.writestr("normal/broken.png", b"not an image")
    file = SimpleUploadedFile("line3.zip", buffer.getvalue(), content_type="application/zip")
    signed_in.post("/projects/cookies/images/import", {"file": file, "split": "train"})
    zip_import_run(import_id=ZipImport.objects.get(project=project).pk)  # what the worker does
    entry = _assert_entry(project, "images_imported", user, "imported 2 images from line3.zip", "(1 refused)")
    assert not Activity.objects.filter(project=project, action="images_uploaded", user=user).exists()
    assert entry.detail["added"] == 2


def test_labeling_moving_masking_and_deleting_images(signed_in, user, project):
    images = [add_image(project, name=f"x{i}.png") for i in range(4)]
    ids = [image.pk for image in images]
    signed_in.post("/projects/cookies/images/label", {"ids": ids[:2], "label": "normal"})
    signed_in.post("/projects/cookies/images/label", {"ids": ids[2:3], "label": "normal"})
    entry = _assert_entry(project, "images_labeled", user, "labeled 3 images normal")
    assert entry.detail["names"] == ["x0.png", "x1.png", "x2.png"]
    signed_in.post("/projects/cookies/images/move", {"ids": ids[:1], "split": "test"})
    _assert_entry(project, "images_moved", user, "moved 1 image to the test dataset")
    mask = image_bytes(width=64, height=48, mode="L", fmt="PNG", seed=3)
    signed_in.post(
        f"/projects/cookies/images/{ids[3]}/set-mask", {"mask": SimpleUploadedFile("m.png", mask, "image/png")}
    )
    _assert_entry(project, "mask_set", user, "drew the defect mask of 1 image")
    signed_in.post("/projects/cookies/images/delete", {"ids": ids[1:3]})
    assert _assert_entry(project, "images_deleted", user, "deleted 2 images").detail["names"] == ["x1.png", "x2.png"]
    signed_in.post("/projects/cookies/test-dataset/delete")
    _assert_entry(project, "test_dataset_removed", user, "removed the test dataset (1 image back in training)")


def test_keeping_a_test_dataset_aside(signed_in, user, project):
    fill_project(project, normal=20, anomaly=10)
    signed_in.post("/projects/cookies/test-dataset/keep-aside")
    _assert_entry(project, "test_dataset_created", user, "kept 10 normal and 10 anomalous photos aside")


def test_starting_and_cancelling_a_training(signed_in, user, project):
    fill_project(project)
    signed_in.post("/projects/cookies/models/train", {"backbone": "lite0", "description": ""})
    _assert_entry(project, "training_started", user, "started training version 1 (lite0)")
    signed_in.post("/projects/cookies/models/1/cancel")
    _assert_entry(project, "training_cancelled", user, "cancelled the training of version 1")


def test_changing_a_threshold_hosting_and_deleting_a_version(signed_in, user, project):
    images = fill_project(project, normal=2, anomaly=2)
    make_trained_version(project, scores={image: 0.2 for image in images})
    signed_in.post("/projects/cookies/models/1/threshold", {"threshold": "0.62"})
    entry = _assert_entry(project, "threshold_changed", user, "changed the threshold of version 1 from 0.500 to 0.620")
    assert entry.detail == {"version": 1, "before": 0.5, "after": 0.62}
    signed_in.post("/projects/cookies/models/1/hosting", {"action": "start"})
    _assert_entry(project, "hosting_started", user, "started hosting version 1")
    ModelVersion.objects.filter(project=project).update(status=Status.HOSTED)
    signed_in.post("/projects/cookies/models/1/hosting", {"action": "stop"})
    _assert_entry(project, "hosting_stopped", user, "stopped hosting version 1")
    ModelVersion.objects.filter(project=project).update(status=Status.TRAINED)
    signed_in.post("/projects/cookies/models/1/delete")
    _assert_entry(project, "version_deleted", user, "deleted version 1")


def test_trials_started_verified_added_and_deleted(signed_in, user, project):
    images = fill_project(project, normal=2, anomaly=2)
    make_trained_version(project, scores={image: 0.2 for image in images})
    upload = SimpleUploadedFile("new.png", image_bytes(seed=7), content_type="image/png")
    response = signed_in.post("/projects/cookies/trials/", {"model_version": 1, "name": "Monday", "files": [upload]})
    assert response.status_code == 302
    _assert_entry(project, "trial_started", user, "ran “Monday” with version 1 on 1 photo")
    trial = TrialDetection.objects.get()
    TrialDetection.objects.filter(pk=trial.pk).update(status=TrialStatus.COMPLETED)
    row = TrialImage.objects.get()
    TrialImage.objects.filter(pk=row.pk).update(is_anomalous=True, score=0.9, confidence=0.9)
    signed_in.post(f"/projects/cookies/trials/{trial.pk}/images/{row.pk}/verdict", {"verdict": "correct"})
    _assert_entry(project, "trial_verified", user, "verified 1 prediction of “Monday”")
    signed_in.post(f"/projects/cookies/trials/{trial.pk}/add-to-dataset", {"split": "train"})
    _assert_entry(project, "trial_added", user, "added 1 verified photo of “Monday” to the training dataset")
    assert Image.objects.filter(project=project, original_name="new.png", label="anomaly").exists()
    signed_in.post(f"/projects/cookies/trials/{trial.pk}/delete")
    _assert_entry(project, "trial_deleted", user, "deleted the trial “Monday”")


def test_an_action_that_fails_leaves_no_entry(signed_in, project):
    before = Activity.objects.count()
    signed_in.post("/projects/cookies/models/train", {"backbone": "lite0"})  # not enough images
    signed_in.post("/projects/cookies/images/label", {"ids": [999999], "label": "normal"})  # nothing changes
    assert Activity.objects.count() == before


def test_the_project_shows_the_log_and_exports_it_as_csv(signed_in, user, project):
    image = add_image(project, name="x.png")
    signed_in.post("/projects/cookies/images/label", {"ids": [image.pk], "label": "anomaly"})
    overview = signed_in.get("/projects/cookies/").content.decode()
    assert (
        'id="recent-activity"' in overview and f"<strong>{user.username}</strong> labeled 1 image anomaly" in overview
    )
    page = signed_in.get("/projects/cookies/activity/").content.decode()
    assert "labeled 1 image anomaly" in page and "created cookies" in page
    response = signed_in.get("/projects/cookies/activity.csv")
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="cookies-activity.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["time_utc", "person", "action", "description", "count", "detail"]
    assert rows[1][1:5] == [user.username, "images_labeled", "labeled 1 image anomaly", "1"]
    assert json.loads(rows[1][5]) == {"names": ["x.png"]}


def test_strangers_see_no_log(client, project):
    stranger = UserFactory()
    client.login(username=stranger.username, password=PASSWORD)
    assert client.get("/projects/cookies/activity/").status_code == 404
    assert client.get("/projects/cookies/activity.csv").status_code == 404


def test_viewers_read_the_log(client, user):
    viewer = UserFactory()
    make_project(owner=user, name="shared", viewer=viewer)
    client.login(username=viewer.username, password=PASSWORD)
    assert client.get("/projects/shared/activity/").status_code == 200

"""Segmentation end to end: classes and painted masks go to the engine through the training task,
the version records its kind and classes with per-class results, and the hosted model answers
DetectAnomalies in Lookout for Vision's segmentation form. On the synthetic product of the engine
tests, whose defects (scratches and stains) are painted where the test chooses."""

import base64
import io
import time

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from inference.control import unload_everywhere
from inference.models import TrialDetection
from inference.trials import TrialUpload, trial_add_verified_to_dataset, trial_create, trial_image_set_verdict
from projects.classes import anomaly_class_create, anomaly_class_delete
from projects.images import dataset_add_image
from projects.models import AnomalyClass, Image
from projects.selectors import image_mask_indices
from tests.engine.synthetic import paint, part
from training.models import ModelVersion, Status
from training.services import model_version_start_training

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

SCRATCH, STAIN = "#e6194b", "#3cb44b"


def encode(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def defective(rng, kind: int) -> tuple[np.ndarray, np.ndarray]:
    """A part with one defect of `kind` (1 scratch, 2 stain) and its colour mask on white."""
    image = part(rng)
    ids = np.zeros(image.shape[:2], np.uint8)
    paint(image, ids, kind, rng)
    colour = np.full((*ids.shape, 3), 255, np.uint8)
    colour[ids == 1] = [int(SCRATCH[i : i + 2], 16) for i in (1, 3, 5)]
    colour[ids == 2] = [int(STAIN[i : i + 2], 16) for i in (1, 3, 5)]
    return image, colour


def wait_for(mv: ModelVersion, goal: str, timeout: float) -> ModelVersion:
    deadline = time.monotonic() + timeout
    while (mv := ModelVersion.objects.get(pk=mv.pk)).status != goal:
        assert mv.status != Status.TRAINING_FAILED, mv.status_message
        assert time.monotonic() < deadline, f"still {mv.status} ({mv.status_message}), not {goal}"
        time.sleep(0.1)
    return mv


@pytest.mark.timeout(1500)  # a real training; a shared, loaded 2-core machine has taken 7 minutes
def test_two_classes_train_a_segmentation_model_that_answers_in_lookout_for_visions_form(
    user, project, api_client, celery_worker, client
):
    # Indices 2 and 3 in the stored masks (a first class was deleted): the engine gets 1 and 2.
    anomaly_class_delete(anomaly_class=anomaly_class_create(project=project, name="dent", color="#4363d8"))
    anomaly_class_create(project=project, name="scratch", color=SCRATCH)
    anomaly_class_create(project=project, name="stain", color=STAIN)
    rng = np.random.default_rng(7)
    for i in range(20):
        dataset_add_image(project=project, data=encode(part(rng)), name=f"n{i}.png", label="normal")
    for i in range(10):
        image, mask = defective(rng, 1 + i % 2)
        dataset_add_image(project=project, data=encode(image), name=f"a{i}.png", mask=encode(mask))

    mv = wait_for(model_version_start_training(project=project, user=user), Status.TRAINED, timeout=1000)
    assert mv.kind == "segmentation"
    assert mv.classes == [{"name": "scratch", "color": SCRATCH}, {"name": "stain", "color": STAIN}]
    per_class = mv.metrics["per_class"]
    assert set(per_class) == {"scratch", "stain"} and per_class["stain"]["images"] == 5
    assert per_class["stain"]["recall"] > 0.5 and per_class["stain"]["iou"] > 0.3, per_class
    painted = mv.images.exclude(predicted_mask="")
    assert painted.count() >= 5

    client.force_login(user)
    page = client.get(f"/projects/cookies/models/{mv.version}/").content.decode()
    assert 'id="class-results"' in page and 'data-class="stain"' in page and "segmentation model" in page
    row = painted.first()
    drawn = client.get(f"/projects/cookies/models/{mv.version}/results/{row.pk}/mask")
    colours = {
        tuple(c)
        for c in np.asarray(PILImage.open(io.BytesIO(b"".join(drawn.streaming_content))).convert("RGBA")).reshape(-1, 4)
        if c[3]
    }
    assert colours and colours <= {(0xE6, 0x19, 0x4B, 255), (0x3C, 0xB4, 0x4B, 255)}

    api = api_client(user)
    assert api.post(f"/api/v1/projects/cookies/models/{mv.version}/start").status_code == 202
    wait_for(mv, Status.HOSTED, timeout=60)
    try:
        image, _ = defective(np.random.default_rng(99), 2)
        for path in (
            f"/api/v1/projects/cookies/models/{mv.version}/detect",
            f"/2020-11-20/projects/cookies/models/{mv.version}/detect",
        ):
            response = api.post(path, encode(image), content_type="image/png")
            assert response.status_code == 200, response.content[:300]
            result = response.json()["DetectAnomalyResult"]
            assert result["IsAnomalous"] is True
            anomalies = result["Anomalies"]
            assert [a["Name"] for a in anomalies] == ["background", "scratch", "stain"]
            assert [a["PixelAnomaly"]["Color"] for a in anomalies] == ["#FFFFFF", "#E6194B", "#3CB44B"]
            areas = {a["Name"]: a["PixelAnomaly"]["TotalPercentageArea"] for a in anomalies}
            assert sum(areas.values()) == pytest.approx(1.0) and areas["stain"] > areas["scratch"]
            mask = np.asarray(PILImage.open(io.BytesIO(base64.b64decode(result["AnomalyMask"]))).convert("RGB"))
            assert mask.shape == image.shape
            for a in anomalies:
                rgb = [int(a["PixelAnomaly"]["Color"][i : i + 2], 16) for i in (1, 3, 5)]
                share = float((mask == rgb).all(axis=-1).mean())
                assert share == pytest.approx(a["PixelAnomaly"]["TotalPercentageArea"], abs=1e-6), a["Name"]
    finally:
        unload_everywhere(model_version_ids=[mv.pk])

    # --- A trial: predicted class masks, one accepted as the label, one corrected by hand ------
    stain_image, _ = defective(np.random.default_rng(5), 2)
    scratch_image, _ = defective(np.random.default_rng(6), 1)
    trial = trial_create(
        project=project,
        model_version=mv,
        user=user,
        uploads=[TrialUpload("stain.png", encode(stain_image)), TrialUpload("scratch.png", encode(scratch_image))],
    ).trial
    deadline = time.monotonic() + 120
    while (trial := TrialDetection.objects.get(pk=trial.pk)).status not in ("COMPLETED", "FAILED"):
        assert time.monotonic() < deadline, trial.status_message
        time.sleep(0.1)
    stain_row, scratch_row = trial.images.get(original_name="stain.png"), trial.images.get(original_name="scratch.png")
    assert stain_row.is_anomalous and stain_row.predicted_mask
    with stain_row.predicted_mask.open("rb") as f:
        predicted = np.asarray(PILImage.open(f).convert("RGB"))
    assert predicted.shape == stain_image.shape and ((predicted == (0x3C, 0xB4, 0x4B)).all(axis=-1)).any()
    page = client.get(f"/projects/cookies/trials/{trial.pk}/").content.decode()
    assert 'id="painter"' in page and "class-mask" in page and 'data-class="2"' in page

    trial_image_set_verdict(trial_image=stain_row, verdict="correct")  # the predicted mask, accepted
    corrected = np.full((*scratch_image.shape[:2], 3), 255, np.uint8)
    corrected[10:20, 10:60] = [0xE6, 0x19, 0x4B]  # the scratch as the person paints it
    response = client.post(
        f"/projects/cookies/trials/{trial.pk}/images/{scratch_row.pk}/paint",
        {"mask": SimpleUploadedFile("mask.png", encode(corrected))},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 200, response.content
    bad = client.post(
        f"/projects/cookies/trials/{trial.pk}/images/{scratch_row.pk}/paint",
        {"mask": SimpleUploadedFile("mask.png", b"")},
        HTTP_ACCEPT="application/json",
    )
    assert bad.status_code == 400 and bad.json()["error"] == "empty"
    report = trial_add_verified_to_dataset(trial=trial, user=user)
    assert report.added == 2 and not report.skipped
    scratch_class, stain_class = AnomalyClass.objects.filter(project=project).order_by("index")
    added = {
        i.original_name: image_mask_indices(image=i)
        for i in Image.objects.filter(original_name__in=["stain.png", "scratch.png"])
    }
    assert set(np.unique(added["stain.png"])) <= {0, scratch_class.index, stain_class.index}
    assert (added["stain.png"] == stain_class.index).any()
    expected = np.zeros(scratch_image.shape[:2], np.uint8)
    expected[10:20, 10:60] = scratch_class.index
    assert (added["scratch.png"] == expected).all()

"""Trial detections of segmentation versions: class masks shown, accepted as the label, or corrected
in the painter before the image goes to the dataset. Rows as the worker leaves them (the worker's
own side runs in tests/training/test_segmentation.py)."""

import io

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from inference.models import TrialDetection, TrialImage, TrialStatus
from inference.trials import trial_add_verified_to_dataset, trial_image_set_verdict
from projects.classes import anomaly_class_create
from projects.masks import MaskClass, color_png
from projects.models import Image
from projects.selectors import image_mask_indices
from tests.factories import add_image, image_bytes, make_trained_version

pytestmark = pytest.mark.django_db

W, H = 64, 48
VERSION_CLASSES = [{"name": "crack", "color": "#e6194b"}, {"name": "chip", "color": "#4363d8"}]


@pytest.fixture
def segmentation(project):
    images = [add_image(project, label="normal"), add_image(project, label="anomaly")]
    return make_trained_version(
        project, scores={images[0]: 0.1, images[1]: 0.9}, kind="segmentation", classes=VERSION_CLASSES
    )


def predicted(ids: np.ndarray) -> bytes:
    classes = [MaskClass(index=k, name=c["name"], color=c["color"]) for k, c in enumerate(VERSION_CLASSES, start=1)]
    return color_png(ids, classes)


def trial_with(project, mv, masks):
    trial = TrialDetection.objects.create(
        project=project, model_version=mv, name="Monday", threshold=0.5, status=TrialStatus.COMPLETED, progress=100
    )
    rows = []
    for i, mask in enumerate(masks):
        data = image_bytes(width=W, height=H)
        rows.append(
            TrialImage.objects.create(
                trial=trial,
                original_name=f"new-{i}.png",
                sha256=f"{i:064d}",
                width=W,
                height=H,
                file=default_storage.save(f"t/{trial.pk}/{i}.png", ContentFile(data)),
                thumbnail=default_storage.save(f"t/{trial.pk}/{i}-t.png", ContentFile(data)),
                predicted_mask=default_storage.save(f"t/{trial.pk}/{i}-m.png", ContentFile(predicted(mask)))
                if mask is not None
                else "",
                is_anomalous=mask is not None,
                confidence=0.9,
                score=0.9 if mask is not None else 0.1,
                anomalous_fraction=float((mask > 0).mean()) if mask is not None else 0.0,
            )
        )
    return trial, rows


def test_the_trial_page_shows_class_masks_and_offers_the_painter(signed_in, project, segmentation):
    ids = np.zeros((H, W), np.uint8)
    ids[5:10, 5:20] = 1
    trial, (row,) = trial_with(project, segmentation, [ids])
    page = signed_in.get(f"/projects/cookies/trials/{trial.pk}/").content.decode()
    assert 'id="painter"' in page and "kenpin/painter.js" in page and 'class="class-mask"' in page
    assert 'data-class="1" data-color="#e6194b"' in page and 'data-class="2" data-color="#4363d8"' in page
    drawn = signed_in.get(f"/projects/cookies/trials/{trial.pk}/images/{row.pk}/mask")
    rgb = np.asarray(PILImage.open(io.BytesIO(b"".join(drawn.streaming_content))).convert("RGB"))
    assert tuple(rgb[7, 7]) == (0xE6, 0x19, 0x4B) and tuple(rgb[0, 0]) == (255, 255, 255)


def test_an_accepted_mask_and_a_corrected_one_become_the_labels_in_the_projects_classes(
    signed_in, user, project, segmentation
):
    # The project's classes have other indices and colours than the version's: names decide.
    anomaly_class_create(project=project, name="dent", color="#3cb44b")
    chip = anomaly_class_create(project=project, name="Chip", color="#f58231")
    crack = anomaly_class_create(project=project, name="crack", color="#911eb4")
    accepted = np.zeros((H, W), np.uint8)
    accepted[5:10, 5:20] = 1
    accepted[20:30, 30:40] = 2
    trial, (first, second, missed) = trial_with(project, segmentation, [accepted, accepted, None])
    trial_image_set_verdict(trial_image=first, verdict="correct")
    trial_image_set_verdict(trial_image=second, verdict="incorrect")  # not an anomaly: no mask goes

    url = f"/projects/cookies/trials/{trial.pk}/images/{missed.pk}/paint"
    painted = np.full((H, W, 3), 255, np.uint8)
    painted[0:4, 0:8] = (0x43, 0x63, 0xD8)  # chip, in the version's colour
    out = io.BytesIO()
    PILImage.fromarray(painted).save(out, format="PNG")
    for data, code in ((b"", "empty"), (image_bytes(width=W + 2, height=H), "wrong_size")):
        bad = signed_in.post(url, {"mask": SimpleUploadedFile("m.png", data)}, HTTP_ACCEPT="application/json")
        assert bad.status_code == 400 and bad.json()["error"] == code
    response = signed_in.post(
        url, {"mask": SimpleUploadedFile("m.png", out.getvalue())}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200
    missed.refresh_from_db()
    assert missed.mask_painted and missed.verdict == "incorrect" and missed.verified_label == "anomaly"

    report = trial_add_verified_to_dataset(trial=trial, user=user)
    assert report.added == 3 and not report.skipped
    masks = {
        i.original_name: image_mask_indices(image=i) for i in Image.objects.filter(original_name__startswith="new-")
    }
    expected = np.where(accepted == 1, crack.index, np.where(accepted == 2, chip.index, 0))
    assert (masks["new-0.png"] == expected).all()
    assert masks["new-1.png"] is None
    assert set(np.unique(masks["new-2.png"])) == {0, chip.index} and (masks["new-2.png"][0:4, 0:8] == chip.index).all()

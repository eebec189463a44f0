"""The console's Lookout for Vision page: import a manifest with a zip of its images, export the
datasets in Lookout for Vision's format and import them back identical, package a model."""

import io
import json
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from projects.models import Image
from tests import factories
from tests.lookout.conftest import wait_for

pytestmark = pytest.mark.worker


@pytest.fixture(autouse=True)
def _worker(transactional_db, celery_worker):
    pass


def binary_mask(width, height, box):
    array = np.zeros((height, width), dtype=np.uint8)
    x0, y0, x1, y1 = box
    array[y0:y1, x0:x1] = 255
    out = io.BytesIO()
    PILImage.fromarray(array, mode="L").save(out, format="PNG")
    return out.getvalue()


def mask_array(image):
    with image.mask.open("rb") as f:
        return np.asarray(PILImage.open(f).convert("L")) > 0


def import_zip(client, project_name, data: bytes, manifest: bytes, split="train"):
    response = client.post(
        f"/projects/{project_name}/lookout/",
        {
            "split": split,
            "manifest": SimpleUploadedFile("train.manifest", manifest),
            "images": SimpleUploadedFile("images.zip", data, "application/zip"),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    job_url = response["Location"]
    return wait_for(
        lambda: client.get(job_url).content.decode(),
        lambda page: 'data-status="CREATE_IN_PROGRESS"' not in page and 'data-status="UPDATE_IN_PROGRESS"' not in page,
        what="the import",
    )


def test_export_then_import_into_a_new_project_gives_identical_labels_and_masks(signed_in, user):
    source = factories.make_project(owner=user, name="source")
    for i in range(3):
        factories.add_image(source, label="normal", name=f"n{i}.png")
    masked = factories.add_image(
        source, label="anomaly", name="a.png", width=64, height=48, mask=binary_mask(64, 48, (5, 6, 20, 30))
    )
    factories.add_image(source, label="anomaly", name="b.png")
    factories.add_image(source, label="normal", split="test", name="t.png")
    factories.add_image(source, name="unlabeled.png")

    exported = signed_in.get("/projects/source/lookout/export")
    assert exported.status_code == 200 and exported["Content-Type"] == "application/zip"
    data = b"".join(exported.streaming_content)
    archive = zipfile.ZipFile(io.BytesIO(data))
    train_lines = [json.loads(line) for line in archive.read("train.manifest").decode().splitlines()]
    assert len(train_lines) == 6
    masked_line = next(line for line in train_lines if "anomaly-mask-ref" in line)
    colors = masked_line["anomaly-mask-ref-metadata"]["internal-color-map"]
    assert {c["class-name"] for c in colors.values()} == {"BACKGROUND", "anomaly"}

    factories.make_project(owner=user, name="copy")
    for split in ("train", "test"):
        page = import_zip(signed_in, "copy", data, archive.read(f"{split}.manifest"), split=split)
        assert "not imported" not in page, page

    def snapshot(project_name):
        return sorted(
            (i.sha256, i.label, i.dataset.split, mask_array(i).tobytes() if i.mask else None)
            for i in Image.objects.filter(project__name=project_name).select_related("dataset")
        )

    assert snapshot("copy") == snapshot("source")
    copied = Image.objects.get(project__name="copy", sha256=masked.sha256)
    assert mask_array(copied).sum() == 15 * 24


def test_an_import_reports_lines_it_could_not_use(signed_in, user):
    factories.make_project(owner=user, name="cookies")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("photos/good.png", factories.image_bytes())
    lines = [
        json.dumps(
            {
                "source-ref": "s3://b/photos/good.png",
                "anomaly-label": 0,
                "anomaly-label-metadata": {"class-name": "normal"},
            }
        ),
        json.dumps(
            {
                "source-ref": "s3://b/photos/gone.png",
                "anomaly-label": 0,
                "anomaly-label-metadata": {"class-name": "normal"},
            }
        ),
        json.dumps({"source-ref": "s3://b/photos/good.png", "x": 1, "x-metadata": {"class-name": "broken"}}),
    ]
    page = import_zip(signed_in, "cookies", zipped.getvalue(), "\n".join(lines).encode())
    assert "1 image added" in page
    assert "2 lines not imported" in page and "gone.png" in page and "broken" in page


def test_a_trained_version_is_packaged_and_downloaded(signed_in, user, restore_model_version):
    project = factories.make_project(owner=user, name="cookies")
    mv = restore_model_version(project)
    response = signed_in.post("/projects/cookies/lookout/packages", {"version": mv.version})
    assert response.status_code == 302
    page = wait_for(
        lambda: signed_in.get("/projects/cookies/lookout/").content.decode(),
        lambda page: ">Download</a>" in page or "FAILED" in page,
        what="packaging",
    )
    assert ">Download</a>" in page, page
    from lookout.models import PackagingJob

    job = PackagingJob.objects.get(project=project)
    download = signed_in.get(f"/projects/cookies/lookout/packages/{job.name}.zip")
    assert download.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))).namelist()
    folder = f"kenpin-cookies-v{mv.version}"
    for name in ("kenpin_detect.py", "package.json", "requirements.txt", "model/model.json", "engine/model.py"):
        assert f"{folder}/{name}" in names


def test_viewers_may_export_but_not_import(client, user):
    viewer = factories.UserFactory()
    factories.make_project(owner=user, name="cookies", viewer=viewer)
    client.login(username=viewer.username, password=factories.PASSWORD)
    assert client.get("/projects/cookies/lookout/export").status_code == 200
    assert 'id="import-form"' not in client.get("/projects/cookies/lookout/").content.decode()
    assert client.post("/projects/cookies/lookout/", {"split": "train", "s3_uri": "s3://b/k"}).status_code == 403
    stranger = factories.UserFactory()
    client.login(username=stranger.username, password=factories.PASSWORD)
    assert client.get("/projects/cookies/lookout/export").status_code == 404


def test_a_manifest_with_a_folder_of_its_images_is_imported(signed_in, user):
    factories.make_project(owner=user, name="cookies")
    lines = [
        json.dumps(
            {
                "source-ref": f"s3://b/line/{kind}-{i}.png",
                "anomaly-label": int(kind == "anomaly"),
                "anomaly-label-metadata": {"class-name": kind},
            }
        )
        for kind in ("normal", "anomaly")
        for i in range(2)
    ]
    folder = [
        SimpleUploadedFile(f"{kind}-{i}.png", factories.image_bytes(), "image/png")
        for kind in ("normal", "anomaly")
        for i in range(2)
    ]
    response = signed_in.post(
        "/projects/cookies/lookout/",
        {"split": "train", "manifest": SimpleUploadedFile("m.manifest", "\n".join(lines).encode()), "folder": folder},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    page = wait_for(
        lambda: signed_in.get(response["Location"]).content.decode(),
        lambda page: 'data-status="CREATE_IN_PROGRESS"' not in page,
        what="the import",
    )
    assert "4 images added" in page
    assert sorted(Image.objects.filter(project__name="cookies").values_list("label", flat=True)) == [
        "anomaly",
        "anomaly",
        "normal",
        "normal",
    ]

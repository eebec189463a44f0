"""Datasets from Ground Truth manifests on an S3-compatible server, through the boto3 client:
import in the background, report each bad line, list entries as manifest lines, update, delete."""

import io
import json

import numpy as np
import pytest
from PIL import Image as PILImage

from lookout.models import ImageSource
from projects.classes import anomaly_class_create
from projects.models import AnomalyClass, Image, Label, Project
from projects.selectors import image_mask_indices
from tests import factories
from tests.lookout.conftest import wait_for

pytestmark = pytest.mark.worker


@pytest.fixture(autouse=True)
def _live(transactional_db, celery_worker):
    pass


def classification_line(ref, label, attribute="anomaly-label"):
    return json.dumps(
        {
            "source-ref": ref,
            attribute: 1 if label == "anomaly" else 0,
            f"{attribute}-metadata": {
                "confidence": 1,
                "job-name": f"labeling-job/{attribute}",
                "class-name": label,
                "human-annotated": "yes",
                "creation-date": "2021-03-01T10:00:00.000",
                "type": "groundtruth/image-classification",
            },
        }
    )


def segmentation_line(ref, mask_ref, classes):
    line = json.loads(classification_line(ref, "anomaly"))
    color_map = {"0": {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0}}
    for k, (name, color) in enumerate(classes, start=1):
        color_map[str(k)] = {"class-name": name, "hex-color": color, "confidence": 0}
    line["anomaly-mask-ref"] = mask_ref
    line["anomaly-mask-ref-metadata"] = {
        "internal-color-map": color_map,
        "type": "groundtruth/semantic-segmentation",
        "human-annotated": "yes",
        "creation-date": "2021-03-01T10:00:00.000",
        "job-name": "labeling-job/anomaly-mask",
    }
    return json.dumps(line)


def color_mask(width, height, box, color=(0x23, 0xA4, 0x36)):
    array = np.full((height, width, 3), 255, dtype=np.uint8)
    x0, y0, x1, y1 = box
    array[y0:y1, x0:x1] = color
    out = io.BytesIO()
    PILImage.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def put(s3, key, data):
    s3.put_object(Bucket=s3.bucket, Key=key, Body=data)
    return f"s3://{s3.bucket}/{key}"


def dataset_done(client, project, split="train"):
    return wait_for(
        lambda: client.describe_dataset(ProjectName=project, DatasetType=split)["DatasetDescription"],
        lambda d: d["Status"] not in ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS"),
        what="the dataset import",
    )


def test_a_classification_manifest_on_s3_becomes_the_training_dataset(lookoutvision, s3):
    lines = []
    for i in range(4):
        lines.append(classification_line(put(s3, f"imgs/normal/{i}.png", factories.image_bytes()), "normal"))
    for i in range(2):
        # The label attribute is the labelling job's name, which varies from manifest to manifest.
        ref = put(s3, f"imgs/anomaly/{i}.png", factories.image_bytes())
        lines.append(classification_line(ref, "anomaly", attribute="cookie-job"))
    put(s3, "train.manifest", "\n".join(lines).encode())
    lookoutvision.create_project(ProjectName="cookies")

    created = lookoutvision.create_dataset(
        ProjectName="cookies",
        DatasetType="train",
        DatasetSource={"GroundTruthManifest": {"S3Object": {"Bucket": s3.bucket, "Key": "train.manifest"}}},
    )["DatasetMetadata"]
    assert created["Status"] == "CREATE_IN_PROGRESS"
    described = dataset_done(lookoutvision, "cookies")
    assert described["Status"] == "CREATE_COMPLETE", described["StatusMessage"]
    assert described["ImageStats"] == {"Total": 6, "Labeled": 6, "Normal": 4, "Anomaly": 2}
    datasets = lookoutvision.describe_project(ProjectName="cookies")["ProjectDescription"]["Datasets"]
    assert [(d["DatasetType"], d["Status"]) for d in datasets] == [("train", "CREATE_COMPLETE")]

    entries = [
        json.loads(e)
        for e in lookoutvision.list_dataset_entries(ProjectName="cookies", DatasetType="train")["DatasetEntries"]
    ]
    assert sorted(e["source-ref"] for e in entries) == sorted(json.loads(line)["source-ref"] for line in lines)
    by_ref = {e["source-ref"]: e for e in entries}
    assert by_ref[f"s3://{s3.bucket}/imgs/anomaly/0.png"]["cookie-job-metadata"]["class-name"] == "anomaly"
    assert by_ref[f"s3://{s3.bucket}/imgs/normal/0.png"]["anomaly-label-metadata"]["class-name"] == "normal"
    anomalous = lookoutvision.list_dataset_entries(ProjectName="cookies", DatasetType="train", AnomalyClass="anomaly")
    assert len(anomalous["DatasetEntries"]) == 2
    pages = list(
        lookoutvision.get_paginator("list_dataset_entries").paginate(
            ProjectName="cookies", DatasetType="train", PaginationConfig={"PageSize": 4}
        )
    )
    assert [len(p["DatasetEntries"]) for p in pages] == [4, 2]


def test_a_segmentation_manifest_brings_its_masks_and_its_classes(lookoutvision, s3):
    photo = factories.image_bytes(width=80, height=60)
    image_ref = put(s3, "seg/images/a.png", photo)
    mask = np.full((60, 80, 3), 255, dtype=np.uint8)
    mask[20:40, 10:30] = (0x23, 0xA4, 0x36)
    mask[0:10, 50:80] = (0xFF, 0x88, 0x00)
    out = io.BytesIO()
    PILImage.fromarray(mask).save(out, format="PNG")
    mask_ref = put(s3, "seg/masks/a.png", out.getvalue())
    line = segmentation_line(image_ref, mask_ref, [("cracked", "#23a436"), ("chipped", "#ff8800")])
    put(s3, "seg.manifest", (line + "\n").encode())
    lookoutvision.create_project(ProjectName="cookies")
    # A class the project already has is matched by name (its colour is kept); the other is created.
    existing = anomaly_class_create(project=Project.objects.get(name="cookies"), name="Cracked", color="#e6194b")
    lookoutvision.create_dataset(
        ProjectName="cookies",
        DatasetType="train",
        DatasetSource={"GroundTruthManifest": {"S3Object": {"Bucket": s3.bucket, "Key": "seg.manifest"}}},
    )
    assert dataset_done(lookoutvision, "cookies")["Status"] == "CREATE_COMPLETE"
    image = Image.objects.get(project__name="cookies")
    assert image.label == Label.ANOMALY
    classes = list(AnomalyClass.objects.filter(project__name="cookies").values_list("name", "color", "index"))
    assert classes == [("Cracked", "#e6194b", existing.index), ("chipped", "#ff8800", existing.index + 1)]
    expected = np.zeros((60, 80), dtype=np.uint8)
    expected[20:40, 10:30] = existing.index
    expected[0:10, 50:80] = existing.index + 1
    assert (image_mask_indices(image=image) == expected).all()
    (entry,) = lookoutvision.list_dataset_entries(ProjectName="cookies", DatasetType="train")["DatasetEntries"]
    assert json.loads(entry)["anomaly-mask-ref"] == mask_ref


def test_bad_lines_are_reported_by_number_and_the_rest_imported(lookoutvision, s3, user):
    kept = factories.add_image(factories.make_project(owner=user, name="cookies"), label="normal", split="test")
    good = put(s3, "ok/1.png", factories.image_bytes())
    good_with_mask = put(s3, "ok/2.png", factories.image_bytes(width=64, height=48))
    lines = [
        classification_line(good, "normal"),
        "{not json",
        classification_line(f"s3://{s3.bucket}/missing.png", "normal"),
        segmentation_line(good_with_mask, put(s3, "m/small.png", color_mask(32, 32, (0, 0, 5, 5))), [("c", "#23a436")]),
        classification_line(put(s3, "ok/text.png", b"this is not an image"), "anomaly"),
        classification_line(f"s3://no-such-bucket-{s3.bucket}/x.png", "normal"),
        classification_line(put(s3, "ok/3.png", factories.image_bytes()), "anomaly"),
    ]
    put(s3, "bad.manifest", "\n".join(lines).encode())
    lookoutvision.create_dataset(
        ProjectName="cookies",
        DatasetType="train",
        DatasetSource={"GroundTruthManifest": {"S3Object": {"Bucket": s3.bucket, "Key": "bad.manifest"}}},
    )
    described = dataset_done(lookoutvision, "cookies")
    assert described["Status"] == "CREATE_COMPLETE"
    message = described["StatusMessage"]
    assert message.startswith("2 of 7 lines imported; 5 could not be")
    for number in (2, 3, 4, 5, 6):
        assert f"line {number}" in message
    assert "NoSuchKey" in message and "NoSuchBucket" in message
    assert "32x32" in message  # the mask of the wrong size
    assert described["ImageStats"]["Total"] == 2
    assert Image.objects.filter(pk=kept.pk).exists()  # what the project had before stays


def test_a_manifest_that_cannot_be_read_fails_the_dataset_and_says_why(lookoutvision, s3):
    lookoutvision.create_project(ProjectName="cookies")
    lookoutvision.create_dataset(
        ProjectName="cookies",
        DatasetType="train",
        DatasetSource={"GroundTruthManifest": {"S3Object": {"Bucket": s3.bucket, "Key": "nope.manifest"}}},
    )
    described = dataset_done(lookoutvision, "cookies")
    assert described["Status"] == "CREATE_FAILED"
    assert "nope.manifest" in described["StatusMessage"] and "NoSuchKey" in described["StatusMessage"]


def test_update_dataset_entries_relabels_by_source_ref_and_adds_new_lines(lookoutvision, s3):
    first = put(s3, "u/1.png", factories.image_bytes())
    put(s3, "u.manifest", classification_line(first, "normal").encode())
    lookoutvision.create_project(ProjectName="cookies")
    lookoutvision.create_dataset(
        ProjectName="cookies",
        DatasetType="train",
        DatasetSource={"GroundTruthManifest": {"S3Object": {"Bucket": s3.bucket, "Key": "u.manifest"}}},
    )
    dataset_done(lookoutvision, "cookies")
    second = put(s3, "u/2.png", factories.image_bytes())
    changes = classification_line(first, "anomaly") + "\n" + classification_line(second, "normal") + "\n"
    answer = lookoutvision.update_dataset_entries(ProjectName="cookies", DatasetType="train", Changes=changes.encode())
    assert answer["Status"] == "UPDATE_IN_PROGRESS"
    described = dataset_done(lookoutvision, "cookies")
    assert described["Status"] == "UPDATE_COMPLETE", described["StatusMessage"]
    assert described["ImageStats"] == {"Total": 2, "Labeled": 2, "Normal": 1, "Anomaly": 1}
    assert ImageSource.objects.get(source_ref=first).image.label == Label.ANOMALY


def test_an_empty_dataset_then_a_test_dataset_then_deleting_it(lookoutvision, user):
    project = factories.make_project(owner=user, name="cookies")
    lookoutvision.create_dataset(ProjectName="cookies", DatasetType="train")
    with pytest.raises(lookoutvision.exceptions.ConflictException):
        lookoutvision.create_dataset(ProjectName="cookies", DatasetType="train")
    lookoutvision.create_dataset(ProjectName="cookies", DatasetType="test")
    factories.add_image(project, label="normal", split="test")
    stats = lookoutvision.describe_dataset(ProjectName="cookies", DatasetType="test")["DatasetDescription"]
    assert stats["ImageStats"]["Total"] == 1
    lookoutvision.delete_dataset(ProjectName="cookies", DatasetType="test")
    datasets = lookoutvision.describe_project(ProjectName="cookies")["ProjectDescription"]["Datasets"]
    assert [d["DatasetType"] for d in datasets] == ["train"]
    with pytest.raises(lookoutvision.exceptions.ResourceNotFoundException):
        lookoutvision.describe_dataset(ProjectName="cookies", DatasetType="test")

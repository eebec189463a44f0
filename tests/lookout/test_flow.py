"""The whole Lookout for Vision flow through the real boto3 `lookoutvision` client, as the lab
notebook and production code ran it: a project, its dataset from a Ground Truth manifest on an
S3-compatible server, training until TRAINED with Performance, hosting, DetectAnomalies on real
cookie photos, tags, packaging (whose runner scores exactly as the hosted model), stopping,
listing and deleting."""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from lookout.evaluation import evaluation_outputs_write
from lookout.models import PackagingJob
from tests.conftest import cookie_photos
from tests.datasets import COOKIES
from tests.lookout.conftest import wait_for

pytestmark = pytest.mark.worker


@pytest.fixture(autouse=True)
def _live(transactional_db, celery_worker):
    pass


def lfv_color_mask(binary_png: bytes) -> bytes:
    """The shared set's black-and-white mask as Lookout for Vision stored it: red on white."""
    defect = np.asarray(PILImage.open(io.BytesIO(binary_png)).convert("L")) > 0
    rgb = np.full((*defect.shape, 3), 255, dtype=np.uint8)
    rgb[defect] = (255, 0, 0)
    out = io.BytesIO()
    PILImage.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def manifest_of_cookies(s3) -> bytes:
    lines = []
    for kind, count in (("normal", 20), ("anomaly", 10)):
        for path in cookie_photos(kind, "train", count):
            key = f"cookies/train/{kind}/{path.name}"
            s3.put_object(Bucket=s3.bucket, Key=key, Body=path.read_bytes())
            line = {
                "source-ref": f"s3://{s3.bucket}/{key}",
                "anomaly-label": 1 if kind == "anomaly" else 0,
                "anomaly-label-metadata": {
                    "class-name": kind,
                    "type": "groundtruth/image-classification",
                    "job-name": "labeling-job/anomaly-label",
                    "human-annotated": "yes",
                    "confidence": 1,
                },
            }
            mask = COOKIES / "mask" / f"{path.stem}.png"
            if kind == "anomaly" and mask.exists():
                mask_key = f"cookies/masks/{path.stem}.png"
                s3.put_object(Bucket=s3.bucket, Key=mask_key, Body=lfv_color_mask(mask.read_bytes()))
                line["anomaly-mask-ref"] = f"s3://{s3.bucket}/{mask_key}"
                line["anomaly-mask-ref-metadata"] = {
                    "internal-color-map": {
                        "0": {"class-name": "BACKGROUND", "hex-color": "#ffffff"},
                        "1": {"class-name": "cracked", "hex-color": "#ff0000"},
                    },
                    "type": "groundtruth/semantic-segmentation",
                }
            lines.append(json.dumps(line))
    return "\n".join(lines).encode()


def model_status(client, version="1"):
    return client.describe_model(ProjectName="cookies", ModelVersion=version)["ModelDescription"]


def run_package(zip_bytes: bytes, tmp_path, photos) -> list[dict]:
    """Unpack the package and run its runner on `photos` in a Python that cannot import Django,
    torch or timm; its JSON lines."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        archive.extractall(tmp_path)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    blocked = (
        "import runpy, sys; sys.modules.update(django=None, torch=None, timm=None, celery=None); "
        f"sys.argv = ['kenpin_detect.py', *{[str(p) for p in photos]!r}]; "
        "runpy.run_path('kenpin_detect.py', run_name='__main__')"
    )
    run = subprocess.run([sys.executable, "-c", blocked], cwd=folder, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_the_lookout_for_vision_flow_runs_unchanged_against_kenpin(lookoutvision, s3, tmp_path):
    client = lookoutvision
    s3.put_object(Bucket=s3.bucket, Key="cookies/train.manifest", Body=manifest_of_cookies(s3))

    client.create_project(ProjectName="cookies")
    client.create_dataset(
        ProjectName="cookies",
        DatasetType="train",
        DatasetSource={"GroundTruthManifest": {"S3Object": {"Bucket": s3.bucket, "Key": "cookies/train.manifest"}}},
    )
    dataset = wait_for(
        lambda: client.describe_dataset(ProjectName="cookies", DatasetType="train")["DatasetDescription"],
        lambda d: d["Status"] != "CREATE_IN_PROGRESS",
        what="the manifest import",
    )
    assert dataset["Status"] == "CREATE_COMPLETE", dataset["StatusMessage"]
    assert dataset["ImageStats"] == {"Total": 30, "Labeled": 30, "Normal": 20, "Anomaly": 10}

    created = client.create_model(
        ProjectName="cookies",
        Description="first",
        OutputConfig={"S3Location": {"Bucket": s3.bucket, "Prefix": "output/"}},
        Tags=[{"Key": "line", "Value": "2"}],
    )["ModelMetadata"]
    assert (created["ModelVersion"], created["Status"]) == ("1", "TRAINING")
    model = wait_for(lambda: model_status(client), lambda m: m["Status"] != "TRAINING", timeout=600, what="training")
    assert model["Status"] == "TRAINED", model["StatusMessage"]
    performance = model["Performance"]
    assert set(performance) == {"F1Score", "Recall", "Precision"}
    assert performance["F1Score"] > 0.8
    assert model["OutputConfig"] == {"S3Location": {"Bucket": s3.bucket, "Prefix": "output/"}}
    assert model["ModelArn"] == created["ModelArn"] == "arn:aws:lookoutvision:eu-west-1:000000000000:model/cookies/1"

    # The scheduler's task writes the evaluation results to the OutputConfig location.
    assert evaluation_outputs_write() == 1
    model = model_status(client)
    assert model["EvaluationResult"] == {"Bucket": s3.bucket, "Key": "output/cookies/model-1/evaluation-result.json"}
    result = json.loads(s3.get_object(Bucket=s3.bucket, Key=model["EvaluationResult"]["Key"])["Body"].read())
    assert result["AggregatedEvaluationResults"]["Metrics"]["F1Score"] == pytest.approx(performance["F1Score"])
    evaluated = s3.get_object(Bucket=s3.bucket, Key=model["EvaluationManifest"]["Key"])["Body"].read().splitlines()
    assert len(evaluated) == result["EvaluationDetails"]["NumberOfTestingImages"] == 30
    assert {json.loads(line)["anomaly-label-detected-metadata"]["class-name"] for line in evaluated} == {
        "normal",
        "anomaly",
    }

    with pytest.raises(client.exceptions.ConflictException):
        client.detect_anomalies(ProjectName="cookies", ModelVersion="1", Body=b"x", ContentType="image/jpeg")
    assert client.start_model(ProjectName="cookies", ModelVersion="1", MinInferenceUnits=1)["Status"] in (
        "STARTING_HOSTING",
        "HOSTED",
    )
    hosted = wait_for(lambda: model_status(client), lambda m: m["Status"] != "STARTING_HOSTING", what="hosting")
    assert hosted["Status"] == "HOSTED", hosted["StatusMessage"]
    assert hosted["MinInferenceUnits"] == 1

    photos = cookie_photos("anomaly", "test", 8) + cookie_photos("normal", "test", 14)
    served = {}
    for photo in photos:
        result = client.detect_anomalies(
            ProjectName="cookies", ModelVersion="1", Body=photo.read_bytes(), ContentType="image/jpeg"
        )["DetectAnomalyResult"]
        served[photo.name] = result
        mask = PILImage.open(io.BytesIO(result["AnomalyMask"]))  # boto3 decoded the blob
        assert mask.size == PILImage.open(photo).size
        assert result["Anomalies"][0]["Name"] == "background"
    correct = sum(served[p.name]["IsAnomalous"] == p.name.startswith("test-anomaly") for p in photos)
    assert correct >= 18, {name: r["IsAnomalous"] for name, r in served.items()}
    with pytest.raises(client.exceptions.ValidationException):
        client.detect_anomalies(ProjectName="cookies", ModelVersion="1", Body=b"x", ContentType="text/plain")

    arn = model["ModelArn"]
    assert client.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "line", "Value": "2"}]
    client.tag_resource(ResourceArn=arn, Tags=[{"Key": "site", "Value": "Osaka"}, {"Key": "line", "Value": "3"}])
    client.untag_resource(ResourceArn=arn, TagKeys=["site"])
    assert client.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "line", "Value": "3"}]

    job = client.start_model_packaging_job(
        ProjectName="cookies",
        ModelVersion="1",
        JobName="cookies-edge",
        Configuration={
            "Greengrass": {
                "ComponentName": "cookies-component",
                "S3OutputLocation": {"Bucket": s3.bucket, "Prefix": "packages/"},
                "TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"},
            }
        },
    )
    assert job["JobName"] == "cookies-edge"
    packaged = wait_for(
        lambda: client.describe_model_packaging_job(ProjectName="cookies", JobName="cookies-edge")[
            "ModelPackagingDescription"
        ],
        lambda d: d["Status"] in ("SUCCEEDED", "FAILED"),
        what="packaging",
    )
    assert packaged["Status"] == "SUCCEEDED", packaged["StatusMessage"]
    assert [j["JobName"] for j in client.list_model_packaging_jobs(ProjectName="cookies")["ModelPackagingJobs"]] == [
        "cookies-edge"
    ]
    copied = s3.get_object(Bucket=s3.bucket, Key="packages/cookies-component.zip")["Body"].read()
    with PackagingJob.objects.get(name="cookies-edge").package.open("rb") as f:
        assert f.read() == copied
    scored = {Path(r["File"]).name: r for r in run_package(copied, tmp_path, photos)}
    for name, result in served.items():
        assert scored[name]["IsAnomalous"] == result["IsAnomalous"], name
        assert abs(scored[name]["Confidence"] - result["Confidence"]) <= 1e-6, name
        for mine, theirs in zip(scored[name]["Anomalies"], result["Anomalies"], strict=True):
            assert mine["Name"] == theirs["Name"]
            assert (
                abs(mine["PixelAnomaly"]["TotalPercentageArea"] - theirs["PixelAnomaly"]["TotalPercentageArea"]) <= 1e-6
            )

    with pytest.raises(client.exceptions.ConflictException):
        client.delete_model(ProjectName="cookies", ModelVersion="1")
    client.stop_model(ProjectName="cookies", ModelVersion="1")
    stopped = wait_for(lambda: model_status(client), lambda m: m["Status"] == "TRAINED", what="stopping")
    assert stopped["Status"] == "TRAINED"
    assert [m["ModelVersion"] for m in client.list_models(ProjectName="cookies")["Models"]] == ["1"]
    assert client.delete_model(ProjectName="cookies", ModelVersion="1")["ModelArn"] == arn
    assert client.list_models(ProjectName="cookies")["Models"] == []
    client.delete_project(ProjectName="cookies")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_project(ProjectName="cookies")

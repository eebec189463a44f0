"""Models through the boto3 client, on a model trained once per session (restored): describe with
Performance, versions and "latest", refusals in AWS's words, and an expired signature."""

from datetime import UTC, datetime, timedelta

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests import factories

pytestmark = pytest.mark.worker


@pytest.fixture(autouse=True)
def _live(transactional_db):
    pass


@pytest.fixture
def cookies(user):
    return factories.make_project(owner=user, name="cookies")


def test_describe_model_gives_performance_at_the_threshold_in_use(lookoutvision, cookies, restore_model_version):
    mv = restore_model_version(cookies)
    described = lookoutvision.describe_model(ProjectName="cookies", ModelVersion=str(mv.version))["ModelDescription"]
    assert described["Status"] == "TRAINED"
    assert described["ModelArn"] == f"arn:aws:lookoutvision:eu-west-1:000000000000:model/cookies/{mv.version}"
    performance = described["Performance"]
    assert 0.0 <= performance["Precision"] <= 1.0 and 0.0 <= performance["Recall"] <= 1.0
    p, r = performance["Precision"], performance["Recall"]
    assert performance["F1Score"] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)
    assert described["EvaluationEndTimestamp"] is not None
    latest = lookoutvision.describe_model(ProjectName="cookies", ModelVersion="latest")["ModelDescription"]
    assert latest["ModelVersion"] == str(mv.version)


def test_an_unknown_model_version_raises_resource_not_found(lookoutvision, cookies, restore_model_version):
    restore_model_version(cookies)
    for call in (
        lambda: lookoutvision.describe_model(ProjectName="cookies", ModelVersion="9"),
        lambda: lookoutvision.start_model(ProjectName="cookies", ModelVersion="9", MinInferenceUnits=1),
        lambda: lookoutvision.list_tags_for_resource(
            ResourceArn="arn:aws:lookoutvision:us-east-1:123456789012:model/cookies/9"
        ),
    ):
        with pytest.raises(lookoutvision.exceptions.ResourceNotFoundException) as error:
            call()
        assert error.value.response["ResourceType"] == "MODEL"
    with pytest.raises(lookoutvision.exceptions.ValidationException):
        lookoutvision.describe_model(ProjectName="cookies", ModelVersion="v1")


def test_list_models_pages(lookoutvision, cookies, restore_model_version):
    for _ in range(3):
        restore_model_version(cookies)
    pages = list(
        lookoutvision.get_paginator("list_models").paginate(ProjectName="cookies", PaginationConfig={"PageSize": 2})
    )
    assert [[m["ModelVersion"] for m in page["Models"]] for page in pages] == [["1", "2"], ["3"]]
    assert all(m["Status"] == "TRAINED" and "F1Score" in m["Performance"] for page in pages for m in page["Models"])


def test_training_without_enough_images_says_what_is_missing(lookoutvision, cookies):
    lookoutvision.create_dataset(ProjectName="cookies", DatasetType="train")
    factories.add_image(cookies, label="normal")
    with pytest.raises(lookoutvision.exceptions.ValidationException) as error:
        lookoutvision.create_model(ProjectName="cookies", OutputConfig={"S3Location": {"Bucket": "out"}})
    assert "Add 19 more normal images" in error.value.response["Error"]["Message"]


def test_training_without_a_dataset_is_refused(lookoutvision, cookies):
    with pytest.raises(lookoutvision.exceptions.ValidationException) as error:
        lookoutvision.create_model(ProjectName="cookies", OutputConfig={"S3Location": {"Bucket": "out"}})
    assert "CreateDataset" in error.value.response["Error"]["Message"]


def test_stopping_a_model_that_is_not_hosted_changes_nothing(lookoutvision, cookies, restore_model_version):
    mv = restore_model_version(cookies)
    assert lookoutvision.stop_model(ProjectName="cookies", ModelVersion=str(mv.version))["Status"] == "TRAINED"


class SignedAt(SigV4Auth):
    """botocore's own SigV4 signer, at a chosen time instead of now."""

    def __init__(self, credentials, at: datetime):
        super().__init__(credentials, "lookoutvision", "us-east-1")
        self.at = at

    def add_auth(self, request):
        request.context["timestamp"] = self.at.strftime("%Y%m%dT%H%M%SZ")
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        self._inject_signature_to_request(request, self.signature(self.string_to_sign(request, canonical), request))


def test_a_signature_older_than_15_minutes_is_refused(live_server, aws_keys, user):
    key_id, secret = aws_keys(user)
    url = f"{live_server.url}/2020-11-20/projects"

    def send(at):
        request = AWSRequest(method="GET", url=url)
        SignedAt(Credentials(key_id, secret), at).add_auth(request)
        return requests.get(url, headers=dict(request.headers))

    assert send(datetime.now(UTC) - timedelta(minutes=10)).status_code == 200
    expired = send(datetime.now(UTC) - timedelta(minutes=16))
    assert expired.status_code == 403
    assert expired.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert "Signature expired" in expired.json()["message"]

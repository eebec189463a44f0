"""Projects through the real boto3 `lookoutvision` client, signed with SigV4."""

import pytest
from botocore.exceptions import ClientError

from tests import factories


@pytest.fixture(autouse=True)
def _live(transactional_db):
    pass


def test_a_project_is_created_described_listed_and_deleted(lookoutvision):
    created = lookoutvision.create_project(ProjectName="cookies")["ProjectMetadata"]
    assert created["ProjectName"] == "cookies"
    assert created["ProjectArn"] == "arn:aws:lookoutvision:eu-west-1:000000000000:project/cookies"
    described = lookoutvision.describe_project(ProjectName="cookies")["ProjectDescription"]
    assert described["ProjectArn"] == created["ProjectArn"]
    assert described["CreationTimestamp"] == created["CreationTimestamp"]
    assert described["Datasets"] == []
    assert [p["ProjectName"] for p in lookoutvision.list_projects()["Projects"]] == ["cookies"]
    deleted = lookoutvision.delete_project(ProjectName="cookies")
    assert deleted["ProjectArn"] == created["ProjectArn"]
    assert lookoutvision.list_projects()["Projects"] == []


def test_an_unknown_project_raises_resource_not_found(lookoutvision):
    with pytest.raises(lookoutvision.exceptions.ResourceNotFoundException) as error:
        lookoutvision.describe_project(ProjectName="nothing-here")
    assert error.value.response["ResourceId"] == "nothing-here"
    assert error.value.response["ResourceType"] == "PROJECT"
    assert "nothing-here" in error.value.response["Error"]["Message"]


def test_a_project_name_taken_raises_conflict(lookoutvision):
    lookoutvision.create_project(ProjectName="cookies")
    with pytest.raises(lookoutvision.exceptions.ConflictException):
        lookoutvision.create_project(ProjectName="cookies")


def test_an_invalid_name_raises_validation_in_aws_words(lookoutvision):
    with pytest.raises(lookoutvision.exceptions.ValidationException) as error:
        lookoutvision.create_project(ProjectName="-no")
    assert "failed to satisfy constraint" in error.value.response["Error"]["Message"]


def test_list_projects_pages_with_next_token(lookoutvision, user):
    for i in range(5):
        factories.make_project(owner=user, name=f"p{i}")
    pages = list(lookoutvision.get_paginator("list_projects").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(page["Projects"]) for page in pages] == [2, 2, 1]
    assert [p["ProjectName"] for page in pages for p in page["Projects"]] == [f"p{i}" for i in range(5)]


def test_projects_of_others_are_not_visible(lookoutvision, lookoutvision_for):
    other = factories.UserFactory()
    factories.make_project(owner=other, name="theirs")
    assert lookoutvision.list_projects()["Projects"] == []
    with pytest.raises(lookoutvision.exceptions.ResourceNotFoundException):
        lookoutvision.describe_project(ProjectName="theirs")
    assert [p["ProjectName"] for p in lookoutvision_for(other).list_projects()["Projects"]] == ["theirs"]


def test_a_viewer_may_read_but_not_delete(lookoutvision_for, user):
    viewer = factories.UserFactory()
    factories.make_project(owner=user, name="shared", viewer=viewer)
    client = lookoutvision_for(viewer)
    assert client.describe_project(ProjectName="shared")["ProjectDescription"]["ProjectName"] == "shared"
    with pytest.raises(client.exceptions.AccessDeniedException):
        client.delete_project(ProjectName="shared")


def test_the_same_client_token_creates_once_and_answers_the_same(lookoutvision):
    first = lookoutvision.create_project(ProjectName="cookies", ClientToken="create-cookies-1")
    again = lookoutvision.create_project(ProjectName="cookies", ClientToken="create-cookies-1")
    assert again["ProjectMetadata"] == first["ProjectMetadata"]
    with pytest.raises(lookoutvision.exceptions.ConflictException) as error:
        lookoutvision.create_project(ProjectName="biscuits", ClientToken="create-cookies-1")
    assert "ClientToken" in error.value.response["Error"]["Message"]


def test_a_wrong_secret_raises_invalid_signature(lookoutvision_for, user):
    client = lookoutvision_for(user, aws_secret_access_key="wrong" * 8)
    with pytest.raises(ClientError) as error:
        client.list_projects()
    assert error.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_an_unknown_key_raises_unrecognized_client(lookoutvision_for, user):
    client = lookoutvision_for(user, aws_access_key_id="AKKPNOSUCHKEY0000000")
    with pytest.raises(ClientError) as error:
        client.list_projects()
    assert error.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_a_revoked_token_raises_unrecognized_client(live_server, aws_keys, user):
    import boto3

    from lookout.models import AccessKey
    from projects.tokens import api_token_revoke

    key_id, secret = aws_keys(user)
    client = boto3.client(
        "lookoutvision",
        endpoint_url=live_server.url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )
    assert client.list_projects()["Projects"] == []
    api_token_revoke(user=user, token_id=AccessKey.objects.get(access_key_id=key_id).token_id)
    with pytest.raises(ClientError) as error:
        client.list_projects()
    assert error.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_bearer_tokens_keep_working(live_server, user):
    import requests

    from projects.tokens import api_token_create

    factories.make_project(owner=user, name="cookies")
    _, token = api_token_create(user=user, name="bearer")
    response = requests.get(f"{live_server.url}/2020-11-20/projects", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert [p["ProjectName"] for p in response.json()["Projects"]] == ["cookies"]
    refused = requests.get(f"{live_server.url}/2020-11-20/projects", headers={"Authorization": "Bearer kp_nope"})
    assert refused.status_code == 403
    assert refused.headers["x-amzn-ErrorType"] == "UnrecognizedClientException"
    assert requests.get(f"{live_server.url}/2020-11-20/projects").headers["x-amzn-ErrorType"] == (
        "MissingAuthenticationTokenException"
    )


def test_an_unknown_path_answers_in_aws_format(live_server):
    import requests

    response = requests.get(f"{live_server.url}/2020-11-20/projects/x/models/1/describe")
    assert response.status_code == 404
    assert response.headers["x-amzn-ErrorType"] == "UnknownOperationException"
    assert response.json()["message"]

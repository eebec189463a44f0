"""The SigV4 verifier against botocore's own signer: what the AWS SDK signs, Kenpin accepts, and
any change to what was signed is refused."""

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lookout.sigv4 import SignatureError, parse_authorization, verify_signature

KEY_ID = "AKKPEXAMPLE0000001"
SECRET = "kenpin/secret+example/key0000000000000000"


def signed(method, url, *, body=b"", headers=None, region="eu-west-1", service="lookoutvision", secret=SECRET, **ctx):
    """A request as botocore signs and sends it: (method, path, query, headers, body)."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    request.context.update(ctx)
    SigV4Auth(Credentials(KEY_ID, secret), service, region).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    sent = {name.lower(): value for name, value in prepared.headers.items()}
    sent.setdefault("host", parts.netloc)  # the HTTP client adds it
    return {
        "method": prepared.method,
        "path": parts.path,
        "query_string": parts.query,
        "headers": sent,
        "body": prepared.body or b"",
    }


def verify(request, *, secret=SECRET, now=None, service="lookoutvision"):
    authorization = parse_authorization(request["headers"], service=service)
    verify_signature(authorization=authorization, secret=secret, now=now or datetime.now(UTC), **request)
    return authorization


ARN = "arn:aws:lookoutvision:eu-west-1:000000000000:model/cookies/1"


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "http://127.0.0.1:8000/2020-11-20/projects", b""),
        (
            "GET",
            "http://127.0.0.1:8000/2020-11-20/projects/cookies/datasets/train/entries"
            "?createdAfter=2021-01-01T00%3A00%3A00Z&maxResults=5&labeled=true&sourceRefContains=a%20b%2Bc",
            b"",
        ),
        ("POST", "http://127.0.0.1:8000/2020-11-20/projects", json.dumps({"ProjectName": "cookies"}).encode()),
        ("GET", f"http://kenpin.example:443/2020-11-20/tags/{ARN.replace(':', '%3A').replace('/', '%2F')}", b""),
        ("DELETE", "http://127.0.0.1:8000/2020-11-20/tags/x?tagKeys=a&tagKeys=b%2Fc", b""),
        ("POST", "http://127.0.0.1:8000/2020-11-20/projects/cookies/models/1/detect", bytes(range(256)) * 40),
    ],
)
def test_it_accepts_what_botocore_signs(method, url, body):
    request = signed(method, url, body=body, headers={"Content-Type": "application/x-amz-json-1.1"})
    authorization = verify(request)
    assert (authorization.access_key_id, authorization.region, authorization.service) == (
        KEY_ID,
        "eu-west-1",
        "lookoutvision",
    )


def test_any_region_is_accepted():
    for region in ("us-east-1", "ap-northeast-1", "kenpin-local"):
        assert verify(signed("GET", "http://h/2020-11-20/projects", region=region)).region == region


def test_it_refuses_a_wrong_secret():
    request = signed("GET", "http://h/2020-11-20/projects", secret="not-the-secret")
    with pytest.raises(SignatureError) as error:
        verify(request)
    assert error.value.code == "InvalidSignatureException"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r.update(body=r["body"] + b" "),
        lambda r: r.update(path=r["path"].replace("cookies", "cookie2")),
        lambda r: r.update(query_string="maxResults=100"),
        lambda r: r.update(method="DELETE"),
        lambda r: r["headers"].update({"x-amzn-client-token": "another"}),
        lambda r: r["headers"].update({"host": "elsewhere:8000"}),
    ],
)
def test_it_refuses_a_request_changed_after_signing(tamper):
    request = signed(
        "POST",
        "http://h/2020-11-20/projects/cookies/models?maxResults=5",
        body=b'{"Description": "x"}',
        headers={"X-Amzn-Client-Token": "token-1", "Content-Type": "application/x-amz-json-1.1"},
    )
    verify(request)
    tamper(request)
    with pytest.raises(SignatureError) as error:
        verify(request)
    assert error.value.code == "InvalidSignatureException"


def test_a_signature_is_valid_for_15_minutes_either_way():
    request = signed("GET", "http://h/2020-11-20/projects")
    signed_at = datetime.strptime(request["headers"]["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    verify(request, now=signed_at + timedelta(minutes=14, seconds=59))
    verify(request, now=signed_at - timedelta(minutes=14, seconds=59))
    for now in (signed_at + timedelta(minutes=15, seconds=1), signed_at - timedelta(minutes=15, seconds=1)):
        with pytest.raises(SignatureError) as error:
            verify(request, now=now)
        assert error.value.code == "InvalidSignatureException"
        assert "Signature expired" in error.value.message


def test_unsigned_payload_over_https_is_accepted_as_the_sdk_sends_it():
    request = signed(
        "POST",
        "https://h/2020-11-20/projects/cookies/models/1/detect",
        body=b"\xff\xd8image",
        payload_signing_enabled=False,
    )
    assert request["headers"]["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    verify(request)


def test_a_claimed_payload_hash_must_match_the_body():
    request = signed("POST", "https://h/2020-11-20/projects", body=b"{}")
    request["headers"]["x-amz-content-sha256"] = "0" * 64
    with pytest.raises(SignatureError):
        verify(request)


def test_the_date_header_can_replace_x_amz_date():
    request = signed("GET", "http://h/2020-11-20/projects", headers={"Date": "Mon, 01 Jan 2024 00:00:00 GMT"})
    assert "x-amz-date" not in request["headers"]
    verify(request)


def test_a_session_token_is_signed_like_any_header():
    request = AWSRequest(method="GET", url="http://h/2020-11-20/projects")
    SigV4Auth(Credentials(KEY_ID, SECRET, token="session"), "lookoutvision", "us-east-1").add_auth(request)
    sent = {k.lower(): v for k, v in request.prepare().headers.items()} | {"host": "h"}
    authorization = parse_authorization(sent, service="lookoutvision")
    verify_signature(
        authorization=authorization,
        secret=SECRET,
        method="GET",
        path="/2020-11-20/projects",
        query_string="",
        headers=sent,
        body=b"",
        now=datetime.now(UTC),
    )


def test_it_refuses_a_signature_for_another_service():
    with pytest.raises(SignatureError) as error:
        verify(signed("GET", "http://h/2020-11-20/projects", service="rekognition"))
    assert error.value.code == "InvalidSignatureException"
    assert "lookoutvision" in error.value.message


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "MissingAuthenticationTokenException"),
        ("Bearer kp_abc", "MissingAuthenticationTokenException"),
        (
            "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/lookoutvision/aws4_request",
            "IncompleteSignatureException",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AK/2024/us-east-1/lookoutvision/aws4_request, SignedHeaders=host, "
            "Signature=" + "a" * 64,
            "IncompleteSignatureException",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/lookoutvision/aws4_request, SignedHeaders=x-amz-date, "
            "Signature=" + "a" * 64,
            "InvalidSignatureException",
        ),
    ],
)
def test_a_malformed_authorization_header_says_what_is_wrong(authorization, code):
    headers = {"authorization": authorization} if authorization else {}
    with pytest.raises(SignatureError) as error:
        parse_authorization(headers, service="lookoutvision")
    assert error.value.code == code


def test_a_signed_header_missing_from_the_request_is_refused():
    request = signed("GET", "http://h/2020-11-20/projects", headers={"X-Amzn-Client-Token": "t"})
    del request["headers"]["x-amzn-client-token"]
    with pytest.raises(SignatureError) as error:
        verify(request)
    assert "x-amzn-client-token" in error.value.message

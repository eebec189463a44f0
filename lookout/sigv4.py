"""AWS Signature Version 4, verified on the server side: plain Python, no Django.

The AWS SDKs and the AWS CLI sign every request with the caller's secret access key: an HMAC
of a canonical form of the request (method, path, query, the headers it lists, the body's
SHA-256) under a key derived from the secret, the date, the region and the service. To check
a signature the server builds the same canonical request from what it received and computes
the same HMAC; nothing secret travels. The steps follow AWS's specification ("Create a signed
AWS API request") and botocore's signer (botocore/auth.py, SigV4Auth), which the tests use as
the reference client.

Use: `parse_authorization(headers)` says who claims to sign (the access key id and the
credential scope); the caller looks up that key's secret; `verify_signature(...)` checks the
date and the signature and raises `SignatureError` otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# A signed request is accepted within this much of the server's clock, either way (AWS's rule).
MAX_CLOCK_SKEW = timedelta(minutes=15)
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+"
    r"Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed_headers>[^,\s]+)\s*,\s*"
    r"Signature=(?P<signature>[0-9a-fA-F]{64})\s*$"
)


class SignatureError(Exception):
    """A request that is not (validly) signed; `code` is the AWS error code the SDKs know."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Authorization:
    """What the `Authorization` header claims; nothing in it is trusted until verified."""

    access_key_id: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]  # lower-case names, as listed (sorted by the signer)
    signature: str  # 64 hex digits

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse_authorization(headers: Mapping[str, str], *, service: str) -> Authorization:
    """The `Authorization` header of a SigV4-signed request, checked for form and service.

    `headers` maps lower-case header names to values. Raises SignatureError with AWS's codes:
    MissingAuthenticationTokenException when there is no SigV4 header at all,
    IncompleteSignatureException when it is malformed, InvalidSignatureException when it is
    scoped to another service.
    """
    value = headers.get("authorization", "")
    if not value.startswith(ALGORITHM):
        raise SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTHORIZATION.match(value.strip())
    if not match:
        raise SignatureError(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters "
            f"(in this order, separated by commas): {value[:200]!r}",
        )
    parts = match["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not re.fullmatch(r"\d{8}", parts[1]) or not all(parts):
        raise SignatureError(
            "IncompleteSignatureException",
            f"Credential should be ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request, not {match['credential']!r}.",
        )
    access_key_id, date, region, scoped_service, _ = parts
    if scoped_service != service:
        raise SignatureError(
            "InvalidSignatureException", f"Credential should be scoped to correct service: '{service}'."
        )
    signed = tuple(match["signed_headers"].split(";"))
    if "host" not in signed:
        raise SignatureError("InvalidSignatureException", "The 'Host' header must be signed (SignedHeaders).")
    return Authorization(
        access_key_id=access_key_id,
        date=date,
        region=region,
        service=scoped_service,
        signed_headers=signed,
        signature=match["signature"].lower(),
    )


def request_time(headers: Mapping[str, str]) -> datetime:
    """When the client signed: `X-Amz-Date` (ISO 8601 basic), else the HTTP `Date` header."""
    if amz_date := headers.get("x-amz-date"):
        try:
            return datetime.strptime(amz_date.strip(), TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            pass
    elif date := headers.get("date"):
        try:
            return parsedate_to_datetime(date).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    raise SignatureError(
        "IncompleteSignatureException",
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header "
        "in the format YYYYMMDD'T'HHMMSS'Z'.",
    )


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, as botocore's normalize_url_path does before signing."""
    if not path:
        return "/"
    output: list[str] = []
    for segment in path.split("/"):
        if segment == ".":
            continue
        if segment == "..":
            if output:
                output.pop()
        else:
            output.append(segment)
    normalized = "/".join(output)
    if path.startswith("/") and not normalized.startswith("/"):
        normalized = "/" + normalized
    if path.endswith("/") and normalized != "/":
        normalized += "/"
    return normalized


def canonical_path(path: str) -> str:
    """The canonical URI of a path *as sent* (percent-encoded): each byte outside the unreserved
    set is encoded again, so `%2F` in a label becomes `%252F` (every service but S3 does this)."""
    return quote(_remove_dot_segments(path), safe="/~")


def canonical_query(query_string: str) -> str:
    """Pairs decoded, encoded again with AWS's unreserved set, and sorted by key, then value."""
    if not query_string:
        return ""
    pairs = []
    for pair in query_string.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{key}={value}" for key, value in sorted(pairs))


def canonical_headers(headers: Mapping[str, str], names: tuple[str, ...]) -> str:
    lines = []
    for name in sorted(set(names)):
        if name not in headers:
            raise SignatureError("InvalidSignatureException", f"The signed header '{name}' is not in the request.")
        lines.append(f"{name}:{' '.join(headers[name].split())}\n")
    return "".join(lines)


def payload_hash(headers: Mapping[str, str], body: bytes) -> str:
    """The payload's line of the canonical request: its SHA-256, or UNSIGNED-PAYLOAD when the
    client said so in `X-Amz-Content-SHA256` (allowed over HTTPS by the SDKs)."""
    actual = hashlib.sha256(body).hexdigest()
    claimed = headers.get("x-amz-content-sha256")
    if claimed is None:
        return actual
    claimed = claimed.strip()
    if claimed == UNSIGNED_PAYLOAD:
        return UNSIGNED_PAYLOAD
    if not hmac.compare_digest(claimed.lower(), actual):
        raise SignatureError(
            "InvalidSignatureException", "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return claimed


def canonical_request(
    *, method: str, path: str, query_string: str, headers: Mapping[str, str], signed_headers, body: bytes
) -> str:
    return "\n".join(
        [
            method.upper(),
            canonical_path(path),
            canonical_query(query_string),
            canonical_headers(headers, tuple(signed_headers)),
            ";".join(sorted(set(signed_headers))),
            payload_hash(headers, body),
        ]
    )


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(*, secret: str, authorization: Authorization, timestamp: str, canonical: str) -> str:
    string_to_sign = "\n".join(
        [ALGORITHM, timestamp, authorization.scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = signing_key(secret, authorization.date, authorization.region, authorization.service)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def verify_signature(
    *,
    authorization: Authorization,
    secret: str,
    method: str,
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> None:
    """Raise SignatureError unless `authorization` is a valid signature of this request by `secret`.

    `path` is the path as the client sent it (percent-encoded), `query_string` the raw query,
    `headers` lower-case names to values. The signing time must be within MAX_CLOCK_SKEW of
    `now` and match the credential scope's date; signatures are compared in constant time.
    """
    signed_at = request_time(headers)
    if abs(now - signed_at) > MAX_CLOCK_SKEW:
        earliest, latest = now - MAX_CLOCK_SKEW, now + MAX_CLOCK_SKEW
        which = (
            f"earlier than {earliest:{TIMESTAMP_FORMAT}}"
            if signed_at < now
            else f"later than {latest:{TIMESTAMP_FORMAT}}"
        )
        raise SignatureError(
            "InvalidSignatureException",
            f"Signature expired: {signed_at:{TIMESTAMP_FORMAT}} is now {which} "
            f"({now:{TIMESTAMP_FORMAT}} {'-' if signed_at < now else '+'} 15 min.). Check the client's clock.",
        )
    timestamp = f"{signed_at:{TIMESTAMP_FORMAT}}"
    if timestamp[:8] != authorization.date:
        raise SignatureError(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{authorization.date}' != '{timestamp[:8]}'.",
        )
    canonical = canonical_request(
        method=method,
        path=path,
        query_string=query_string,
        headers=headers,
        signed_headers=authorization.signed_headers,
        body=body,
    )
    expected = signature(secret=secret, authorization=authorization, timestamp=timestamp, canonical=canonical)
    if not hmac.compare_digest(expected, authorization.signature):
        raise SignatureError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your "
            "AWS Secret Access Key and signing method. Consult the service documentation for details.",
        )

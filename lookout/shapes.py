"""Lookout for Vision's service model (botocore's service-2.json, in lookout/aws_model): every
request is read and checked against its operation's input shape, every answer is written in its
output shape, exactly as the AWS SDKs serialise and parse them (the rest-json protocol).

Where a value breaks the model (a missing required member, a name that fails its pattern, a
number out of range) the caller gets AWS's own ValidationException wording, so that code written
against Lookout for Vision reads Kenpin's refusals the same way.
"""

from __future__ import annotations

import base64
import binascii
import functools
import gzip
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent / "aws_model" / "lookoutvision" / "2020-11-20"


class ShapeError(ValueError):
    """Input that breaks the service model; `message` is in AWS's words."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@functools.cache
def service_model() -> dict:
    return json.loads(gzip.decompress((MODEL_DIR / "service-2.json.gz").read_bytes()))


def shape(name: str) -> dict:
    return service_model()["shapes"][name]


def operation(name: str) -> dict:
    return service_model()["operations"][name]


@functools.cache
def _pattern(source: str) -> re.Pattern:
    # The model's patterns are Java regular expressions; Python's `re` lacks Unicode property
    # classes, so letters, separators and numbers (the tag patterns) become \w and \s.
    return re.compile(source.replace(r"\p{L}\p{Z}\p{N}", r"\w\s"))


@dataclass(frozen=True)
class RawRequest:
    """What arrived over HTTP, already split by location."""

    uri: Mapping[str, str]  # URI labels, decoded
    query: Mapping[str, list[str]]  # decoded, every value of each key
    headers: Mapping[str, str]  # lower-case names
    body: bytes


def parse_input(operation_name: str, raw: RawRequest) -> dict:
    """The operation's input as the SDK sent it, checked against the model."""
    op = operation(operation_name)
    input_shape = shape(op["input"]["shape"])
    payload_member = input_shape.get("payload")
    body: dict = {}
    if payload_member is None and raw.body.strip():
        try:
            body = json.loads(raw.body)
        except (UnicodeDecodeError, ValueError):
            raise ShapeError("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ShapeError("The request body must be a JSON object.")
    values: dict = {}
    errors: list[str] = []
    failed: set[str] = set()
    for member, spec in input_shape["members"].items():
        location, location_name = spec.get("location"), spec.get("locationName", member)
        member_shape = shape(spec["shape"])
        if member == payload_member:
            value = raw.body if raw.body else None
        elif location == "uri":
            value = raw.uri.get(location_name)
        elif location == "header":
            value = raw.headers.get(location_name.lower())
        elif location == "querystring":
            found = raw.query.get(location_name)
            value = (found if member_shape["type"] == "list" else found[-1]) if found else None
        else:
            value = body.get(member)
        if value is None:
            continue
        try:
            values[member] = _read(member_shape, value, path=location_name if location else member, text=bool(location))
        except ShapeError as exc:
            errors.append(exc.message)
            failed.add(member)
    for member in input_shape.get("required", ()):
        if member not in values and member not in failed:
            where = input_shape["members"][member].get("locationName", _lower_first(member))
            errors.append(f"Value null at '{where}' failed to satisfy constraint: Member must not be null")
    if errors:
        count = len(errors)
        raise ShapeError(f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(errors))
    return values


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _constraint(value, path: str, what: str) -> ShapeError:
    shown = value if isinstance(value, (int, float)) else str(value)[:100]
    return ShapeError(f"Value '{shown}' at '{path}' failed to satisfy constraint: Member must {what}")


def _read(spec: dict, value, *, path: str, text: bool):
    """One value against its shape; `text` when it came from the URI, a header or the query."""
    kind = spec["type"]
    if kind == "string":
        if not isinstance(value, str):
            raise _constraint(value, path, "be a string")
        if "min" in spec and len(value) < spec["min"]:
            raise _constraint(value, path, f"have length greater than or equal to {spec['min']}")
        if "max" in spec and len(value) > spec["max"]:
            raise _constraint(value, path, f"have length less than or equal to {spec['max']}")
        if "enum" in spec and value not in spec["enum"]:
            raise _constraint(value, path, f"satisfy enum value set: [{', '.join(spec['enum'])}]")
        if "pattern" in spec and not _pattern(spec["pattern"]).fullmatch(value):
            raise _constraint(value, path, f"satisfy regular expression pattern: {spec['pattern']}")
        return value
    if kind == "integer":
        if text:
            try:
                value = int(value)
            except ValueError:
                raise _constraint(value, path, "be an integer") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _constraint(value, path, "be an integer")
        if "min" in spec and value < spec["min"]:
            raise _constraint(value, path, f"have value greater than or equal to {spec['min']}")
        if "max" in spec and value > spec["max"]:
            raise _constraint(value, path, f"have value less than or equal to {spec['max']}")
        return value
    if kind == "boolean":
        if text:
            if value.lower() not in ("true", "false"):
                raise _constraint(value, path, "be true or false")
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise _constraint(value, path, "be true or false")
        return value
    if kind == "timestamp":
        return _timestamp(value, path)
    if kind == "blob":
        if isinstance(value, bytes):
            data = value
        elif isinstance(value, str):
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise _constraint("…", path, "be base64-encoded") from None
        else:
            raise _constraint(value, path, "be base64-encoded")
        if "min" in spec and len(data) < spec["min"]:
            raise _constraint("…", path, f"have length greater than or equal to {spec['min']}")
        if "max" in spec and len(data) > spec["max"]:
            raise _constraint("…", path, f"have length less than or equal to {spec['max']}")
        return data
    if kind == "list":
        if not isinstance(value, list):
            raise _constraint(value, path, "be a list")
        if "min" in spec and len(value) < spec["min"]:
            raise _constraint(len(value), path, f"have at least {spec['min']} items")
        if "max" in spec and len(value) > spec["max"]:
            raise _constraint(len(value), path, f"have at most {spec['max']} items")
        member = shape(spec["member"]["shape"])
        return [_read(member, item, path=f"{path}.{i + 1}.member", text=text) for i, item in enumerate(value)]
    if kind == "structure":
        if not isinstance(value, dict):
            raise _constraint(value, path, "be an object")
        out = {}
        for name, member in spec["members"].items():
            if value.get(name) is not None:
                out[name] = _read(shape(member["shape"]), value[name], path=f"{path}.{_lower_first(name)}", text=False)
        for name in spec.get("required", ()):
            if name not in out:
                raise ShapeError(
                    f"Value null at '{path}.{_lower_first(name)}' failed to satisfy constraint: Member must not be null"
                )
        return out
    if kind in ("float", "double", "long"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _constraint(value, path, "be a number")
        return value
    raise _constraint(value, path, f"be a {kind}")  # pragma: no cover - the model has no other kinds


def _timestamp(value, path: str) -> datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _constraint(value, path, "be a timestamp (ISO 8601 or seconds since 1970)") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise _constraint(value, path, "be a timestamp (ISO 8601 or seconds since 1970)")


def render_output(operation_name: str, values: dict) -> dict:
    """The operation's answer as the body the SDK parses: members of the output shape only,
    timestamps in seconds since 1970, blobs in base64, absent (None) members left out."""
    op = operation(operation_name)
    return _write(shape(op["output"]["shape"]), values)


def _write(spec: dict, value):
    kind = spec["type"]
    if kind == "structure":
        out = {}
        for name, member in spec["members"].items():
            if isinstance(value, Mapping):
                item = value.get(name)
            else:
                item = getattr(value, name, None)
            if item is not None:
                out[name] = _write(shape(member["shape"]), item)
        return out
    if kind == "list":
        member = shape(spec["member"]["shape"])
        return [_write(member, item) for item in value]
    if kind == "timestamp":
        return value.timestamp()
    if kind == "blob":
        return base64.b64encode(value).decode() if isinstance(value, bytes) else value
    return value

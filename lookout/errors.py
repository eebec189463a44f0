"""Errors as Lookout for Vision answered them, so that the AWS SDKs raise their usual exceptions.

An error is the HTTP status, the `x-amzn-ErrorType` header (which botocore turns into
`error.response["Error"]["Code"]` and `client.exceptions.<Code>`) and a JSON body with
`message` (botocore's `Error.Message`) and the exception shape's members (`Message`,
`ResourceId`, `ResourceType`, ...), which botocore adds to `error.response`.
"""

from __future__ import annotations

import uuid

from django.http import JsonResponse

# Resource types of the model's ResourceType enum.
PROJECT, DATASET, MODEL, TRIAL, MODEL_PACKAGE_JOB = "PROJECT", "DATASET", "MODEL", "TRIAL", "MODEL_PACKAGE_JOB"


class LookoutError(Exception):
    status = 400
    code = "ValidationException"

    def __init__(self, message: str, *, resource_id: str = "", resource_type: str = "", **members):
        super().__init__(message)
        self.message = message
        self.members = {"ResourceId": resource_id, "ResourceType": resource_type, **members}
        self.headers: dict[str, str] = {}


class ValidationException(LookoutError):
    status, code = 400, "ValidationException"


class AccessDeniedException(LookoutError):
    status, code = 403, "AccessDeniedException"


class ResourceNotFoundException(LookoutError):
    status, code = 404, "ResourceNotFoundException"


class ConflictException(LookoutError):
    status, code = 409, "ConflictException"


class ServiceQuotaExceededException(LookoutError):
    status, code = 402, "ServiceQuotaExceededException"


class ThrottlingException(LookoutError):
    status, code = 429, "ThrottlingException"

    def __init__(self, message: str, *, retry_after: int = 1, **members):
        super().__init__(message, **members)
        self.headers["Retry-After"] = str(retry_after)


class InternalServerException(LookoutError):
    status, code = 500, "InternalServerException"

    def __init__(self, message: str, *, retry_after: int | None = None, **members):
        super().__init__(message, **members)
        if retry_after is not None:
            self.headers["Retry-After"] = str(retry_after)


class AuthenticationError(LookoutError):
    """A request whose caller is not known: AWS's codes for signatures and keys (403)."""

    status = 403

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class UnknownOperation(LookoutError):
    status, code = 404, "UnknownOperationException"


def error_response(exc: LookoutError) -> JsonResponse:
    body = {"message": exc.message, "Message": exc.message}
    body.update({k: v for k, v in exc.members.items() if v not in ("", None)})
    response = JsonResponse(body, status=exc.status)
    response["x-amzn-ErrorType"] = exc.code
    response["x-amzn-RequestId"] = str(uuid.uuid4())
    for name, value in exc.headers.items():
        response[name] = value
    return response


_CODES_BY_STATUS = {
    400: ValidationException,
    403: AccessDeniedException,
    404: UnknownOperation,
    429: ThrottlingException,
}


def status_error_response(status: int, described: tuple[str, str] | None) -> JsonResponse:
    """An error Django itself answered (before any view) in AWS's format, by its status."""
    message = described[1] if described else "The request failed."
    error = _CODES_BY_STATUS.get(status, InternalServerException if status >= 500 else ValidationException)(message)
    response = error_response(error)
    response.status_code = status
    return response

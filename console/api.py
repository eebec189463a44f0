"""Kenpin's REST API: one NinjaAPI holding v1 (/api/v1/...), its bearer-token authentication and
its one error shape. Amazon Lookout for Vision's own API (/2020-11-20/...) is lookout/api.py.

Every error the API returns is `{"error": CODE, "message": TEXT}` with the matching status:
the handlers below cover what API functions raise (services' KenpinError, Http404,
PermissionDenied, ninja's validation and authentication errors); console.middleware.ApiErrorShape
covers what never reaches them (unknown routes, wrong methods, Django's own refusals).
"""

import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from django.urls import URLPattern
from ninja import NinjaAPI, Schema, Status, Swagger
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.security import HttpBearer
from pydantic import Field

from console.edge import token_caller
from console.middleware import client_error_message
from core.errors import INTERNAL_MESSAGE, KenpinError
from inference import hosting
from inference.api import router as hosting_router
from inference.api import trials_router
from lookout.v1 import router as lookout_router
from projects.api import router as projects_router
from projects.selectors import project_get_for_user
from training.api import router as training_router

logger = logging.getLogger(__name__)

TOKENS_PAGE = "/account/tokens/"


class BearerToken(HttpBearer):
    """`Authorization: Bearer <token>`: the token's owner, with their per-project roles."""

    def authenticate(self, request, token):
        return token_caller(request, token.strip())


DESCRIPTION = f"""
Everything the Kenpin console does, for scripts and production lines.

Authenticate every call with a personal API token: `Authorization: Bearer <token>`. Create one on
the console's [API tokens]({TOKENS_PAGE}) page or with `python manage.py create_token USERNAME`.
A token acts with its owner's role in each project: viewers read (and may call detect), editors
and owners change. A project you are not a member of answers 404, like one that does not exist.

Errors are always `{{"error": CODE, "message": TEXT}}`.

Amazon Lookout for Vision's API (all 22 operations, for the AWS SDKs and CLI) answers at its own
paths under `/2020-11-20/`: client code moves to Kenpin by changing its endpoint and credentials
(docs/migrating-from-lookout-for-vision.md).
"""


class ErrorOut(Schema):
    error: str = Field(description="A stable code for programs: invalid, unauthorized, not_found, duplicate...")
    message: str = Field(description="What went wrong and what to do, for people.")


# The error answers every operation may give (its own success answers come from its function).
ERRORS_ALWAYS = {
    400: "The request is not valid: the message names the field and what is wrong with it.",
    401: "No API token, or one that is not valid (mistyped, revoked, its account deactivated).",
    404: "No such resource, or your token may not see it.",
    429: "Too many calls from this token: wait as many seconds as Retry-After says.",
}
ERRORS_OF_WRITES = {
    403: "Your role in this project does not allow this (viewers read; editors and owners change).",
    409: "The resource's state does not allow this now: the message says why and what to do.",
    413: "The request body is larger than this address accepts.",
}
ERRORS_OF_DETECT = {
    503: "No inference worker answered in time (one restarting, or Redis unreachable): try again after Retry-After.",
}


class ObjectBodyParser(Parser):
    """Every JSON body of the API is an object; ninja would let a list or a number through to an
    operation whose fields are all optional, which then changed nothing and answered 200."""

    def parse_body(self, request):
        data = super().parse_body(request)
        if not isinstance(data, dict):
            raise HttpError(400, "The body must be a JSON object ({…}) with the fields this operation takes.")
        return data


class KenpinAPI(NinjaAPI):
    def get_root_path(self, path_params):
        # Mounted at the site's root (see urlpatterns below), without ninja's root page.
        return "/"

    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        """ninja's schema, with the error answers each operation may give in the API's one error
        shape, so that clients (and schemathesis) know every status the API answers with."""
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        schema["components"].setdefault("schemas", {})["Error"] = ErrorOut.model_json_schema()
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                errors = dict(ERRORS_ALWAYS)
                if method != "get":
                    errors.update(ERRORS_OF_WRITES)
                if path.endswith("/detect"):
                    errors.update(ERRORS_OF_DETECT)
                for status, description in errors.items():
                    operation["responses"].setdefault(status, {"description": description, "content": error})
        return schema


api = KenpinAPI(
    title="Kenpin API",
    version="1",
    description=DESCRIPTION,
    auth=BearerToken(),
    parser=ObjectBodyParser(),
    urls_namespace="api",
    openapi_url="/api/openapi.json",
    docs_url="/api/docs",
    # Served from django-ninja's own static files ("ninja" is an installed app), never a CDN.
    # validatorUrl: Swagger UI would otherwise send the description to validator.swagger.io.
    docs=Swagger(settings={"validatorUrl": None, "persistAuthorization": True, "tryItOutEnabled": False}),
)


def error_response(request, *, status: int, code: str, message: str):
    return api.create_response(request, {"error": code, "message": message}, status=status)


@api.exception_handler(KenpinError)
def _kenpin_error(request, exc: KenpinError):
    response = error_response(request, status=exc.status, code=exc.code, message=exc.message)
    if getattr(exc, "retry_after", None):
        response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(Http404)
def _not_found(request, exc):
    # One message whether the thing does not exist or the caller may not see it.
    return error_response(
        request,
        status=404,
        code="not_found",
        message="Not found: there is no such resource, or your token may not see it.",
    )


@api.exception_handler(PermissionDenied)
def _forbidden(request, exc):
    message = str(exc) or "Your role in this project does not allow this."
    return error_response(request, status=403, code="forbidden", message=message)


@api.exception_handler(AuthenticationError)
def _unauthorized(request, exc):
    if request.headers.get("Authorization"):
        message = (
            "The API token is not valid: it may be mistyped or revoked. Send "
            f"`Authorization: Bearer <token>` with a token from {TOKENS_PAGE}."
        )
    else:
        message = f"Send your API token in the header `Authorization: Bearer <token>`; create one at {TOKENS_PAGE}."
    response = error_response(request, status=401, code="unauthorized", message=message)
    response["WWW-Authenticate"] = 'Bearer realm="kenpin"'
    return response


@api.exception_handler(ValidationError)
def _invalid(request, exc: ValidationError):
    return error_response(request, status=400, code="invalid", message=validation_message(exc.errors))


@api.exception_handler(RequestDataTooBig)
def _too_big(request, exc):
    return error_response(request, status=413, code="too_large", message="The request body is too large.")


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    code = {429: "throttled"}.get(exc.status_code, "invalid" if exc.status_code < 500 else "internal")
    message = str(exc)
    if message.startswith("Cannot parse request body"):
        message = "The body is not valid JSON: send a JSON object with `Content-Type: application/json`."
    return error_response(request, status=exc.status_code, code=code, message=message)


@api.exception_handler(Exception)
def _internal(request, exc):
    if (message := client_error_message(exc)) is not None:
        return error_response(request, status=400, code="invalid", message=message)
    logger.exception("API call %s %s failed", request.method, request.path)
    return error_response(request, status=500, code="internal", message=INTERNAL_MESSAGE)


def validation_message(errors: list[dict]) -> str:
    """ninja's (pydantic's) error list -> one sentence per problem, naming the field and where it is."""
    where_names = {"body": "JSON body", "query": "query string", "path": "path", "form": "form", "file": "form"}
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        where = where_names.get(loc[0], loc[0]) if loc else "request"
        # The second item is the parameter's name in our function; the caller knows only the fields.
        fields = loc[2:] if len(loc) > 2 and loc[0] == "body" else loc[1:]
        field = ".".join(fields)
        parts.append(
            f"{field} ({where}): {error.get('msg', 'invalid')}" if field else f"{where}: {error.get('msg', 'invalid')}"
        )
    return "The request is not valid. " + "; ".join(parts) + "."


# Routes that compose several apps, as the console's pages do. Deleting a project also unloads
# its hosted models (inference), so the route is defined here, on projects' router: one URL
# answers GET and DELETE, as a second router at the same path could not.
@projects_router.delete("/{name}", response={204: None}, summary="Delete a project (owners only)")
def delete_project(request, name: str):
    """Deletes the project with its images, model versions and trial detections; its hosted
    models are unloaded from the inference workers."""
    project = project_get_for_user(user=request.auth, name=name, owner=True)
    hosting.project_delete(project=project)
    return Status(204, None)


for _router in (projects_router, training_router, hosting_router, trials_router, lookout_router):
    api.add_router("/api/v1/projects", _router)


def urlpatterns() -> list[URLPattern]:
    """The API's URL patterns, to be included at the root of the site.

    Mounted at the root so that one API (one description, one set of error handlers) serves
    /api/ beside the console and Lookout for Vision's /2020-11-20/ (lookout/api.py); ninja's root page is dropped, because at
    the root it would take the console's "/". The API authenticates its own callers with
    bearer tokens, so its views are exempt from the console's LoginRequiredMiddleware.
    """
    patterns = [p for p in api.urls[0] if getattr(p, "name", None) != "api-root"]
    for pattern in patterns:
        pattern.callback.login_required = False
    return patterns

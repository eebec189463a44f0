"""Refusals that cost nothing, and connections that survive them.

`EdgeApp` wraps the WSGI application (console/wsgi.py), below Django:
- a body whose Content-Length is over what its route accepts is refused with 413 before a
  byte of it is read; a chunked body (no Content-Length) is read up to that limit and refused as
  soon as it passes it, or handed to Django with its length (Django reads nothing of a body
  without Content-Length, so a chunked upload used to arrive empty);
- whatever the answer, a body the application did not read is drained (read and thrown away)
  when it is small enough, so that the client's keep-alive connection serves its next request;
  a larger one is not read: gunicorn answers `Connection: close` and closes, and the client
  knows from the answer itself. (gunicorn alone drains at most 64 KB and then closes without
  saying so, and the client's next request on that connection failed.)

`EarlyRefusalMiddleware` refuses a write by someone who may not write to the project before
its body is read (Django's CSRF check reads a form body, and the API parses its parameters,
before any view runs): a stranger gets the 404 and a viewer the 403 that the view would give.

Route limits are by URL name (ROUTE_LIMITS); every other route takes one image and its mask.
"""

import json
import logging
import tempfile
import time

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.urls import Resolver404, resolve
from django.utils.html import escape

from console.gunicorn import close_after_response
from console.middleware import API_PREFIXES
from projects.selectors import project_get_for_user
from projects.tokens import api_token_authenticate

logger = logging.getLogger(__name__)

MB = 1024 * 1024
DRAIN_SECONDS = 10  # a client that sends its unread body slower than this gets its connection closed

# URL names (namespace:name) of the routes that take more than one image per request.
LARGE_BODY_ROUTES = {"projects:images_import", "api:start_zip_import", "inference:list", "api:create_trial"}


def _limits() -> dict[str, int]:
    """The largest body (bytes) by kind of route: a path no route answers, the routes in
    LARGE_BODY_ROUTES, and every other route (one image, its mask and a few form fields)."""
    return {
        "unknown": settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        "large": settings.KENPIN_MAX_ZIP_BYTES,
        "one_image": 2 * settings.KENPIN_MAX_UPLOAD_BYTES + MB,
    }


def body_limit(path: str) -> int:
    """The largest body (bytes) the route at `path` accepts."""
    try:
        view_name = resolve(path).view_name
    except Resolver404:
        return _limits()["unknown"]
    return _limits()["large" if view_name in LARGE_BODY_ROUTES else "one_image"]


def smallest_body_limit() -> int:
    """A body no larger than this is within body_limit(path) whatever the path, so its URL need
    not be resolved here: Django resolves it for the view anyway, and the resolver walks the
    API's routes one by one (0.1-0.3 ms of every detect call, docs/benchmarks.md)."""
    return min(_limits().values())


def drain_limit() -> int:
    """The largest unread body that is read and thrown away to keep the connection."""
    return _limits()["one_image"]


def megabytes(n: int) -> str:
    return f"{n / MB:.0f} MB" if n >= MB else f"{n / MB:.1f} MB"


class _CountedInput:
    """wsgi.input that knows how much of the body is left unread."""

    def __init__(self, stream, length: int):
        self.stream = stream
        self.remaining = length

    def _size(self, size) -> int:
        return self.remaining if size is None or size < 0 or size > self.remaining else size

    def read(self, size=-1) -> bytes:
        if self.remaining <= 0:
            return b""
        data = self.stream.read(self._size(size))
        self.remaining = self.remaining - len(data) if data else 0
        return data

    def readline(self, size=-1) -> bytes:
        if self.remaining <= 0:
            return b""
        data = self.stream.readline(self._size(size))
        self.remaining = self.remaining - len(data) if data else 0
        return data

    def __iter__(self):
        while line := self.readline():
            yield line

    def drain(self, deadline: float) -> bool:
        """Read the rest and throw it away; False when the client was too slow."""
        while self.remaining > 0:
            if time.monotonic() > deadline or not self.read(64 * 1024):
                return self.remaining <= 0
        return True


class _DrainAfter:
    """A response iterable that drains the unread body once the answer is sent (gunicorn calls
    close() after writing it), so the client reads its answer without waiting for the drain."""

    def __init__(self, response, counted: _CountedInput):
        self.response = response
        self.counted = counted

    def __iter__(self):
        return iter(self.response)

    def close(self):
        try:
            if hasattr(self.response, "close"):
                self.response.close()
        finally:
            # A client too slow to send the rest: gunicorn finds the body unfinished and closes.
            self.counted.drain(time.monotonic() + DRAIN_SECONDS)


class EdgeApp:
    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return self._refuse(environ, start_response, 400, "invalid", "The Content-Length header is not a number.")
        if length > smallest_body_limit() and length > (limit := body_limit(path)):
            refusal = self._refuse(
                environ,
                start_response,
                413,
                "too_large",
                f"The request body is {megabytes(length)}; this address accepts at most {megabytes(limit)}.",
            )
            return self._unread(_CountedInput(environ["wsgi.input"], length), refusal)
        if chunked and not environ.get("CONTENT_LENGTH"):
            limit = body_limit(path)
            spooled = self._spool(environ["wsgi.input"], limit)
            if spooled is None:
                close_after_response()  # the rest of the body is still coming
                return self._refuse(
                    environ,
                    start_response,
                    413,
                    "too_large",
                    f"The request body is over {megabytes(limit)}, the most this address accepts.",
                )
            length = spooled.seek(0, 2)
            spooled.seek(0)
            environ["wsgi.input"] = spooled
            environ["CONTENT_LENGTH"] = str(length)
        counted = _CountedInput(environ["wsgi.input"], length)
        environ["wsgi.input"] = counted
        response = self.application(environ, start_response)
        if counted.remaining > 0:
            return self._unread(counted, response)
        return response

    @staticmethod
    def _spool(stream, limit: int):
        """The whole de-chunked body in a temporary file (memory up to the upload buffer size),
        or None as soon as it passes `limit`."""
        spooled = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE)
        total = 0
        while block := stream.read(64 * 1024):
            total += len(block)
            if total > limit:
                spooled.close()
                return None
            spooled.write(block)
        return spooled

    @staticmethod
    def _unread(counted: _CountedInput, response):
        """The answer to a request whose body was not (all) read: sent at once; the rest of the
        body is then drained to keep the connection, or, when too large, not read at all and
        the connection closed after the answer (which says so)."""
        if counted.remaining > drain_limit():
            close_after_response()
            return response
        return _DrainAfter(response, counted)

    @staticmethod
    def _refuse(environ, start_response, status: int, code: str, message: str):
        reason = {400: "Bad Request", 413: "Content Too Large"}[status]
        path = environ.get("PATH_INFO", "")
        if path.startswith(API_PREFIXES) or "application/json" in environ.get("HTTP_ACCEPT", ""):
            body = json.dumps({"error": code, "message": message}).encode()
            content_type = "application/json"
        else:
            body = (
                f"<!doctype html><html lang=en><meta charset=utf-8><title>{reason} · Kenpin</title>"
                f"<body><h1>{reason}</h1><p>{escape(message)}</p><p>Go back and send less.</p></body></html>"
            ).encode()
            content_type = "text/html; charset=utf-8"
        start_response(
            f"{status} {reason}",
            [("Content-Type", content_type), ("Content-Length", str(len(body))), ("X-Content-Type-Options", "nosniff")],
        )
        return [body]


class EarlyRefusalMiddleware:
    """Refuse a write to a project by someone who may not write there, before its body is read.

    Only for bodies that would be read (a non-safe method with a body) on routes naming a
    project (`name` or `project` in the URL), and only when the caller is known from the
    session or an API token; anything else goes on to the view, which decides as always
    (project_get_for_user, the one access path).
    """

    # Routes where a read-only member may send a body: detection reads the model, writes nothing.
    VIEWER_WRITES = {"api:detect", "api:detect_lfv", "api:detect_batch"}
    # Routes whose view checks access before it reads the body (the raw photo of a detect call:
    # nothing parses it first), so that checking here too would only query the project twice on
    # the hottest route.
    GUARDED_BY_THE_VIEW = {"api:detect"}

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        name = view_kwargs.get("name") or view_kwargs.get("project")
        if request.method in ("GET", "HEAD", "OPTIONS") or not name or not _has_body(request):
            return None
        if request.resolver_match.view_name in self.GUARDED_BY_THE_VIEW:
            return None
        user = _caller(request)
        if user is None:
            return None
        write = request.resolver_match.view_name not in self.VIEWER_WRITES
        try:
            project_get_for_user(user=user, name=name, write=write)
        except Http404:
            if request.path.startswith(API_PREFIXES):
                return _api_error(
                    404, "not_found", "Not found: there is no such resource, or your token may not see it."
                )
            raise
        except PermissionDenied as exc:
            if request.path.startswith(API_PREFIXES):
                return _api_error(403, "forbidden", str(exc) or "Your role in this project does not allow this.")
            raise
        return None


def _has_body(request) -> bool:
    return int(request.META.get("CONTENT_LENGTH") or 0) > 0


def _caller(request):
    """The signed-in person, or the owner of the request's API token; None when unknown."""
    if request.path.startswith(API_PREFIXES):
        auth = request.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        return token_caller(request, auth[7:].strip())
    return request.user if request.user.is_authenticated else None


def token_caller(request, token: str):
    """The owner of the API token `token` (api_token_authenticate), looked up once per request:
    the early refusal above and the API's authentication both ask, and detect calls are hot."""
    known = getattr(request, "_kenpin_token_caller", None)
    if known is not None and known[0] == token:
        return known[1]
    user = api_token_authenticate(token=token)
    request._kenpin_token_caller = (token, user)
    return user


def _api_error(status: int, code: str, message: str):
    return JsonResponse({"error": code, "message": message}, status=status)

from django.contrib.auth import get_user_model
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import reverse

from core.errors import INTERNAL_MESSAGE
from lookout.errors import status_error_response as lookout_error_response


class FirstAdminMiddleware:
    """Until an account exists, every console page leads to the page that creates the first admin.

    Only anonymous requests ask the database (a signed-in person proves an account exists),
    so the check costs nothing on the pages people use.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.user.is_authenticated:
            setup_url = reverse("setup")
            exempt = request.path.startswith(("/static/", "/api/", "/2020-11-20/")) or request.path == setup_url
            if not exempt and not get_user_model().objects.exists():
                return redirect(setup_url)
        return self.get_response(request)


API_PREFIXES = ("/api/", "/2020-11-20/")
LOOKOUT_PREFIX = "/2020-11-20/"  # Amazon Lookout for Vision's API: AWS's error format (lookout/errors.py)

_STATUS_CODES = {
    400: ("invalid", "The request is not valid."),
    401: ("unauthorized", "Send your API token in the header `Authorization: Bearer <token>`."),
    403: ("forbidden", "This request is not allowed."),
    404: ("not_found", "There is no API endpoint at this path; the endpoints are listed at /api/docs."),
    405: ("method_not_allowed", "This endpoint does not take this HTTP method; see /api/docs."),
    413: ("too_large", "The request body is too large."),
    429: ("throttled", "Too many requests; slow down and try again."),
    503: ("unavailable", "Kenpin cannot answer right now; try again shortly."),
}
_INTERNAL = ("internal", INTERNAL_MESSAGE)


class ApiErrorShapeMiddleware:
    """Every API error answers `{"error": CODE, "message": TEXT}`, even those the API's own
    handlers (console/api.py) never see: unknown routes, a method an endpoint does not take
    (ninja answers those with plain text), and whatever Django itself refuses or fails on.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and request.path.startswith(API_PREFIXES)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            if request.path.startswith(LOOKOUT_PREFIX):
                return lookout_error_response(response.status_code, _STATUS_CODES.get(response.status_code))
            code, message = _STATUS_CODES.get(response.status_code) or (
                _STATUS_CODES[400] if response.status_code < 500 else _INTERNAL
            )
            shaped = JsonResponse({"error": code, "message": message}, status=response.status_code)
            for header in ("Allow", "WWW-Authenticate", "Retry-After"):
                if header in response:
                    shaped[header] = response[header]
            return shaped
        return response


def client_error_message(exc: BaseException) -> str | None:
    """The message for an exception that a malformed request causes below any view's checks
    (Django's request parsing, a number too large for the database); None for any other."""
    from django.core.exceptions import SuspiciousOperation
    from django.db import DataError
    from django.http.multipartparser import MultiPartParserError

    if isinstance(exc, OverflowError) or (isinstance(exc, DataError) and "out of range" in str(exc)):
        return "A number in the request is too large (ids and numbers are below 2⁶³)."
    if isinstance(exc, DataError) and "NUL" in str(exc):
        # PostgreSQL stores no NUL character (SQLite does); Django's forms refuse it, JSON may carry it.
        return "Text in the request may not contain the NUL character (\\u0000): remove it and send it again."
    if isinstance(exc, MultiPartParserError):
        reason = str(exc)
        if "boundary" in reason:
            return "The multipart body has no valid boundary: send Content-Type: multipart/form-data; boundary=…"
        if "header size" in reason:
            return "A part of the multipart body has headers over 1 KB, such as a file name that long: shorten it."
        return f"The multipart body cannot be read ({reason})."
    if isinstance(exc, ValueError) and "Max number of fields" in str(exc):
        return "The request holds too many form fields (at most 1,000)."
    if isinstance(exc, SuspiciousOperation):
        return bad_request_message(exc)
    return None


def bad_request_message(exception) -> str:
    """What a person can do about a request Django refused before any view (handler400)."""
    from django.core.exceptions import DisallowedHost, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent

    if isinstance(exception, DisallowedHost):
        return bad_host_message(exception)
    if isinstance(exception, TooManyFilesSent):
        return "The request holds too many files; send at most 2,000 at a time."
    if isinstance(exception, TooManyFieldsSent):
        return "The request holds too many form fields; send fewer at a time."
    if isinstance(exception, RequestDataTooBig):
        return "The request body is too large for this address."
    return "The request is not valid: it may be damaged or incomplete. Reload the page and try again."


def bad_host_message(exception) -> str:
    # The refused name, from Django's own message ("Invalid HTTP_HOST header: 'x'. ..."): the
    # request's Host cannot be asked for again, it raises once more.
    text = str(exception)
    host = text.split("'")[1] if text.count("'") >= 2 else "?"
    return (
        f"This Kenpin does not answer to the host name “{host}”. Its administrator can add it to "
        "DJANGO_ALLOWED_HOSTS (and its https:// address to DJANGO_CSRF_TRUSTED_ORIGINS) on every web server."
    )


class ClientErrorMiddleware:
    """A malformed request answers 400 with what is wrong, never 500: the page for the
    console, the API's error shape for scripts (the API's own handlers do the same)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        message = client_error_message(exception)
        if message is None:
            return None
        from django.shortcuts import render

        if request.path.startswith(API_PREFIXES) or "application/json" in request.headers.get("Accept", ""):
            return JsonResponse({"error": "invalid", "message": message}, status=400)
        return render(request, "400.html", {"message": message}, status=400)

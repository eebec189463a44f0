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

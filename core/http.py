"""Small pieces the views of every app share: JSON answers for the pages' scripts, and going back
to the page an action came from."""

from django.http import HttpRequest, JsonResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme

from core.errors import KenpinError


def wants_json(request: HttpRequest) -> bool:
    """Whether the request comes from one of the console's scripts rather than a plain form."""
    return "application/json" in request.headers.get("Accept", "")


def json_error(exc: KenpinError) -> JsonResponse:
    """A service's error in the same shape as the API's: {"error": code, "message": text}."""
    response = JsonResponse({"error": exc.code, "message": exc.message}, status=exc.status)
    if getattr(exc, "retry_after", None):
        response["Retry-After"] = str(exc.retry_after)
    return response


def redirect_back(request: HttpRequest, fallback: str):
    """Back to `next` when it is a page of this console, else to `fallback`.

    `next` comes from the client, so only same-site relative URLs are followed (no open redirect).
    """
    target = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = fallback
    return redirect(target)


def form_error(form) -> str:
    """The first problem of an invalid form as one sentence, for a message or a JSON answer."""
    for field, errors in form.errors.items():
        if field == "__all__" or field not in form.fields:
            return errors[0]
        label = form.fields[field].label or field.replace("_", " ").capitalize()
        return f"{label}: {errors[0]}"
    return "The form is not valid."

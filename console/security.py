"""Content-Security-Policy for every answer, and the throttles of sign-in and the API.

The policy allows scripts only from Kenpin's own files (no inline script, no inline event
handler, no eval), which the console's scripts satisfy: they live in static/, and pages pass
them data with `json_script` (a JSON block that is not executed). tests/console/test_security.py
scans every template and fails on inline script, and the browser tests fail on any violation
the browser reports. Styles may be inline: style attributes carry per-page values (a mask's
URL), and a style cannot run code.
"""

import hashlib
import time

from django.conf import settings
from django.http import JsonResponse

from console.middleware import API_PREFIXES
from core.redis_errors import REDIS_UNREACHABLE
from inference.handoff import client

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


# --- Throttling ------------------------------------------------------------------------------
#
# Fixed windows counted in Redis, so that every web server of an installation counts together.
# When Redis does not answer, nothing is throttled: refusing every sign-in because a counter is
# out of reach would be worse than not counting for a while.


def _hit(key: str, *, window: int) -> tuple[int, int]:
    """Count one event in the current window of `key`; (count so far, seconds the window has left)."""
    now = int(time.time())
    start = now - now % window
    full = f"{settings.KENPIN_REDIS_PREFIX}throttle:{key}:{start}"
    try:
        with client().pipeline() as pipe:
            pipe.incr(full)
            pipe.expire(full, window + 1)
            count, _ = pipe.execute()
    except REDIS_UNREACHABLE:
        return 0, 0
    return count, start + window - now


def _count(key: str, *, window: int) -> tuple[int, int]:
    """Events counted in the current window of `key`, without counting one more."""
    now = int(time.time())
    start = now - now % window
    try:
        value = client().get(f"{settings.KENPIN_REDIS_PREFIX}throttle:{key}:{start}")
    except REDIS_UNREACHABLE:
        return 0, 0
    return int(value or 0), start + window - now


def _forget(key: str, *, window: int) -> None:
    now = int(time.time())
    try:
        client().delete(f"{settings.KENPIN_REDIS_PREFIX}throttle:{key}:{now - now % window}")
    except REDIS_UNREACHABLE:
        pass


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "")


def login_refusal_seconds(request, username: str) -> int:
    """Seconds until this username (or this address) may try to sign in again; 0 when it may now."""
    window = settings.KENPIN_LOGIN_WINDOW
    waits = [
        left
        for key, limit in (
            (f"login-user:{_digest(username.strip().lower())}", settings.KENPIN_LOGIN_FAILURES),
            (f"login-addr:{_digest(client_address(request))}", 5 * settings.KENPIN_LOGIN_FAILURES),
        )
        for count, left in [_count(key, window=window)]
        if count >= limit
    ]
    return max(waits, default=0)


def login_failed(request, username: str) -> None:
    window = settings.KENPIN_LOGIN_WINDOW
    _hit(f"login-user:{_digest(username.strip().lower())}", window=window)
    _hit(f"login-addr:{_digest(client_address(request))}", window=window)


def login_succeeded(request, username: str) -> None:
    _forget(f"login-user:{_digest(username.strip().lower())}", window=settings.KENPIN_LOGIN_WINDOW)


class ApiThrottleMiddleware:
    """At most KENPIN_API_RATE calls a minute per API token (per address without one): 429 with
    Retry-After beyond it, in the API's error shape."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(API_PREFIXES) and settings.KENPIN_API_RATE:
            auth = request.headers.get("Authorization", "")
            who = f"token:{_digest(auth)}" if auth else f"addr:{_digest(client_address(request))}"
            count, left = _hit(f"api:{who}", window=60)
            if count > settings.KENPIN_API_RATE:
                response = JsonResponse(
                    {
                        "error": "throttled",
                        "message": f"Too many calls: at most {settings.KENPIN_API_RATE} a minute with one token. "
                        f"Try again in {left} s.",
                    },
                    status=429,
                )
                response["Retry-After"] = str(max(1, left))
                return response
        return self.get_response(request)

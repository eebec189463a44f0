"""Personal API tokens: created (shown once), revoked, and checked on every API call."""

import hashlib
import secrets

from django.utils import timezone

from core.errors import Invalid
from core.prepared import PreparedQuery
from projects.models import ApiToken

TOKEN_PREFIX = "kp_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def api_token_create(*, user, name: str) -> tuple[ApiToken, str]:
    """Create a token for `user`. Returns the row and the token itself, which is never stored."""
    name = name.strip() or "API token"
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.objects.create(user=user, name=name[:100], prefix=token[:10], digest=_digest(token))
    return row, token


def api_token_revoke(*, user, token_id: int) -> None:
    updated = ApiToken.objects.filter(user=user, pk=token_id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if not updated:
        raise Invalid("No such token.", code="no_such_token")


# Every API call asks it: compiled once, not per call (core.prepared).
_ACTIVE_TOKEN = PreparedQuery(
    lambda digest: ApiToken.objects.select_related("user").filter(digest=digest, revoked_at__isnull=True),
    digest=ApiToken._meta.get_field("digest"),
)


def api_token_authenticate(*, token: str):
    """The active user owning `token`, or None. Records when the token was last used."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    try:
        row = _ACTIVE_TOKEN.get(digest=_digest(token))
    except ApiToken.DoesNotExist:
        return None
    if not row.user.is_active:
        return None
    now = timezone.now()
    # At most one write a minute per token: detect calls are hot, the timestamp is for people.
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row.user

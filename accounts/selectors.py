from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.models import AccountLink, LinkKind, link_digest


def account_list() -> QuerySet:
    """Every account, active ones first, by username."""
    return get_user_model().objects.order_by("-is_active", "username")


def account_get(*, user_id: int):
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        raise Http404
    return user


def account_link_list_pending() -> QuerySet[AccountLink]:
    """Links not yet used, revoked or expired, newest first."""
    return AccountLink.objects.filter(
        used_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).select_related("user", "created_by")


def account_link_get_usable(*, token: str, kind: str) -> AccountLink | None:
    """The usable link of `kind` behind `token`, or None (unknown, used, revoked or expired)."""
    link = AccountLink.objects.filter(digest=link_digest(token), kind=kind).select_related("user").first()
    return (
        link
        if link is not None and link.is_usable and (kind != LinkKind.PASSWORD_RESET or link.user.is_active)
        else None
    )

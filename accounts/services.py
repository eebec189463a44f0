import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import AccountLink, LinkKind, link_digest
from core.errors import Conflict, Invalid

LINK_DAYS = {LinkKind.INVITATION: 7, LinkKind.PASSWORD_RESET: 2}
MAX_LINK_DAYS = 30


def _validate_password(password: str, user) -> None:
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        raise Invalid(" ".join(exc.messages), code="weak_password") from exc


def _validate_username(username: str) -> str:
    User = get_user_model()
    username = username.strip()
    if not username:
        raise Invalid("Give the account a username.", code="username_required")
    try:
        User._meta.get_field("username").run_validators(username)
    except ValidationError as exc:
        raise Invalid(" ".join(exc.messages), code="invalid_username") from exc
    if User.objects.filter(username__iexact=username).exists():
        raise Conflict(
            f"There is already an account named “{username}”. Choose another username.", code="username_taken"
        )
    return username


def account_create(*, username: str, password: str, email: str = "", is_admin: bool = False):
    """Create an active account. An admin (is_staff) manages people in the console; a superuser
    also reaches Django's /admin pages, so admins made here are both, like the first one.

    Raises Invalid for a weak password or a bad username, Conflict for a username in use
    (compared without case, so that “Ada” and “ada” cannot both exist).
    """
    User = get_user_model()
    username = _validate_username(username)
    user = User(username=username, email=email.strip(), is_staff=is_admin, is_superuser=is_admin)
    _validate_password(password, user)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        raise Conflict(f"There is already an account named “{username}”.", code="username_taken") from None
    return user


def _link_create(*, kind: str, created_by, days: int | None, **fields) -> tuple[AccountLink, str]:
    days = LINK_DAYS[kind] if days is None else days
    if not 1 <= days <= MAX_LINK_DAYS:
        raise Invalid(f"A link stays valid for 1 to {MAX_LINK_DAYS} days.", code="invalid_days")
    token = secrets.token_urlsafe(32)
    link = AccountLink.objects.create(
        kind=kind,
        digest=link_digest(token),
        created_by=created_by,
        expires_at=timezone.now() + timedelta(days=days),
        **fields,
    )
    return link, token


def invitation_create(
    *, created_by, email: str = "", make_admin: bool = False, days: int | None = None
) -> tuple[AccountLink, str]:
    """A one-time invitation link; returns the row and the token, which is never stored."""
    return _link_create(
        kind=LinkKind.INVITATION, created_by=created_by, days=days, email=email.strip(), make_admin=make_admin
    )


def password_reset_create(*, user, created_by, days: int | None = None) -> tuple[AccountLink, str]:
    """A one-time link that lets `user` choose a new password; earlier unused ones stop working."""
    if not user.is_active:
        raise Conflict(f"{user.username} is deactivated: reactivate the account first.", code="inactive")
    with transaction.atomic():
        AccountLink.objects.filter(
            kind=LinkKind.PASSWORD_RESET, user=user, used_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        return _link_create(kind=LinkKind.PASSWORD_RESET, created_by=created_by, days=days, user=user)


def account_link_revoke(*, link_id: int) -> None:
    revoked = AccountLink.objects.filter(pk=link_id, used_at__isnull=True, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if not revoked:
        raise Invalid("That link was already used or revoked.", code="no_such_link")


LINK_GONE = "This link does not work any more: it was already used, revoked or has expired. Ask your Kenpin admin for a new one."


def _use_link(*, token: str, kind: str) -> AccountLink:
    """Lock the usable link of `kind` behind `token` and mark it used (inside the caller's
    transaction, so that two tabs submitting at once cannot both use it)."""
    link = AccountLink.objects.select_for_update().filter(digest=link_digest(token), kind=kind).first()
    if link is None or not link.is_usable:
        raise Invalid(LINK_GONE, code="link_gone")
    link.used_at = timezone.now()
    return link


def invitation_accept(*, token: str, username: str, password: str, email: str = "") -> tuple:
    """Create the invited person's account; returns (user, link). Must run inside a transaction
    (projects.invitations wraps it, adding the memberships the invitation grants)."""
    link = _use_link(token=token, kind=LinkKind.INVITATION)
    user = account_create(username=username, password=password, email=email or link.email, is_admin=link.make_admin)
    link.user = user
    link.save(update_fields=["used_at", "user"])
    return user, link


def password_reset_complete(*, token: str, password: str):
    """Set the new password of the link's account; returns the user."""
    with transaction.atomic():
        link = _use_link(token=token, kind=LinkKind.PASSWORD_RESET)
        user = link.user
        if not user.is_active:
            raise Invalid(LINK_GONE, code="link_gone")
        _validate_password(password, user)
        user.set_password(password)
        user.save(update_fields=["password"])
        link.save(update_fields=["used_at"])
    return user


def _other_active_admins(user):
    return get_user_model().objects.filter(is_staff=True, is_active=True).exclude(pk=user.pk)


def account_set_active(*, user, active: bool, by) -> None:
    """Deactivate (sign-in, sessions and API tokens stop working; nothing is deleted) or reactivate."""
    if not active and user.pk == by.pk:
        raise Conflict("You cannot deactivate your own account.", code="self")
    if not active and user.is_staff and not _other_active_admins(user).exists():
        raise Conflict("Kenpin needs at least one active admin. Make someone else an admin first.", code="last_admin")
    user.is_active = active
    user.save(update_fields=["is_active"])
    if not active:
        AccountLink.objects.filter(user=user, used_at__isnull=True, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )


def account_set_admin(*, user, is_admin: bool, by) -> None:
    if not is_admin and user.pk == by.pk:
        raise Conflict("You cannot remove your own admin rights; ask another admin.", code="self")
    user.is_staff = user.is_superuser = is_admin
    user.save(update_fields=["is_staff", "is_superuser"])

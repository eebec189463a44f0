"""Invitations that bring a colleague into projects: accounts.services makes the account, this
adds the memberships the invitation grants, in the same transaction."""

from django.db import transaction

from accounts import services as accounts
from core.errors import Invalid
from projects.activity import activity_record
from projects.models import Action, InvitationGrant, Membership, Project, Role


def invitation_create(
    *,
    created_by,
    email: str = "",
    make_admin: bool = False,
    days: int | None = None,
    grants: list[tuple[Project, str]] = (),
):
    """A one-time invitation link that, once accepted, makes the person a member of each
    project in `grants` with its role. Returns (link, token); the token is never stored."""
    for _, role in grants:
        if role not in Role.values:
            raise Invalid(f"Unknown role “{role}”.", code="invalid_role")
    with transaction.atomic():
        link, token = accounts.invitation_create(created_by=created_by, email=email, make_admin=make_admin, days=days)
        InvitationGrant.objects.bulk_create(
            InvitationGrant(link=link, project=project, role=role) for project, role in grants
        )
    return link, token


def invitation_accept(*, token: str, username: str, password: str, email: str = ""):
    """Create the invited person's account and the memberships the invitation grants.

    Projects deleted since the invitation was made are simply not joined. Raises Invalid for a
    link that no longer works, a weak password or a bad username; nothing is created then.
    """
    with transaction.atomic():
        user, link = accounts.invitation_accept(token=token, username=username, password=password, email=email)
        for grant in InvitationGrant.objects.filter(link=link).select_related("project"):
            Membership.objects.get_or_create(project=grant.project, user=user, defaults={"role": grant.role})
            activity_record(
                project=grant.project,
                user=user,
                action=Action.MEMBER_JOINED,
                summary=f"joined as {Role(grant.role).label.lower()}"
                + (f", invited by {link.created_by.username}" if link.created_by else ""),
                detail={"member": user.username, "role": grant.role, "invited_by": str(link.created_by or "")},
            )
    return user

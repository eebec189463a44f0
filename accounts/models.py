import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone


class LinkKind(models.TextChoices):
    INVITATION = "invitation", "Invitation"
    PASSWORD_RESET = "password_reset", "Password reset"


class AccountLink(models.Model):
    """A one-time link an admin hands to a colleague: an invitation that creates an account, or a
    password reset for an existing one.

    Only the link token's SHA-256 is stored (256 random bits, so a fast hash is enough, as for API
    tokens): the link is shown once, to the admin who made it. It works once, until `expires_at`.
    """

    kind = models.CharField(max_length=20, choices=LinkKind.choices)
    digest = models.CharField(max_length=64, unique=True)
    # A reset's account; an invitation's once accepted.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="account_links"
    )
    email = models.EmailField(blank=True)  # whom an invitation is for; pre-fills the form
    make_admin = models.BooleanField(default=False)  # an invitation to become a Kenpin admin
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.get_kind_display()} {self.pk}"

    @property
    def is_usable(self) -> bool:
        return self.used_at is None and self.revoked_at is None and self.expires_at > timezone.now()


def link_digest(token: str) -> str:
    """What is stored of a link's token."""
    return hashlib.sha256(token.encode()).hexdigest()

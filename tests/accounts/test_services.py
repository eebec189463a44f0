from datetime import timedelta

import pytest
from django.contrib.auth import authenticate
from django.utils import timezone

from accounts.models import AccountLink
from accounts.selectors import account_link_get_usable, account_link_list_pending
from accounts.services import (
    account_create,
    account_link_revoke,
    account_set_active,
    account_set_admin,
    invitation_create,
    password_reset_complete,
    password_reset_create,
)
from core.errors import Conflict, Invalid
from projects.invitations import invitation_accept
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

GOOD_PASSWORD = "cookie-line-2-inspector"


@pytest.fixture
def admin():
    return UserFactory(is_staff=True, is_superuser=True)


def test_an_account_is_created_with_a_strong_password_only():
    with pytest.raises(Invalid, match="too short"):
        account_create(username="ada", password="abc")
    user = account_create(username="ada", password=GOOD_PASSWORD, email="ada@example.com")
    assert authenticate(username="ada", password=GOOD_PASSWORD) == user
    assert not user.is_staff


def test_usernames_differing_only_in_case_are_refused():
    account_create(username="Ada", password=GOOD_PASSWORD)
    with pytest.raises(Conflict, match="already an account"):
        account_create(username="ada", password=GOOD_PASSWORD)


def test_an_invitation_token_is_stored_only_as_a_hash_and_works_once(admin):
    link, token = invitation_create(created_by=admin, email="bo@example.com")
    assert token not in link.digest and AccountLink.objects.filter(digest__contains=token).count() == 0
    user = invitation_accept(token=token, username="bo", password=GOOD_PASSWORD)
    assert user.email == "bo@example.com" and authenticate(username="bo", password=GOOD_PASSWORD) == user
    with pytest.raises(Invalid, match="does not work any more"):
        invitation_accept(token=token, username="bo2", password=GOOD_PASSWORD)
    assert account_link_get_usable(token=token, kind="invitation") is None


def test_an_expired_or_revoked_invitation_creates_nothing(admin, django_user_model):
    link, token = invitation_create(created_by=admin)
    AccountLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(Invalid):
        invitation_accept(token=token, username="late", password=GOOD_PASSWORD)
    link, token = invitation_create(created_by=admin)
    account_link_revoke(link_id=link.pk)
    with pytest.raises(Invalid):
        invitation_accept(token=token, username="revoked", password=GOOD_PASSWORD)
    assert not django_user_model.objects.filter(username__in=["late", "revoked"]).exists()
    assert list(account_link_list_pending()) == []


def test_a_weak_password_leaves_the_invitation_usable(admin):
    _, token = invitation_create(created_by=admin)
    with pytest.raises(Invalid, match="too short"):
        invitation_accept(token=token, username="cy", password="short")
    assert account_link_get_usable(token=token, kind="invitation") is not None
    invitation_accept(token=token, username="cy", password=GOOD_PASSWORD)


def test_an_invitation_can_make_an_admin(admin):
    _, token = invitation_create(created_by=admin, make_admin=True)
    user = invitation_accept(token=token, username="di", password=GOOD_PASSWORD)
    assert user.is_staff and user.is_superuser


def test_a_password_reset_link_sets_a_new_password_once(admin, user):
    _, first = password_reset_create(user=user, created_by=admin)
    _, token = password_reset_create(user=user, created_by=admin)
    assert account_link_get_usable(token=first, kind="password_reset") is None  # replaced by the newer link
    assert authenticate(username=user.username, password=PASSWORD) == user  # still works until used
    password_reset_complete(token=token, password=GOOD_PASSWORD)
    assert authenticate(username=user.username, password=GOOD_PASSWORD) == user
    with pytest.raises(Invalid):
        password_reset_complete(token=token, password="another-" + GOOD_PASSWORD)


def test_an_invitation_link_does_not_reset_a_password(admin, user):
    _, token = invitation_create(created_by=admin)
    with pytest.raises(Invalid):
        password_reset_complete(token=token, password=GOOD_PASSWORD)


def test_a_deactivated_person_can_no_longer_sign_in_and_their_links_stop(admin, user):
    _, token = password_reset_create(user=user, created_by=admin)
    account_set_active(user=user, active=False, by=admin)
    assert authenticate(username=user.username, password=PASSWORD) is None
    assert account_link_get_usable(token=token, kind="password_reset") is None
    with pytest.raises(Conflict, match="reactivate"):
        password_reset_create(user=user, created_by=admin)
    account_set_active(user=user, active=True, by=admin)
    assert authenticate(username=user.username, password=PASSWORD) == user


def test_an_admin_cannot_lock_themselves_or_everyone_out(admin, user):
    with pytest.raises(Conflict, match="your own account"):
        account_set_active(user=admin, active=False, by=admin)
    with pytest.raises(Conflict, match="your own admin"):
        account_set_admin(user=admin, is_admin=False, by=admin)
    with pytest.raises(Conflict, match="at least one active admin"):
        account_set_active(user=admin, active=False, by=user)
    other = UserFactory(is_staff=True)
    account_set_active(user=admin, active=False, by=other)  # another admin remains

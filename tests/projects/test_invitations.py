import pytest

from accounts.services import invitation_create as bare_invitation
from core.errors import Invalid
from projects.activity import activity_list
from projects.invitations import invitation_accept, invitation_create
from projects.models import Membership
from projects.projects import project_delete
from tests.factories import UserFactory, make_project

pytestmark = pytest.mark.django_db

PASSWORD = "cookie-line-2-inspector"


def test_an_invitation_makes_the_person_a_member_of_the_projects_it_names(user):
    cookies, boards, other = (make_project(owner=user, name=n) for n in ("cookies", "boards", "other"))
    _, token = invitation_create(created_by=user, grants=[(cookies, "editor"), (boards, "viewer")])
    person = invitation_accept(token=token, username="bo", password=PASSWORD)
    roles = dict(Membership.objects.filter(user=person).values_list("project__name", "role"))
    assert roles == {"cookies": "editor", "boards": "viewer"}
    entry = activity_list(project=cookies).first()
    assert (entry.action, entry.username) == ("member_joined", "bo")
    assert entry.summary == f"joined as editor, invited by {user.username}"  # the log reads "bo joined as …"
    assert not activity_list(project=other).filter(action="member_joined").exists()


def test_a_project_deleted_since_the_invitation_is_not_joined(user):
    cookies, boards = make_project(owner=user, name="cookies"), make_project(owner=user, name="boards")
    _, token = invitation_create(created_by=user, grants=[(cookies, "editor"), (boards, "owner")])
    project_delete(project=boards)
    person = invitation_accept(token=token, username="bo", password=PASSWORD)
    assert list(Membership.objects.filter(user=person).values_list("project__name", flat=True)) == ["cookies"]


def test_an_unknown_role_is_refused_before_any_link_exists(user):
    cookies = make_project(owner=user, name="cookies")
    with pytest.raises(Invalid, match="Unknown role"):
        invitation_create(created_by=user, grants=[(cookies, "boss")])


def test_a_failed_acceptance_creates_no_account_and_no_membership(user, django_user_model):
    cookies = make_project(owner=user, name="cookies")
    taken = UserFactory()
    _, token = invitation_create(created_by=user, grants=[(cookies, "editor")])
    with pytest.raises(Exception, match="already an account"):
        invitation_accept(token=token, username=taken.username.upper(), password=PASSWORD)
    assert Membership.objects.filter(project=cookies).count() == 1  # the owner alone
    invitation_accept(token=token, username="fresh", password=PASSWORD)  # the link still works


def test_an_invitation_without_projects_makes_an_account_with_none(user):
    _, token = bare_invitation(created_by=user)
    person = invitation_accept(token=token, username="solo", password=PASSWORD)
    assert not Membership.objects.filter(user=person).exists()

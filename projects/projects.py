"""Projects and their members: create, describe, delete; who may do what in each."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from core.errors import Conflict, Invalid, NotFound, id_in_range
from projects.activity import activity_record
from projects.models import Action, Dataset, Image, Membership, Project, Role, Split, project_name_validator
from projects.tasks import project_delete_files

# Words the console's addresses use beside project names (/projects/new/): a project named so
# could be created but never opened.
RESERVED_PROJECT_NAMES = {"new"}


def _validate_project_name(name: str) -> None:
    if not name:
        raise Invalid("Give the project a name.", code="name_required")
    if name.lower() in RESERVED_PROJECT_NAMES:
        raise Invalid(
            f"“{name}” is a word the console uses in its addresses; choose another name.", code="reserved_name"
        )
    if len(name) > 255:
        raise Invalid("A project name has at most 255 characters.", code="name_too_long")
    try:
        project_name_validator(name)
    except ValidationError as exc:
        raise Invalid(exc.messages[0], code="invalid_name") from exc


def project_create(*, user, name: str, description: str = "") -> Project:
    """Create a project owned by `user`, with its (empty) training dataset."""
    name = name.strip()
    _validate_project_name(name)
    try:
        with transaction.atomic():
            project = Project.objects.create(name=name, description=description.strip(), created_by=user)
            Membership.objects.create(project=project, user=user, role=Role.OWNER)
            Dataset.objects.create(project=project, split=Split.TRAIN)
            activity_record(project=project, user=user, action=Action.PROJECT_CREATED, summary=f"created {name}")
    except IntegrityError:
        raise Conflict(f"A project named “{name}” already exists. Choose another name.", code="name_taken") from None
    return project


def project_update(*, project: Project, description: str, user=None) -> Project:
    description = description.strip()
    if description == project.description:
        return project
    with transaction.atomic():
        project.description = description
        project.save(update_fields=["description"])
        activity_record(
            project=project,
            user=user,
            action=Action.PROJECT_UPDATED,
            summary="changed the description",
            detail={"description": description[:500]},
        )
    return project


def project_delete(*, project: Project) -> None:
    """Delete the project's rows (its images, model versions and trials cascade), then, after
    commit, queue the removal of its stored files: every one lives under project_files_prefix.

    Models that inference workers hold are the hosting layer's concern: inference.hosting's
    project_delete unloads them around this call.
    """
    project_id = project.pk
    with transaction.atomic():
        Image.objects.filter(project=project).delete()  # Image.dataset is PROTECTed
        project.delete()
        transaction.on_commit(lambda: project_delete_files.delay(project_id))


def member_set(*, project: Project, username: str, role: str, user=None) -> Membership:
    """Add `username` to the project with `role`, or change the role of a member; `user` is who does it."""
    if role not in Role.values:
        raise Invalid(f"Unknown role “{role}”.", code="invalid_role")
    member = get_user_model().objects.filter(username=username.strip()).first()
    if member is None:
        raise Invalid(
            f"There is no user named “{username}”. An admin can create the account first.", code="no_such_user"
        )
    label = Role(role).label.lower()
    with transaction.atomic():
        membership, created = Membership.objects.select_for_update().get_or_create(
            project=project, user=member, defaults={"role": role}
        )
        if created:
            activity_record(
                project=project,
                user=user,
                action=Action.MEMBER_ADDED,
                summary=f"added {member.username} as {label}",
                detail={"member": member.username, "role": role},
            )
        elif membership.role != role:
            _ensure_another_owner(project=project, leaving=membership)
            before = membership.role
            membership.role = role
            membership.save(update_fields=["role"])
            activity_record(
                project=project,
                user=user,
                action=Action.MEMBER_ROLE_CHANGED,
                summary=f"made {member.username} {label} (was {Role(before).label.lower()})",
                detail={"member": member.username, "role": role, "before": before},
            )
    return membership


def member_remove(*, project: Project, user_id: int, user=None) -> None:
    with transaction.atomic():
        # An id past the database's integers is nobody (SQLite would overflow on it).
        membership = (
            Membership.objects.select_for_update()
            .filter(project=project, user_id=user_id)
            .select_related("user")
            .first()
            if id_in_range(user_id)
            else None
        )
        if membership is None:
            raise NotFound("That person is not a member of this project.", code="not_a_member")
        _ensure_another_owner(project=project, leaving=membership)
        membership.delete()
        activity_record(
            project=project,
            user=user,
            action=Action.MEMBER_REMOVED,
            summary=f"removed {membership.user.username}",
            detail={"member": membership.user.username, "role": membership.role},
        )


def _ensure_another_owner(*, project: Project, leaving: Membership) -> None:
    if leaving.role == Role.OWNER and not project.memberships.filter(role=Role.OWNER).exclude(pk=leaving.pk).exists():
        raise Conflict("A project needs at least one owner. Make someone else an owner first.", code="last_owner")

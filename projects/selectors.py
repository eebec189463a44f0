from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Q, QuerySet
from django.http import Http404

from projects.models import ApiToken, Image, InvitationGrant, Label, Membership, Project, Role, Split


def project_list_for_user(*, user) -> QuerySet[Project]:
    """The projects `user` is a member of, each annotated with `role` and image counts."""
    return (
        Project.objects.filter(memberships__user=user)
        .annotate(
            role=F("memberships__role"),
            image_count=Count("images", distinct=True),
            labeled_count=Count("images", filter=~Q(images__label=Label.UNLABELED), distinct=True),
        )
        .order_by("name")
    )


def project_get_for_user(*, user, name: str, write: bool = False, owner: bool = False) -> Project:
    """The one access path to a project: every view and API function goes through it.

    Raises Http404 when the project does not exist or `user` is not a member (strangers cannot
    tell the two apart), PermissionDenied when a member lacks the role that `write` (editor or
    owner) or `owner` asks for. The project comes annotated with the member's `role`.
    """
    if not user.is_authenticated:
        raise Http404
    project = Project.objects.filter(name=name, memberships__user=user).annotate(role=F("memberships__role")).first()
    if project is None:
        raise Http404
    if owner and project.role != Role.OWNER:
        raise PermissionDenied("Only the project's owners can do this.")
    if write and project.role == Role.VIEWER:
        raise PermissionDenied("Viewers cannot change this project; ask an owner to make you an editor.")
    return project


def project_members(*, project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("user__username")


@dataclass(frozen=True)
class DatasetCounts:
    normal: int
    anomaly: int
    unlabeled: int

    @property
    def total(self) -> int:
        return self.normal + self.anomaly + self.unlabeled

    @property
    def labeled(self) -> int:
        return self.normal + self.anomaly


def dataset_counts(*, project: Project) -> dict[str, DatasetCounts]:
    """Image counts by label for each split ("train", "test"), in one query."""
    rows = Image.objects.filter(project=project).values("dataset__split", "label").annotate(n=Count("id"))
    counts = {split: {label: 0 for label in Label.values} for split in Split.values}
    for row in rows:
        counts[row["dataset__split"]][row["label"]] = row["n"]
    return {
        split: DatasetCounts(normal=c[Label.NORMAL], anomaly=c[Label.ANOMALY], unlabeled=c[Label.UNLABELED])
        for split, c in counts.items()
    }


# Lookout for Vision's minimums, kept: fewer images give models that cannot be trusted.
MIN_TRAIN_NORMAL_ALONE = 20
MIN_TRAIN_ANOMALY_ALONE = 10
MIN_TRAIN_NORMAL_WITH_TEST = 10
MIN_TEST_NORMAL = 10
MIN_TEST_ANOMALY = 10


@dataclass(frozen=True)
class Readiness:
    ready: bool
    missing: list[str]  # sentences saying what to add, empty when ready
    uses_test_dataset: bool


def training_readiness(*, project: Project) -> Readiness:
    """Whether the project has enough labeled images to train, and if not, exactly what is missing."""
    counts = dataset_counts(project=project)
    train, test = counts["train"], counts["test"]
    with_test = project_has_test_dataset(project=project)
    needs = (
        [
            ("training", "normal", train.normal, MIN_TRAIN_NORMAL_WITH_TEST),
            ("test", "normal", test.normal, MIN_TEST_NORMAL),
            ("test", "anomalous", test.anomaly, MIN_TEST_ANOMALY),
        ]
        if with_test
        else [
            ("training", "normal", train.normal, MIN_TRAIN_NORMAL_ALONE),
            ("training", "anomalous", train.anomaly, MIN_TRAIN_ANOMALY_ALONE),
        ]
    )
    missing = [
        f"Add {minimum - have} more {kind} image{'s' if minimum - have > 1 else ''} to the {split} dataset "
        f"(it has {have}, training needs at least {minimum})."
        for split, kind, have, minimum in needs
        if have < minimum
    ]
    return Readiness(ready=not missing, missing=missing, uses_test_dataset=with_test)


def project_has_test_dataset(*, project: Project) -> bool:
    return project.datasets.filter(split=Split.TEST).exists()


def image_list(*, project: Project, label: str | None = None, split: str | None = None) -> QuerySet[Image]:
    images = Image.objects.filter(project=project).select_related("dataset")
    if label:
        images = images.filter(label=label)
    if split:
        images = images.filter(dataset__split=split)
    return images


def image_sha256s_present(*, project: Project, sha256s: list[str]) -> set[str]:
    """Which of these SHA-256s (lowercase hex) the project already holds, in either dataset.

    The upload page asks before resending files after an interruption, so that it sends only
    what was not stored.
    """
    wanted = {s.lower() for s in sha256s if len(s) == 64}
    return set(Image.objects.filter(project=project, sha256__in=wanted).values_list("sha256", flat=True))


def image_get(*, project: Project, image_id: int) -> Image:
    """An image of `project`; Http404 for any other id, so ids of other projects reveal nothing."""
    image = Image.objects.filter(project=project, pk=image_id).select_related("dataset").first()
    if image is None:
        raise Http404
    return image


def image_states(*, project: Project, image_ids: list[int]) -> list[dict]:
    """Label and dataset of the given images, for the label grid to redraw its tiles."""
    return [
        {"id": row["id"], "label": row["label"], "split": row["dataset__split"]}
        for row in Image.objects.filter(project=project, pk__in=image_ids).values("id", "label", "dataset__split")
    ]


def image_neighbours(
    *, project: Project, image: Image, label: str = "", split: str = ""
) -> tuple[int | None, int | None]:
    """The ids of the images before and after `image` in the grid's order under the same filters.

    The grid lists the newest first (`-uploaded_at, -id`), so "before" is newer and "after" older.
    """
    images = image_list(project=project, label=label or None, split=split or None)
    newer = images.filter(Q(uploaded_at__gt=image.uploaded_at) | Q(uploaded_at=image.uploaded_at, id__gt=image.pk))
    older = images.filter(Q(uploaded_at__lt=image.uploaded_at) | Q(uploaded_at=image.uploaded_at, id__lt=image.pk))
    previous = newer.order_by("uploaded_at", "id").values_list("id", flat=True).first()
    following = older.order_by("-uploaded_at", "-id").values_list("id", flat=True).first()
    return previous, following


def api_token_list(*, user) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True)


def project_list_all() -> QuerySet[Project]:
    """Every project, for admins (invitations name the projects to join)."""
    return Project.objects.order_by("name")


def memberships_by_user(*, user_ids) -> dict[int, list[Membership]]:
    """Each user's memberships, with their projects, by project name."""
    found: dict[int, list[Membership]] = {}
    for membership in (
        Membership.objects.filter(user_id__in=list(user_ids)).select_related("project").order_by("project__name")
    ):
        found.setdefault(membership.user_id, []).append(membership)
    return found


def invitation_grants(*, link_ids) -> dict[int, list]:
    """The projects and roles each invitation link grants."""
    found: dict[int, list] = {}
    for grant in InvitationGrant.objects.filter(link_id__in=list(link_ids)).select_related("project"):
        found.setdefault(grant.link_id, []).append(grant)
    return found

from dataclasses import dataclass

import numpy as np
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Q, QuerySet
from django.http import Http404

from core.errors import id_in_range
from core.prepared import PreparedQuery
from engine.familiarity import Familiarity, ImageStats
from projects import masks
from projects.models import (
    IMPLICIT_CLASS_COLOR,
    IMPLICIT_CLASS_INDEX,
    IMPLICIT_CLASS_NAME,
    AnomalyClass,
    ApiToken,
    Image,
    InvitationGrant,
    Label,
    MaskKind,
    Membership,
    Project,
    Role,
    Split,
    ZipImport,
)


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


# The project and the caller's role in it, in one query; compiled once, not on every call (core.prepared).
_PROJECT_FOR_MEMBER = PreparedQuery(
    lambda name, user_id: Project.objects.filter(name=name, memberships__user_id=user_id).annotate(
        role=F("memberships__role")
    ),
    name=Project._meta.get_field("name"),
    user_id=Membership._meta.get_field("user"),
)


def project_get_for_user(*, user, name: str, write: bool = False, owner: bool = False) -> Project:
    """The one access path to a project: every view and API function goes through it.

    Raises Http404 when the project does not exist or `user` is not a member (strangers cannot
    tell the two apart), PermissionDenied when a member lacks the role that `write` (editor or
    owner) or `owner` asks for. The project comes annotated with the member's `role`.
    """
    if not user.is_authenticated:
        raise Http404
    # The name and the membership are unique: one row or none.
    try:
        project = _PROJECT_FOR_MEMBER.get(name=name, user_id=user.pk)
    except Project.DoesNotExist:
        raise Http404 from None
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


# --- Anomaly classes and masks -----------------------------------------------------------------


# Colours offered to a new class in turn: far apart from each other, none white or black.
CLASS_PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#9a6324",
    "#800000", "#469990", "#000075", "#808000", "#ffe119", "#dcbeff", "#aaffc3",
)  # fmt: skip


def anomaly_class_free_color(*, project: Project) -> str:
    """The first colour of CLASS_PALETTE no class of `project` has ("" when all are taken)."""
    used = set(AnomalyClass.objects.filter(project=project).values_list("color", flat=True))
    return next((c for c in CLASS_PALETTE if c not in used), "")


def anomaly_class_list(*, project: Project) -> list[AnomalyClass]:
    return list(AnomalyClass.objects.filter(project=project).order_by("index"))


def anomaly_class_get(*, project: Project, class_id: int) -> AnomalyClass:
    """A class of `project`; Http404 for any other id."""
    found = AnomalyClass.objects.filter(project=project, pk=class_id).first() if id_in_range(class_id) else None
    if found is None:
        raise Http404
    return found


def mask_classes(*, project: Project) -> list[masks.MaskClass]:
    """The classes masks of `project` are read and drawn with: its own, or its one implicit class."""
    classes = [masks.MaskClass(index=c.index, name=c.name, color=c.color) for c in anomaly_class_list(project=project)]
    return classes or [
        masks.MaskClass(index=IMPLICIT_CLASS_INDEX, name=IMPLICIT_CLASS_NAME, color=IMPLICIT_CLASS_COLOR)
    ]


def image_mask_indices(*, image: Image) -> np.ndarray | None:
    """(H, W) uint8 class indices of an image's stored mask, or None when it has none."""
    if not image.mask:
        return None
    try:
        with image.mask.open("rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    return masks.read_stored(
        data,
        binary=image.mask_kind == MaskKind.BINARY,
        width=image.width,
        height=image.height,
        implicit_index=IMPLICIT_CLASS_INDEX,
    )


def image_mask_classes(*, image: Image) -> list[masks.MaskClass]:
    """The classes an image's mask shows, for the legend beside it."""
    present = mask_class_indices(image=image)
    return [c for c in mask_classes(project=image.project) if c.index in present] if present else []


def mask_class_indices(*, image: Image) -> list[int]:
    """The class indices (1..K) an image's mask holds, [] without a mask. Kept on the row with
    each mask written; a mask stored before that is read once and the row filled in."""
    if not image.mask:
        return []
    if image.mask_classes_used is None:
        indices = image_mask_indices(image=image)
        used = masks.classes_used(indices) if indices is not None else []
        # Only while the mask is still the one read: a mask written meanwhile wrote its own.
        Image.objects.filter(pk=image.pk, mask=image.mask.name, mask_classes_used__isnull=True).update(
            mask_classes_used=used
        )
        image.mask_classes_used = used
    return image.mask_classes_used


def masks_using_class(*, anomaly_class: AnomalyClass) -> list[Image]:
    """The project's images whose mask has pixels of this class."""
    return [
        image
        for image in Image.objects.filter(project_id=anomaly_class.project_id).exclude(mask="")
        if anomaly_class.index in mask_class_indices(image=image)
    ]


def image_mask_png(*, image: Image, style: str = "color") -> bytes:
    """An image's mask for people and tools: "color" (Lookout for Vision's colours on white),
    "binary" (white on black) or "overlay" (colours on transparent). Http404 without a mask."""
    indices = image_mask_indices(image=image)
    if indices is None:
        raise Http404
    if style == "binary":
        return masks.binary_png(indices)
    classes = mask_classes(project=image.project)
    return masks.overlay_png(indices, classes) if style == "overlay" else masks.color_png(indices, classes)


def anomaly_class_usage(*, project: Project) -> dict[int, int]:
    """{class index: how many masks use it}, for the classes page."""
    counts: dict[int, int] = {}
    for image in Image.objects.filter(project=project).exclude(mask=""):
        for index in mask_class_indices(image=image):
            counts[index] = counts.get(index, 0) + 1
    return counts


def zip_import_get(*, project: Project, import_id: int) -> ZipImport:
    """A zip import of `project`; Http404 for any other id."""
    zip_import = ZipImport.objects.filter(project=project, pk=import_id).first() if id_in_range(import_id) else None
    if zip_import is None:
        raise Http404
    return zip_import


def zip_import_list(*, project: Project, limit: int = 5) -> list[ZipImport]:
    """The project's latest zip imports, newest first."""
    return list(ZipImport.objects.filter(project=project)[:limit])


def image_unlike_training(*, project: Project, image: Image) -> str:
    """Why `image` looks unlike the project's labeled training photos, in words ("" when it does
    not, or when there are too few to judge by): its size and proportions, compared by
    engine.familiarity as a model compares a photo it is asked about. An upload page tells the
    person at once, before a model is trained on, or asked about, a photo framed differently."""
    sizes = list(
        Image.objects.filter(project=project, dataset__split=Split.TRAIN)
        .exclude(label=Label.UNLABELED)
        .exclude(pk=image.pk)
        .values_list("width", "height")[:5000]
    )
    familiarity = Familiarity.fit([ImageStats(width=w, height=h, brightness=None) for w, h in sizes])
    return familiarity.assess(ImageStats(width=image.width, height=image.height, brightness=None)).message

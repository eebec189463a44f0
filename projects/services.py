import hashlib
import secrets
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from console.errors import Conflict, Invalid, TooLarge
from engine.images import ImageError, decode_mask, probe_image, thumbnail_jpeg
from projects.models import ApiToken, Dataset, Image, Label, Membership, Project, Role, Split, project_name_validator
from projects.zipcheck import zip_check_limits

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "TIFF": "tif", "WEBP": "webp", "GIF": "gif", "MPO": "jpg"}


def storage_delete_on_commit(names: list[str]) -> None:
    """Delete stored files once the rows that referenced them are gone for good.

    After commit, so that a rolled-back deletion never leaves rows pointing at missing files.
    """
    names = [n for n in names if n]

    def delete():
        for name in names:
            default_storage.delete(name)

    transaction.on_commit(delete)


# --- Projects ---------------------------------------------------------------------------------


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
    except IntegrityError:
        raise Conflict(f"A project named “{name}” already exists. Choose another name.", code="name_taken") from None
    return project


def project_update(*, project: Project, description: str) -> Project:
    project.description = description.strip()
    project.save(update_fields=["description"])
    return project


def project_delete(*, project: Project) -> None:
    """Delete the project with its images, model versions and trials, and their stored files."""
    from inference.models import TrialImage
    from inference.tasks import broadcast_unload
    from training.models import USABLE_STATUSES, ModelVersion, ModelVersionImage, Status

    names = []
    for image in Image.objects.filter(project=project):
        names += [image.file.name, image.thumbnail.name, image.mask.name]
    for mv in ModelVersion.objects.filter(project=project):
        names += [field.name for field in mv.artifact_files.values()]
    names += list(ModelVersionImage.objects.filter(model_version__project=project).values_list("heatmap", flat=True))
    for trial_image in TrialImage.objects.filter(trial__project=project):
        names += [trial_image.file.name, trial_image.thumbnail.name, trial_image.heatmap.name]
    # Versions an inference worker may hold: unloaded everywhere once the rows are gone.
    loaded = list(
        ModelVersion.objects.filter(project=project, status__in=USABLE_STATUSES)
        .exclude(status=Status.TRAINED)
        .values_list("pk", flat=True)
    )
    with transaction.atomic():
        Image.objects.filter(project=project).delete()  # Image.dataset is PROTECTed
        project.delete()
        storage_delete_on_commit(names)
        transaction.on_commit(lambda: broadcast_unload(loaded))


# --- Members ----------------------------------------------------------------------------------


def member_set(*, project: Project, username: str, role: str) -> Membership:
    """Add `username` to the project with `role`, or change the role of a member."""
    if role not in Role.values:
        raise Invalid(f"Unknown role “{role}”.", code="invalid_role")
    user = get_user_model().objects.filter(username=username.strip()).first()
    if user is None:
        raise Invalid(
            f"There is no user named “{username}”. An admin can create the account first.", code="no_such_user"
        )
    with transaction.atomic():
        membership, _ = Membership.objects.select_for_update().get_or_create(
            project=project, user=user, defaults={"role": role}
        )
        if membership.role != role:
            _ensure_another_owner(project=project, leaving=membership)
            membership.role = role
            membership.save(update_fields=["role"])
    return membership


def member_remove(*, project: Project, user_id: int) -> None:
    with transaction.atomic():
        membership = Membership.objects.select_for_update().filter(project=project, user_id=user_id).first()
        if membership is None:
            raise Invalid("That person is not a member of this project.", code="not_a_member")
        _ensure_another_owner(project=project, leaving=membership)
        membership.delete()


def _ensure_another_owner(*, project: Project, leaving: Membership) -> None:
    if leaving.role == Role.OWNER and not project.memberships.filter(role=Role.OWNER).exclude(pk=leaving.pk).exists():
        raise Conflict("A project needs at least one owner. Make someone else an owner first.", code="last_owner")


# --- Images -----------------------------------------------------------------------------------


class DuplicateImage(Conflict):
    code = "duplicate"

    def __init__(self, existing: Image):
        where = "test" if existing.dataset.split == Split.TEST else "training"
        super().__init__(
            f"This image is already in the project (as “{existing}”, in the {where} dataset); it was not added again."
        )
        self.existing = existing


def _dataset(*, project: Project, split: str) -> Dataset:
    if split not in Split.values:
        raise Invalid(f"Unknown dataset “{split}”: use “train” or “test”.", code="invalid_dataset")
    dataset, _ = Dataset.objects.get_or_create(project=project, split=split)
    return dataset


def _label(label: str | None) -> str:
    label = label or Label.UNLABELED
    if label not in Label.values:
        raise Invalid(f"Unknown label “{label}”: use “normal” or “anomaly”.", code="invalid_label")
    return label


def preview_size(width: int, height: int, max_side: int = 320) -> tuple[int, int]:
    """The size of an image's thumbnail, and of the heatmaps drawn over it."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_upload_size(data: bytes) -> None:
    check_upload_length(len(data))


def check_upload_length(length: int) -> None:
    """TooLarge for a file of `length` bytes over the limit; callers check before reading it."""
    limit = settings.KENPIN_MAX_UPLOAD_BYTES
    if length > limit:
        raise TooLarge(
            # MB as the docs and settings count them (2**20 bytes): 50 MB, not "52 MB".
            f"The file is {length / 2**20:.1f} MB; the largest accepted is {limit / 2**20:.0f} MB.",
        )


def upload_read(*, file) -> bytes:
    """The bytes of an uploaded file (Django UploadedFile), refused before reading when too large.

    Checking the size first keeps a huge upload out of memory: only its temporary file exists.
    """
    check_upload_length(file.size)
    return file.read()


def dataset_add_image(
    *,
    project: Project,
    data: bytes,
    name: str = "",
    label: str | None = None,
    split: str = Split.TRAIN,
    user=None,
    mask: bytes | None = None,
) -> Image:
    """Store one uploaded image in the project's `split` dataset.

    The bytes are fully decoded first, so that a corrupt or truncated file is refused here with
    a message (Invalid, TooLarge) rather than failing a training later. An image already in the
    project (same SHA-256) raises DuplicateImage and is not stored twice. Nothing is written
    to storage unless the row is created.
    """
    check_upload_size(data)
    label = _label(label)
    sha256 = hashlib.sha256(data).hexdigest()
    existing = Image.objects.filter(project=project, sha256=sha256).select_related("dataset").first()
    if existing:
        raise DuplicateImage(existing)
    try:
        info = probe_image(data)
        thumbnail = thumbnail_jpeg(data)
        if mask is not None:
            check_upload_size(mask)
            decode_mask(mask, width=info.width, height=info.height)
    except ImageError as exc:
        raise Invalid(exc.message, code=exc.code) from exc
    if mask is not None and label == Label.NORMAL:
        raise Invalid(
            "An image with a defect mask is an anomaly: label it anomaly, or leave the label out.",
            code="normal_with_mask",
        )
    if mask is not None and label == Label.UNLABELED:
        label = Label.ANOMALY  # a defect mask says what the image is

    dataset = _dataset(project=project, split=split)
    key = uuid.uuid4().hex
    prefix = f"projects/{project.pk}"
    stored = []
    try:
        file_name = default_storage.save(
            f"{prefix}/images/{key}.{EXTENSIONS.get(info.format, 'img')}", ContentFile(data)
        )
        stored.append(file_name)
        thumb_name = default_storage.save(f"{prefix}/thumbnails/{key}.jpg", ContentFile(thumbnail))
        stored.append(thumb_name)
        mask_name = ""
        if mask is not None:
            mask_name = default_storage.save(f"{prefix}/masks/{key}.png", ContentFile(mask))
            stored.append(mask_name)
        with transaction.atomic():
            image = Image.objects.create(
                project=project,
                dataset=dataset,
                file=file_name,
                thumbnail=thumb_name,
                mask=mask_name,
                original_name=PurePosixPath(name.replace("\\", "/")).name[:255],
                sha256=sha256,
                width=info.width,
                height=info.height,
                format=info.format,
                size_bytes=len(data),
                label=label,
                uploaded_by=user,
            )
    except IntegrityError:
        # Another request stored the same bytes between our check and our insert.
        for name_ in stored:
            default_storage.delete(name_)
        raise DuplicateImage(Image.objects.select_related("dataset").get(project=project, sha256=sha256)) from None
    except BaseException:
        for name_ in stored:
            default_storage.delete(name_)
        raise
    return image


def images_set_label(*, project: Project, image_ids: list[int], label: str) -> int:
    """Label many images at once; returns how many changed. Ids of other projects are ignored."""
    label = _label(label)
    return Image.objects.filter(project=project, pk__in=image_ids).exclude(label=label).update(label=label)


def images_move(*, project: Project, image_ids: list[int], split: str) -> int:
    """Move images to the training or test dataset (creating the test dataset if needed).

    Raises Invalid when none of `image_ids` is in the project, rather than create an empty
    test dataset, which would stop training until it is removed.
    """
    if split not in Split.values:
        raise Invalid(f"Unknown dataset “{split}”: use “train” or “test”.", code="invalid_dataset")
    images = Image.objects.filter(project=project, pk__in=image_ids)
    if not images.exists():
        raise Invalid("None of the selected images is in this project; nothing was moved.", code="no_images")
    dataset = _dataset(project=project, split=split)
    return images.exclude(dataset=dataset).update(dataset=dataset)


def image_update(*, image: Image, label: str | None = None, split: str | None = None) -> Image:
    """Relabel and/or move one image; None leaves that property as it is."""
    with transaction.atomic():
        if label is not None:
            images_set_label(project=image.project, image_ids=[image.pk], label=label)
        if split is not None:
            images_move(project=image.project, image_ids=[image.pk], split=split)
    return Image.objects.select_related("dataset").get(pk=image.pk)


def images_delete(*, project: Project, image_ids: list[int]) -> int:
    """Delete images and their files. Trained versions keep their record of them."""
    with transaction.atomic():
        images = list(Image.objects.filter(project=project, pk__in=image_ids))
        names = [n for image in images for n in (image.file.name, image.thumbnail.name, image.mask.name)]
        Image.objects.filter(pk__in=[image.pk for image in images]).delete()
        storage_delete_on_commit(names)
    return len(images)


def image_set_mask(*, image: Image, mask: bytes) -> Image:
    """Attach (or replace) the defect mask of an image; the image becomes an anomaly."""
    check_upload_size(mask)
    try:
        decode_mask(mask, width=image.width, height=image.height)
    except ImageError as exc:
        raise Invalid(exc.message, code=exc.code) from exc
    old = image.mask.name
    image.mask = default_storage.save(f"projects/{image.project_id}/masks/{uuid.uuid4().hex}.png", ContentFile(mask))
    image.label = Label.ANOMALY
    image.save(update_fields=["mask", "label"])
    storage_delete_on_commit([old])
    return image


def dataset_delete_test(*, project: Project) -> None:
    """Remove the test dataset; its images go back to the training dataset, nothing is lost."""
    with transaction.atomic():
        test = project.datasets.filter(split=Split.TEST).first()
        if test is None:
            return
        train = _dataset(project=project, split=Split.TRAIN)
        Image.objects.filter(dataset=test).update(dataset=train)
        test.delete()


@dataclass
class ImportReport:
    added: list[Image] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file name in the zip, reason)


ZIP_LABEL_FOLDERS = {"normal": Label.NORMAL, "good": Label.NORMAL, "anomaly": Label.ANOMALY, "anomalous": Label.ANOMALY}


def dataset_import_zip(*, project: Project, file, split: str = Split.TRAIN, user=None) -> ImportReport:
    """Import a zip whose folders name the labels, as LFV's S3 import did.

    An image inside a folder `normal/` (or `good/`) becomes normal, one inside `anomaly/` an
    anomaly, any other one unlabeled; `mask/NAME.png` is the defect mask of image NAME.*.
    Names inside the zip only choose labels; nothing is ever written to a path taken from it.
    Each image is added on its own, so one bad file does not stop the others.
    """
    _dataset(project=project, split=split)
    if getattr(file, "size", 0) > settings.KENPIN_MAX_ZIP_BYTES:
        raise TooLarge(
            f"The zip is {file.size / 2**30:.1f} GB; import at most "
            f"{settings.KENPIN_MAX_ZIP_BYTES / 2**30:.0f} GB at a time."
        )
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError):
        raise Invalid("This file is not a zip archive Kenpin can read.", code="not_a_zip") from None
    with archive:
        zip_check_limits(archive)  # before a byte is decompressed
        report = ImportReport()
        entries = []
        for entry in archive.infolist():
            parts = PurePosixPath(entry.filename.replace("\\", "/")).parts
            if entry.is_dir():
                continue
            if ".." in parts or entry.filename.startswith(("/", "\\")):
                report.rejected.append(
                    (entry.filename, "Its name points outside the zip (“..” or a leading “/”); it was not imported.")
                )
            elif not any(part.startswith((".", "__MACOSX")) for part in parts):  # hidden and macOS files
                entries.append(entry)
        masks = {}
        images = []
        for entry in entries:
            path = PurePosixPath(entry.filename)
            folders = [p.lower() for p in path.parts[:-1]]
            if folders and folders[-1] in ("mask", "masks"):
                masks[path.stem] = entry
            else:
                label = next(
                    (ZIP_LABEL_FOLDERS[f] for f in reversed(folders) if f in ZIP_LABEL_FOLDERS), Label.UNLABELED
                )
                images.append((entry, label))
        for entry, label in images:
            path = PurePosixPath(entry.filename)
            try:
                check_upload_length(entry.file_size)
                mask_entry = masks.get(path.stem) if label == Label.ANOMALY else None
                report.added.append(
                    dataset_add_image(
                        project=project,
                        data=archive.read(entry),
                        name=path.name,
                        label=label,
                        split=split,
                        user=user,
                        mask=archive.read(mask_entry) if mask_entry else None,
                    )
                )
            except (Invalid, Conflict, TooLarge) as exc:
                report.rejected.append((entry.filename, exc.message))
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                report.rejected.append((entry.filename, f"The file is damaged inside the zip ({exc})."))
    return report


# --- API tokens -------------------------------------------------------------------------------

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


def api_token_authenticate(*, token: str):
    """The active user owning `token`, or None. Records when the token was last used."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = ApiToken.objects.select_related("user").filter(digest=_digest(token), revoked_at__isnull=True).first()
    if row is None or not row.user.is_active:
        return None
    now = timezone.now()
    # At most one write a minute per token: detect calls are hot, the timestamp is for people.
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row.user

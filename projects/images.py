"""A project's images: add (decoded and checked first), label, move between the training and
test datasets, attach defect masks, delete."""

import hashlib
import math
import random
import uuid
from pathlib import PurePosixPath

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from core.errors import Conflict, Invalid
from core.files import storage_delete_on_commit
from core.uploads import check_upload_size
from engine.images import ImageError, probe_image, thumbnail_jpeg
from projects import masks
from projects.activity import activity_record, plural
from projects.classes import mask_decode, mask_store_new
from projects.models import Action, Dataset, Image, Label, MaskKind, Project, Split, project_files_prefix
from projects.selectors import MIN_TEST_ANOMALY, MIN_TEST_NORMAL, MIN_TRAIN_NORMAL_WITH_TEST

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "TIFF": "tif", "WEBP": "webp", "GIF": "gif", "MPO": "jpg"}


class DuplicateImage(Conflict):
    code = "duplicate"

    def __init__(self, existing: Image):
        where = "test" if existing.dataset.split == Split.TEST else "training"
        super().__init__(
            f"This image is already in the project (as “{existing}”, in the {where} dataset); it was not added again."
        )
        self.existing = existing


def dataset_get_or_create(*, project: Project, split: str) -> Dataset:
    """The project's dataset of `split` ("train" or "test"), created if needed: the test one is optional."""
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


def dataset_add_image(
    *,
    project: Project,
    data: bytes,
    name: str = "",
    label: str | None = None,
    split: str = Split.TRAIN,
    user=None,
    mask: bytes | None = None,
    mask_class: str = "",
    record: bool = True,
) -> Image:
    """Store one uploaded image in the project's `split` dataset.

    The activity log counts it among `user`'s uploads of the last minutes, unless `record` is
    False: a zip import or a trial's photos are logged once, by the service that adds them.

    The bytes are fully decoded first, so that a corrupt or truncated file is refused here with
    a message (Invalid, TooLarge) rather than failing a training later. An image already in the
    project (same SHA-256) raises DuplicateImage and is not stored twice. Nothing is written
    to storage unless the row is created. `mask` is read as projects.classes.mask_decode reads
    it (`mask_class`: the class a black-and-white mask marks) and stored as class indices.
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
    except ImageError as exc:
        raise Invalid(exc.message, code=exc.code) from exc
    if mask is not None and label == Label.NORMAL:
        raise Invalid(
            "An image with a defect mask is an anomaly: label it anomaly, or leave the label out.",
            code="normal_with_mask",
        )
    indices = None
    if mask is not None:
        indices = mask_decode(project=project, data=mask, width=info.width, height=info.height, class_name=mask_class)
    if mask is not None and label == Label.UNLABELED:
        label = Label.ANOMALY  # a defect mask says what the image is

    dataset = dataset_get_or_create(project=project, split=split)
    key = uuid.uuid4().hex
    prefix = project_files_prefix(project.pk)
    stored = []
    try:
        file_name = default_storage.save(
            f"{prefix}images/{key}.{EXTENSIONS.get(info.format, 'img')}", ContentFile(data)
        )
        stored.append(file_name)
        thumb_name = default_storage.save(f"{prefix}thumbnails/{key}.jpg", ContentFile(thumbnail))
        stored.append(thumb_name)
        mask_name = ""
        if indices is not None:
            mask_name = mask_store_new(image_key=key, project=project, indices=indices)
            stored.append(mask_name)
        with transaction.atomic():
            image = Image.objects.create(
                project=project,
                dataset=dataset,
                file=file_name,
                thumbnail=thumb_name,
                mask=mask_name,
                mask_kind=MaskKind.CLASS_INDEX,
                mask_classes_used=masks.classes_used(indices) if indices is not None else None,
                original_name=PurePosixPath(name.replace("\\", "/")).name[:255],
                sha256=sha256,
                width=info.width,
                height=info.height,
                format=info.format,
                size_bytes=len(data),
                label=label,
                uploaded_by=user,
            )
            if record:
                activity_record(
                    project=project,
                    user=user,
                    action=Action.IMAGES_UPLOADED,
                    prefix="uploaded ",
                    noun="image",
                    suffix=f" to the {_dataset_words(split)}",
                    names=[image.original_name],
                    fold_key=f"upload:{split}",
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


def _dataset_words(split: str) -> str:
    return "test dataset" if split == Split.TEST else "training dataset"


def _names(images) -> list[str]:
    return [name or "(unnamed)" for name in images.order_by("pk").values_list("original_name", flat=True)[:50]]


def images_set_label(*, project: Project, image_ids: list[int], label: str, user=None) -> int:
    """Label many images at once; returns how many changed. Ids of other projects are ignored."""
    label = _label(label)
    with transaction.atomic():
        changing = Image.objects.filter(project=project, pk__in=image_ids).exclude(label=label)
        names = _names(changing)
        changed = changing.update(label=label)
        if changed:
            activity_record(
                project=project,
                user=user,
                action=Action.IMAGES_LABELED,
                prefix="labeled ",
                noun="image",
                suffix=f" {Label(label).label.lower()}",
                count=changed,
                names=names,
                fold_key=f"label:{label}",
            )
    return changed


def images_move(*, project: Project, image_ids: list[int], split: str, user=None) -> int:
    """Move images to the training or test dataset (creating the test dataset if needed).

    Raises Invalid when none of `image_ids` is in the project, rather than create an empty
    test dataset, which would stop training until it is removed.
    """
    if split not in Split.values:
        raise Invalid(f"Unknown dataset “{split}”: use “train” or “test”.", code="invalid_dataset")
    images = Image.objects.filter(project=project, pk__in=image_ids)
    if not images.exists():
        raise Invalid("None of the selected images is in this project; nothing was moved.", code="no_images")
    with transaction.atomic():
        dataset = dataset_get_or_create(project=project, split=split)
        moving = images.exclude(dataset=dataset)
        names = _names(moving)
        moved = moving.update(dataset=dataset)
        if moved:
            activity_record(
                project=project,
                user=user,
                action=Action.IMAGES_MOVED,
                prefix="moved ",
                noun="image",
                suffix=f" to the {_dataset_words(split)}",
                count=moved,
                names=names,
                fold_key=f"move:{split}",
            )
    return moved


def image_update(*, image: Image, label: str | None = None, split: str | None = None, user=None) -> Image:
    """Relabel and/or move one image; None leaves that property as it is."""
    with transaction.atomic():
        if label is not None:
            images_set_label(project=image.project, image_ids=[image.pk], label=label, user=user)
        if split is not None:
            images_move(project=image.project, image_ids=[image.pk], split=split, user=user)
    return Image.objects.select_related("dataset").get(pk=image.pk)


def images_delete(*, project: Project, image_ids: list[int], user=None) -> int:
    """Delete images and their files. Trained versions keep their record of them."""
    with transaction.atomic():
        images = list(Image.objects.filter(project=project, pk__in=image_ids).order_by("pk"))
        names = [n for image in images for n in (image.file.name, image.thumbnail.name, image.mask.name)]
        Image.objects.filter(pk__in=[image.pk for image in images]).delete()
        storage_delete_on_commit(names)
        if images:
            activity_record(
                project=project,
                user=user,
                action=Action.IMAGES_DELETED,
                prefix="deleted ",
                noun="image",
                count=len(images),
                names=[image.original_name or "(unnamed)" for image in images],
                fold_key="delete",
            )
    return len(images)


def dataset_delete_test(*, project: Project, user=None) -> None:
    """Remove the test dataset; its images go back to the training dataset, nothing is lost."""
    with transaction.atomic():
        test = project.datasets.filter(split=Split.TEST).first()
        if test is None:
            return
        train = dataset_get_or_create(project=project, split=Split.TRAIN)
        moved = Image.objects.filter(dataset=test).update(dataset=train)
        activity_record(
            project=project,
            user=user,
            action=Action.TEST_DATASET_REMOVED,
            summary=f"removed the test dataset ({plural(moved, 'image')} back in training)",
            detail={"images": moved},
        )
        test.delete()


TEST_SHARE = 0.2  # of each label's training photos kept aside, above the test dataset's minimums


def dataset_keep_test_aside(*, project: Project, user=None) -> tuple[int, int]:
    """Move a random share of the labeled training photos into a new test dataset, so that the
    next version is measured on photos it never saw; returns (normal, anomalous) moved.

    Takes TEST_SHARE of each label, at least the test dataset's minimums (10 and 10), and leaves
    training at least its own minimum of normal photos. Raises Conflict when the project already
    has a test dataset and Invalid, saying how many photos to add, when there are too few to
    split; nothing moves then.
    """
    with transaction.atomic():
        if project.datasets.filter(split=Split.TEST).exists():
            raise Conflict("This project already has a test dataset.", code="test_dataset_exists")
        train = Image.objects.select_for_update().filter(project=project, dataset__split=Split.TRAIN)
        normal = list(train.filter(label=Label.NORMAL).values_list("pk", flat=True))
        anomalous = list(train.filter(label=Label.ANOMALY).values_list("pk", flat=True))
        take_normal = max(MIN_TEST_NORMAL, math.ceil(TEST_SHARE * len(normal)))
        take_anomalous = max(MIN_TEST_ANOMALY, math.ceil(TEST_SHARE * len(anomalous)))
        short = [
            f"{need - have} more {kind} photo{'s' if need - have > 1 else ''}"
            for kind, have, need in (
                ("normal", len(normal), take_normal + MIN_TRAIN_NORMAL_WITH_TEST),
                ("anomalous", len(anomalous), take_anomalous),
            )
            if have < need
        ]
        if short:
            raise Invalid(
                f"Too few labeled photos to keep a test dataset aside: add {' and '.join(short)} first "
                f"(the test dataset needs at least {MIN_TEST_NORMAL} normal and {MIN_TEST_ANOMALY} anomalous "
                f"photos, and training keeps at least {MIN_TRAIN_NORMAL_WITH_TEST} normal ones).",
                code="too_few_images",
            )
        chosen = random.sample(normal, take_normal) + random.sample(anomalous, take_anomalous)
        test = dataset_get_or_create(project=project, split=Split.TEST)
        Image.objects.filter(pk__in=chosen).update(dataset=test)
        activity_record(
            project=project,
            user=user,
            action=Action.TEST_DATASET_CREATED,
            summary=f"kept {take_normal} normal and {take_anomalous} anomalous photos aside as the test dataset",
            detail={"normal": take_normal, "anomalous": take_anomalous},
        )
    return take_normal, take_anomalous

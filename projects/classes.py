"""Anomaly classes and the class-index masks that use them: create, rename, recolour and delete a
project's classes; set, read and remove an image's mask.

A stored mask holds class indices (projects.masks); a class's name and colour live only on its
row, so renaming or recolouring rewrites no file. Deleting a class rewrites the masks that use
it (its pixels become background), which is why the console asks first, with the count.
"""

import re
import uuid

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.http import Http404

from core.errors import Conflict, Invalid
from core.files import storage_delete_on_commit
from core.uploads import check_upload_size
from engine.images import ImageError
from projects import masks
from projects.activity import activity_record
from projects.models import (
    MAX_CLASS_INDEX,
    Action,
    AnomalyClass,
    Image,
    Label,
    MaskKind,
    Project,
    project_files_prefix,
)
from projects.selectors import anomaly_class_free_color, image_mask_indices, mask_classes, masks_using_class

COLOR_PATTERN = re.compile(r"^#[0-9a-fA-F]{6}\Z")
MAX_CLASS_NAME = 64
# --- Classes ------------------------------------------------------------------------------------


def _clean_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise Invalid("Give the anomaly class a name, for example “crack”.", code="name_required")
    if len(name) > MAX_CLASS_NAME:
        raise Invalid(f"A class name has at most {MAX_CLASS_NAME} characters.", code="name_too_long")
    if name.lower() == "background":
        raise Invalid(
            "“background” is what Lookout for Vision calls the pixels of no class; choose another name.",
            code="reserved_name",
        )
    return name


def _clean_color(color: str) -> str:
    color = (color or "").strip().lower()
    if not COLOR_PATTERN.match(color):
        raise Invalid(f"“{color}” is not a colour: write it as #rrggbb, for example #e6194b.", code="invalid_color")
    if color in ("#ffffff", "#000000"):
        raise Invalid(
            "White and black mean background in a mask; choose another colour for the class.", code="invalid_color"
        )
    return color


def _check_free(project: Project, *, name: str, color: str, exclude: int | None = None) -> None:
    others = AnomalyClass.objects.filter(project=project).exclude(pk=exclude)
    taken = others.annotate(lower=Lower("name")).filter(lower=name.lower()).first()
    if taken:
        raise Conflict(f"This project already has a class named “{taken.name}”.", code="name_taken")
    taken = others.filter(color=color).first()
    if taken:
        raise Conflict(f"The class “{taken.name}” already has the colour {color}; choose another.", code="color_taken")


def _next_index(project: Project) -> int:
    used = set(AnomalyClass.objects.filter(project=project).values_list("index", flat=True))
    for index in range(1, MAX_CLASS_INDEX + 1):
        if index not in used:
            return index
    raise Invalid(f"A project has at most {MAX_CLASS_INDEX} anomaly classes.", code="too_many_classes")


def anomaly_class_create(*, project: Project, name: str, color: str = "") -> AnomalyClass:
    """Add a class. Without a colour it takes the next colour of PALETTE no class has.

    The first class takes index 1, the implicit class: masks saved before classes existed
    become this class. Raises Invalid (bad name or colour) or Conflict (name or colour taken,
    whatever the case of the name).
    """
    name = _clean_name(name)
    if not color:
        color = anomaly_class_free_color(project=project)
        if not color:
            raise Invalid("Choose a colour for the class (#rrggbb).", code="color_required")
    color = _clean_color(color)
    _check_free(project, name=name, color=color)
    try:
        with transaction.atomic():
            return AnomalyClass.objects.create(project=project, index=_next_index(project), name=name, color=color)
    except IntegrityError:
        # Another request took the name, colour or index between our checks and the insert.
        _check_free(project, name=name, color=color)
        raise Conflict("Another class was created at the same moment; try again.", code="conflict") from None


def anomaly_classes_ensure(*, project: Project, wanted: list[tuple[str, str]]) -> list[AnomalyClass]:
    """The project's class for each (name, colour) of `wanted`, matched by name whatever its
    case, created when missing (an importer's colour map): with its colour, or a free one when
    another class has that colour. Returns the classes in `wanted`'s order."""
    found = []
    for name, color in wanted:
        existing = (
            AnomalyClass.objects.filter(project=project)
            .annotate(lower=Lower("name"))
            .filter(lower=name.lower())
            .first()
        )
        if existing is None:
            taken = AnomalyClass.objects.filter(project=project, color=(color or "").lower()).exists()
            try:
                existing = anomaly_class_create(project=project, name=name, color="" if taken else color)
            except Invalid:
                existing = anomaly_class_create(project=project, name=name)
        found.append(existing)
    return found


def anomaly_class_update(*, anomaly_class: AnomalyClass, name: str | None = None, color: str | None = None):
    """Rename and/or recolour a class; no mask file changes (they hold the index)."""
    new_name = _clean_name(name) if name is not None else anomaly_class.name
    new_color = _clean_color(color) if color is not None else anomaly_class.color
    _check_free(anomaly_class.project, name=new_name, color=new_color, exclude=anomaly_class.pk)
    anomaly_class.name, anomaly_class.color = new_name, new_color
    try:
        with transaction.atomic():
            anomaly_class.save(update_fields=["name", "color"])
    except IntegrityError:
        raise Conflict("Another class took this name or colour at the same moment.", code="conflict") from None
    return anomaly_class


def anomaly_class_delete(*, anomaly_class: AnomalyClass, masks_expected: int | None = None) -> int:
    """Delete a class; its pixels in every mask become background. Returns how many masks changed.

    `masks_expected`: the count the person was shown when asked to confirm. When more masks
    use the class by now (someone painted it meanwhile), Conflict says so and nothing changes.
    A mask left with no defect is removed; its image stays labelled anomaly.
    """
    using = masks_using_class(anomaly_class=anomaly_class)
    if masks_expected is not None and len(using) > masks_expected:
        n = len(using)
        since = f", not {masks_expected} as when you were asked" if masks_expected else ""
        raise Conflict(
            f"{n} mask{'s' if n != 1 else ''} use{'' if n != 1 else 's'} “{anomaly_class.name}”{since}: deleting "
            f"the class turns those pixels into background. Confirm with that count ({n}) to delete it.",
            code="class_in_use",
        )
    stored, old = [], []
    try:
        with transaction.atomic():
            for image in using:
                indices = image_mask_indices(image=image)
                indices[indices == anomaly_class.index] = 0
                old.append(image.mask.name)
                if indices.any():
                    name = _store(image, indices)
                    stored.append(name)
                    Image.objects.filter(pk=image.pk).update(
                        mask=name, mask_kind=MaskKind.CLASS_INDEX, mask_classes_used=masks.classes_used(indices)
                    )
                else:
                    Image.objects.filter(pk=image.pk).update(
                        mask="", mask_kind=MaskKind.CLASS_INDEX, mask_classes_used=None
                    )
            anomaly_class.delete()
            storage_delete_on_commit(old)
    except BaseException:
        for name in stored:
            default_storage.delete(name)
        raise
    return len(using)


# --- Masks --------------------------------------------------------------------------------------


def _store(image: Image, indices: np.ndarray) -> str:
    return default_storage.save(
        f"{project_files_prefix(image.project_id)}masks/{uuid.uuid4().hex}.png",
        ContentFile(masks.encode_indices(indices)),
    )


def mask_decode(*, project: Project, data: bytes, width: int, height: int, class_name: str = "") -> np.ndarray:
    """An uploaded or painted mask -> (H, W) class indices, or Invalid saying what is wrong.

    Colour masks map each class's colour to it; a black-and-white mask marks `class_name`, or the
    project's only class (several classes and no name: Invalid `class_required`).
    """
    check_upload_size(data)
    classes = mask_classes(project=project)
    binary_class = classes[0] if len(classes) == 1 else None
    if class_name:
        binary_class = next((c for c in classes if c.name.lower() == class_name.strip().lower()), None)
        if binary_class is None:
            names = ", ".join(f"“{c.name}”" for c in classes)
            raise Invalid(f"This project has no class “{class_name}”; its classes are {names}.", code="unknown_class")
    try:
        return masks.decode_upload(data, width=width, height=height, classes=classes, binary_class=binary_class)
    except ImageError as exc:
        raise Invalid(exc.message, code=exc.code) from exc


def mask_store_new(*, image_key: str, project: Project, indices: np.ndarray) -> str:
    """Store decoded indices for an image being added (dataset_add_image); the file's name."""
    return default_storage.save(
        f"{project_files_prefix(project.pk)}masks/{image_key}.png", ContentFile(masks.encode_indices(indices))
    )


def image_set_mask(*, image: Image, mask: bytes, class_name: str = "", user=None) -> Image:
    """Attach (or replace) the defect mask of an image; the image becomes an anomaly.

    `mask`: a colour PNG (each class in its colour on white, as the painter saves) or a
    black-and-white one (see mask_decode). Checked before anything is stored; a refused mask
    leaves the old one. Http404 when the image was deleted meanwhile (nothing is kept).
    """
    indices = mask_decode(
        project=image.project, data=mask, width=image.width, height=image.height, class_name=class_name
    )
    name = _store(image, indices)
    old = Image.objects.filter(pk=image.pk).values_list("mask", flat=True).first()
    with transaction.atomic():
        updated = Image.objects.filter(pk=image.pk).update(
            mask=name,
            mask_kind=MaskKind.CLASS_INDEX,
            mask_classes_used=masks.classes_used(indices),
            label=Label.ANOMALY,
        )
        if not updated:
            transaction.on_commit(lambda: default_storage.delete(name))
        else:
            storage_delete_on_commit([old] if old else [])
            activity_record(
                project=image.project,
                user=user,
                action=Action.MASK_SET,
                count=1,
                prefix="drew the defect mask of ",
                noun="image",
                names=[str(image)],
                fold_key="mask",
            )
    if not updated:
        raise Http404("The image was deleted meanwhile; the mask was not saved.")
    image.refresh_from_db()
    return image


def image_remove_mask(*, image: Image) -> Image:
    """Remove an image's mask; its label stays as it is (an anomaly may have no mask)."""
    if not image.mask:
        raise Invalid("This image has no mask to remove.", code="no_mask")
    with transaction.atomic():
        old = image.mask.name
        Image.objects.filter(pk=image.pk).update(mask="", mask_kind=MaskKind.CLASS_INDEX, mask_classes_used=None)
        storage_delete_on_commit([old])
    image.refresh_from_db()
    return image

"""API v1: projects and their images. Each function parses, calls one service or selector
through project_get_for_user, and renders; errors become the API's one shape (console/api.py).
DELETE /{name} is attached to this router by console/api.py: deleting a project also unloads its
hosted models, which this layer knows nothing of."""

from dataclasses import asdict
from datetime import datetime
from typing import Literal

from django.http import HttpResponse
from ninja import File, Form, Query, Router, Schema, Status
from ninja.files import UploadedFile
from ninja.pagination import paginate
from pydantic import Field

from core.files import storage_file_response
from core.pagination import BoundedPageNumberPagination
from core.uploads import check_upload_length, upload_read
from projects import classes, images, imports, projects
from projects.models import PROJECT_NAME_PATTERN, AnomalyClass, Image, Membership, Project, Role, ZipImport
from projects.selectors import (
    anomaly_class_get,
    anomaly_class_list,
    dataset_counts,
    image_get,
    image_list,
    image_mask_png,
    project_get_for_user,
    project_has_test_dataset,
    project_list_for_user,
    project_members,
    zip_import_get,
)

router = Router(tags=["projects"])

LabelName = Literal["normal", "anomaly", "unlabeled"]
DatasetName = Literal["train", "test"]


class ProjectIn(Schema):
    # The service checks the name's rules and says what is wrong in words; the schema declares them.
    name: str = Field(
        max_length=255,
        description="Letters, digits, '-' and '_', starting with a letter or digit; not “new”.",
        json_schema_extra={
            "minLength": 1,
            "pattern": f"^{PROJECT_NAME_PATTERN}$",
            "not": {"pattern": "^[nN][eE][wW]$"},
        },
    )
    description: str = Field("", max_length=1000)


class ProjectOut(Schema):
    name: str
    description: str
    created_at: datetime
    role: str = Field(description="Your role in the project: owner, editor or viewer.")


class LabelCounts(Schema):
    normal: int
    anomaly: int
    unlabeled: int


class Datasets(Schema):
    train: LabelCounts
    test: LabelCounts | None = Field(description="null when the project has no test dataset.")


class ProjectDetailOut(ProjectOut):
    datasets: Datasets


class ImageOut(Schema):
    id: int
    label: LabelName
    dataset: DatasetName
    width: int
    height: int
    sha256: str
    name: str = Field(description="The uploaded file's name, for people; never used as a path.")
    format: str
    has_mask: bool
    uploaded_at: datetime

    @staticmethod
    def resolve_dataset(image: Image) -> str:
        return image.dataset.split

    @staticmethod
    def resolve_name(image: Image) -> str:
        return image.original_name

    @staticmethod
    def resolve_has_mask(image: Image) -> bool:
        return bool(image.mask)


class ImagePatch(Schema):
    label: LabelName | None = None
    dataset: DatasetName | None = None


class RejectedEntry(Schema):
    name: str = Field(description="The entry's name inside the zip.")
    message: str = Field(description="Why it was not added.")


class ZipImportOut(Schema):
    id: int
    status: Literal["QUEUED", "IMPORTING", "COMPLETE", "FAILED"] = Field(
        description="QUEUED, IMPORTING, then COMPLETE or FAILED (final: stop polling)."
    )
    message: str = Field(description="What happened, for people.")
    dataset: DatasetName
    name: str = Field(description="The uploaded zip's file name.")
    total: int = Field(description="Files of the zip to import as images (masks not counted).")
    done: int = Field(description="Of them, added or refused so far.")
    progress: int = Field(ge=0, le=100, description="Percent of the zip's images handled.")
    added: LabelCounts = Field(description="Images added, by label.")
    rejected: list[RejectedEntry] = Field(description="Files of the zip not added, by name, with the reason.")
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None

    @staticmethod
    def resolve_message(zip_import: ZipImport) -> str:
        return zip_import.status_message

    @staticmethod
    def resolve_dataset(zip_import: ZipImport) -> str:
        return zip_import.split

    @staticmethod
    def resolve_name(zip_import: ZipImport) -> str:
        return zip_import.original_name

    @staticmethod
    def resolve_added(zip_import: ZipImport) -> dict:
        return {
            "normal": zip_import.added_normal,
            "anomaly": zip_import.added_anomaly,
            "unlabeled": zip_import.added_unlabeled,
        }


class ProjectPatch(Schema):
    description: str = Field(max_length=1000)


RoleName = Literal["owner", "editor", "viewer"]


class MemberIn(Schema):
    username: str = Field(max_length=150)
    role: RoleName = Field(
        description="owner: everything, members included; editor: images, training, hosting; viewer: reads only."
    )


class MemberOut(Schema):
    user_id: int
    username: str
    role: RoleName

    @staticmethod
    def resolve_username(membership: Membership) -> str:
        return membership.user.username


def project_out(project: Project, *, role: str) -> dict:
    return {"name": project.name, "description": project.description, "created_at": project.created_at, "role": role}


@router.post("", response={201: ProjectOut}, summary="Create a project")
def create_project(request, payload: ProjectIn):
    project = projects.project_create(user=request.auth, name=payload.name, description=payload.description)
    return Status(201, project_out(project, role=Role.OWNER))


@router.get("", response=list[ProjectOut], summary="List your projects")
def list_projects(request):
    return [project_out(p, role=p.role) for p in project_list_for_user(user=request.auth)]


@router.get("/{name}", response=ProjectDetailOut, summary="Get a project with its image counts")
def get_project(request, name: str):
    project = project_get_for_user(user=request.auth, name=name)
    counts = dataset_counts(project=project)
    has_test = project_has_test_dataset(project=project)
    return {
        **project_out(project, role=project.role),
        "datasets": {"train": asdict(counts["train"]), "test": asdict(counts["test"]) if has_test else None},
    }


@router.patch("/{name}", response=ProjectOut, summary="Change a project's description")
def update_project(request, name: str, payload: ProjectPatch):
    project = project_get_for_user(user=request.auth, name=name, write=True)
    projects.project_update(project=project, description=payload.description)
    return project_out(project, role=project.role)


@router.get("/{name}/members", response=list[MemberOut], summary="List a project's members")
def list_members(request, name: str):
    return project_members(project=project_get_for_user(user=request.auth, name=name))


@router.post("/{name}/members", response=MemberOut, summary="Add a member or change a member's role (owners only)")
def set_member(request, name: str, payload: MemberIn):
    """The person needs an account already (an admin creates it in the console). 400
    `no_such_user` when there is none; 409 `last_owner` when the change would leave no owner."""
    project = project_get_for_user(user=request.auth, name=name, owner=True)
    return projects.member_set(project=project, username=payload.username, role=payload.role)


@router.delete("/{name}/members/{user_id}", response={204: None}, summary="Remove a member (owners only)")
def remove_member(request, name: str, user_id: int):
    project = project_get_for_user(user=request.auth, name=name, owner=True)
    projects.member_remove(project=project, user_id=user_id)
    return Status(204, None)


@router.post("/{name}/images", response={201: ImageOut}, summary="Upload one image (multipart)")
def upload_image(
    request,
    name: str,
    file: File[UploadedFile],
    label: Form[LabelName | None] = None,
    dataset: Form[DatasetName] = "train",
    mask: File[UploadedFile | None] = None,
    mask_class: Form[str] = "",
):
    """`file`: the image. `label`: normal or anomaly (unlabeled when left out; an image with a
    mask is an anomaly). `dataset`: train (default) or test. `mask`: optional defect mask, a PNG
    of the image's size: white (any grey) on black for one class, or each anomaly class in its
    colour on white (Lookout for Vision's colour maps). `mask_class`: the class a black-and-white
    mask marks, needed when the project has several. An image already in the project answers
    409 `duplicate`."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    image = images.dataset_add_image(
        project=project,
        data=upload_read(file=file),
        name=file.name or "",
        label=label,
        split=dataset,
        user=request.auth,
        mask=upload_read(file=mask) if mask is not None else None,
        mask_class=mask_class,
    )
    return Status(201, image)


@router.delete("/{name}/test-dataset", response={204: None}, summary="Remove the test dataset")
def delete_test_dataset(request, name: str):
    """Its images go back to the training dataset (nothing is deleted); models trained from then
    on are evaluated by cross-validation."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    images.dataset_delete_test(project=project)
    return Status(204, None)


@router.get("/{name}/images", response=list[ImageOut], summary="List images (paged)")
@paginate(BoundedPageNumberPagination, page_size=100, max_page_size=1000)
def list_images(request, name: str, label: LabelName | None = None, dataset: DatasetName | None = None):
    project = project_get_for_user(user=request.auth, name=name)
    return image_list(project=project, label=label, split=dataset)


@router.get("/{name}/images/{image_id}", response=ImageOut, summary="Get one image's record")
def get_image(request, name: str, image_id: int):
    project = project_get_for_user(user=request.auth, name=name)
    return image_get(project=project, image_id=image_id)


@router.get(
    "/{name}/images/{image_id}/file",
    summary="Download an image's file",
    openapi_extra={
        "responses": {
            200: {
                "description": "The image as uploaded.",
                "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    },
)
def get_image_file(request, name: str, image_id: int):
    project = project_get_for_user(user=request.auth, name=name)
    return storage_file_response(image_get(project=project, image_id=image_id).file)


@router.get(
    "/{name}/images/{image_id}/thumbnail",
    summary="Download an image's thumbnail",
    openapi_extra={
        "responses": {
            200: {
                "description": "A JPEG at most 320 px on its long side.",
                "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    },
)
def get_image_thumbnail(request, name: str, image_id: int):
    project = project_get_for_user(user=request.auth, name=name)
    return storage_file_response(image_get(project=project, image_id=image_id).thumbnail)


@router.patch("/{name}/images/{image_id}", response=ImageOut, summary="Relabel or move an image")
def update_image(request, name: str, image_id: int, payload: ImagePatch):
    project = project_get_for_user(user=request.auth, name=name, write=True)
    image = image_get(project=project, image_id=image_id)
    return images.image_update(image=image, label=payload.label, split=payload.dataset, user=request.auth)


@router.delete("/{name}/images/{image_id}", response={204: None}, summary="Delete an image")
def delete_image(request, name: str, image_id: int):
    project = project_get_for_user(user=request.auth, name=name, write=True)
    image = image_get(project=project, image_id=image_id)
    images.images_delete(project=project, image_ids=[image.pk], user=request.auth)
    return Status(204, None)


# --- Anomaly classes and masks --------------------------------------------------------------------


class AnomalyClassOut(Schema):
    id: int
    index: int = Field(description="The pixel value of this class in stored masks (1..255); it never changes.")
    name: str
    color: str = Field(description="#rrggbb: the class's colour in colour masks and in DetectAnomalies.")


# The rules projects.classes applies, declared (the service still says what is wrong in words):
# a name with something besides spaces, not "background"; a colour #rrggbb, neither white nor black.
CLASS_NAME_RULES = {"pattern": r"\S", "not": {"pattern": r"^\s*[bB][aA][cC][kK][gG][rR][oO][uU][nN][dD]\s*$"}}
COLOR_RULES = {"pattern": "^#[0-9a-fA-F]{6}$", "not": {"pattern": "^#([fF]{6}|0{6})$"}}


class AnomalyClassIn(Schema):
    name: str = Field(max_length=64, json_schema_extra=CLASS_NAME_RULES)
    color: str = Field(
        "",
        max_length=7,
        description="#rrggbb, not white or black; left out: a free colour.",
        json_schema_extra={"anyOf": [{"const": ""}, COLOR_RULES]},
    )


def _or_null(rules: dict):
    """json_schema_extra of an optional string field: `rules` apply to the string, not to null."""

    def extra(schema: dict) -> None:
        for branch in schema.get("anyOf", ()):
            if branch.get("type") == "string":
                branch.update(rules)

    return extra


class AnomalyClassPatch(Schema):
    name: str | None = Field(None, max_length=64, json_schema_extra=_or_null(CLASS_NAME_RULES))
    color: str | None = Field(None, max_length=7, json_schema_extra=_or_null(COLOR_RULES))


class ClassDeletedOut(Schema):
    masks_changed: int = Field(description="Masks whose pixels of this class became background.")


def _class_out(c: AnomalyClass) -> dict:
    return {"id": c.pk, "index": c.index, "name": c.name, "color": c.color}


@router.get("/{name}/classes", response=list[AnomalyClassOut], summary="List the anomaly classes")
def list_classes(request, name: str):
    project = project_get_for_user(user=request.auth, name=name)
    return [_class_out(c) for c in anomaly_class_list(project=project)]


@router.post("/{name}/classes", response={201: AnomalyClassOut}, summary="Create an anomaly class")
def create_class(request, name: str, payload: AnomalyClassIn):
    """Names are unique in a project whatever their case (409 `name_taken`), so are colours (409
    `color_taken`). The first class takes over the masks stored before the project had classes."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    return Status(
        201, _class_out(classes.anomaly_class_create(project=project, name=payload.name, color=payload.color))
    )


@router.patch("/{name}/classes/{class_id}", response=AnomalyClassOut, summary="Rename or recolour a class")
def update_class(request, name: str, class_id: int, payload: AnomalyClassPatch):
    """No mask file changes: masks hold the class's index, not its name or colour."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    anomaly_class = anomaly_class_get(project=project, class_id=class_id)
    return _class_out(classes.anomaly_class_update(anomaly_class=anomaly_class, name=payload.name, color=payload.color))


@router.delete("/{name}/classes/{class_id}", response=ClassDeletedOut, summary="Delete a class")
def delete_class(request, name: str, class_id: int, masks: int = Query(0, ge=0, le=2**31)):
    """Its pixels become background in every mask that uses it. When masks use it, the call
    answers 409 `class_in_use` with their number; send it again with `?masks=N` (that number)
    to confirm."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    anomaly_class = anomaly_class_get(project=project, class_id=class_id)
    return {"masks_changed": classes.anomaly_class_delete(anomaly_class=anomaly_class, masks_expected=masks)}


MASK_DOC = {
    "requestBody": {
        "required": True,
        "description": "The mask PNG as the whole body: white on black (one class), or each class in its colour "
        "on white.",
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.put("/{name}/images/{image_id}/mask", response=ImageOut, openapi_extra=MASK_DOC, summary="Set an image's mask")
def put_mask(request, name: str, image_id: int, mask_class: str = Query("", alias="class", max_length=64)):
    """The mask must have the image's size (400 `wrong_size`); each colour must be a class's
    colour, white or black (400 `unknown_color`, naming the colours). A black-and-white mask marks
    `?class=NAME`, or the project's only class. The image becomes an anomaly. A refused mask
    keeps the one stored before."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    image = image_get(project=project, image_id=image_id)
    check_upload_length(int(request.META.get("CONTENT_LENGTH") or 0))
    return classes.image_set_mask(image=image, mask=request.read(), class_name=mask_class, user=request.auth)


@router.get(
    "/{name}/images/{image_id}/mask",
    summary="Download an image's mask",
    openapi_extra={
        "responses": {
            200: {
                "description": "The mask PNG, the image's size.",
                "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    },
)
def get_mask(request, name: str, image_id: int, style: Literal["color", "binary"] = "color"):
    """`style=color` (default): each class in its colour on white, as Lookout for Vision's
    masks; `binary`: white on black. 404 when the image has no mask."""
    project = project_get_for_user(user=request.auth, name=name)
    image = image_get(project=project, image_id=image_id)
    response = HttpResponse(image_mask_png(image=image, style=style), content_type="image/png")
    response["Cache-Control"] = "private, no-cache"
    return response


@router.delete("/{name}/images/{image_id}/mask", response=ImageOut, summary="Remove an image's mask")
def delete_mask(request, name: str, image_id: int):
    """The label stays as it is; 400 `no_mask` when the image has none."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    return classes.image_remove_mask(image=image_get(project=project, image_id=image_id))


@router.post("/{name}/imports", response={202: ZipImportOut}, summary="Import a zip of images (in the background)")
def start_zip_import(request, name: str, file: File[UploadedFile], dataset: Form[DatasetName] = "train"):
    """Multipart: `file`, a zip whose folders label its images as Lookout for Vision's S3 import
    did (`normal/` or `good/`, `anomaly/`, anything else unlabeled; `mask/NAME.png` is image
    NAME's defect mask), and `dataset` (train or test). A file that is not a zip, or a zip over
    the limits (entries, unpacked size, compression), is refused at once and nothing is stored.
    Otherwise the import runs in the background: poll GET …/imports/{id} until `status` is
    COMPLETE or FAILED."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    zip_import = imports.zip_import_start(
        project=project, file=file, split=dataset, user=request.auth, name=file.name or ""
    )
    return Status(202, zip_import)


@router.get("/{name}/imports/{import_id}", response=ZipImportOut, summary="A zip import's progress and report")
def get_zip_import(request, name: str, import_id: int):
    project = project_get_for_user(user=request.auth, name=name)
    return zip_import_get(project=project, import_id=import_id)

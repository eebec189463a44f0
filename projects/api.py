"""API v1: projects and their images. Each function parses, calls one service or selector
through project_get_for_user, and renders; errors become the API's one shape (console/api.py).
DELETE /{name} is attached to this router by console/api.py: deleting a project also unloads its
hosted models, which this layer knows nothing of."""

from dataclasses import asdict
from datetime import datetime
from typing import Literal

from ninja import File, Form, Router, Schema, Status
from ninja.files import UploadedFile
from ninja.pagination import PageNumberPagination, paginate
from pydantic import Field

from core.files import storage_file_response
from core.uploads import upload_read
from projects import images, projects
from projects.models import Image, Project, Role
from projects.selectors import (
    dataset_counts,
    image_get,
    image_list,
    project_get_for_user,
    project_has_test_dataset,
    project_list_for_user,
)

router = Router(tags=["projects"])

LabelName = Literal["normal", "anomaly", "unlabeled"]
DatasetName = Literal["train", "test"]


class ProjectIn(Schema):
    name: str = Field(max_length=255, description="Letters, digits, '-' and '_', starting with a letter or digit.")
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


@router.post("/{name}/images", response={201: ImageOut}, summary="Upload one image (multipart)")
def upload_image(
    request,
    name: str,
    file: File[UploadedFile],
    label: Form[LabelName | None] = None,
    dataset: Form[DatasetName] = "train",
    mask: File[UploadedFile | None] = None,
):
    """`file`: the image. `label`: normal or anomaly (unlabeled when left out; an image with a
    mask is an anomaly). `dataset`: train (default) or test. `mask`: optional defect mask, a PNG
    of the image's size whose non-black pixels mark the defect. An image already in the project
    answers 409 `duplicate`."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    image = images.dataset_add_image(
        project=project,
        data=upload_read(file=file),
        name=file.name or "",
        label=label,
        split=dataset,
        user=request.auth,
        mask=upload_read(file=mask) if mask is not None else None,
    )
    return Status(201, image)


@router.get("/{name}/images", response=list[ImageOut], summary="List images (paged)")
@paginate(PageNumberPagination, page_size=100, max_page_size=1000)
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


@router.patch("/{name}/images/{image_id}", response=ImageOut, summary="Relabel or move an image")
def update_image(request, name: str, image_id: int, payload: ImagePatch):
    project = project_get_for_user(user=request.auth, name=name, write=True)
    image = image_get(project=project, image_id=image_id)
    return images.image_update(image=image, label=payload.label, split=payload.dataset)


@router.delete("/{name}/images/{image_id}", response={204: None}, summary="Delete an image")
def delete_image(request, name: str, image_id: int):
    project = project_get_for_user(user=request.auth, name=name, write=True)
    image = image_get(project=project, image_id=image_id)
    images.images_delete(project=project, image_ids=[image.pk])
    return Status(204, None)

"""API v1: model versions (train, cancel, read, per-image results, threshold, delete). Hosting and
detect: inference/api.py."""

from datetime import datetime
from typing import Literal

from ninja import Router, Schema, Status
from ninja.pagination import paginate
from pydantic import Field

from core.files import storage_file_response
from core.pagination import BoundedPageNumberPagination
from engine.backbones import BACKBONES, DEFAULT_BACKBONE
from projects.selectors import project_get_for_user
from training import services
from training.models import ModelVersion, ModelVersionImage
from training.selectors import (
    model_version_get,
    model_version_list,
    model_version_performance,
    model_version_result_get,
    model_version_results,
)

router = Router(tags=["models"])

Backbone = Literal[tuple(BACKBONES)]  # type: ignore[valid-type]


class TrainIn(Schema):
    description: str = Field("", max_length=1000)
    backbone: Backbone = Field(
        DEFAULT_BACKBONE, description="; ".join(f"{k}: {v}" for k, v in services.backbone_choices())
    )


class ModelStatusOut(Schema):
    version: int
    status: str = Field(
        description="QUEUED, TRAINING, TRAINED, TRAINING_FAILED, STARTING_HOSTING, HOSTED, "
        "HOSTING_FAILED, STOPPING_HOSTING or DELETING."
    )


class ModelSummaryOut(ModelStatusOut):
    status_message: str
    stage: str = Field(description="While training: preparing, features, evaluating, fitting or saving.")
    progress: int = Field(description="0-100")
    description: str
    backbone: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    training_seconds: float | None


class ConfusionMatrix(Schema):
    tp: int
    fp: int
    tn: int
    fn: int


class PerformanceOut(Schema):
    precision: float
    recall: float
    f1: float
    roc_auc: float | None = Field(description="null when the evaluation had a single class.")
    average_precision: float | None
    threshold: float = Field(description="The decision threshold in use, in score units (0..1).")
    trained_threshold: float | None = Field(description="The threshold training chose.")
    confusion_matrix: ConfusionMatrix
    evaluated_images: int = Field(description="How many images these numbers come from.")
    evaluated_normal: int = Field(description="Of those, how many are labeled normal.")
    evaluated_anomalous: int = Field(description="Of those, how many are labeled anomalous.")
    ci: dict[str, list[float] | None] = Field(
        description="95 % interval [low, high] of precision, recall, f1, roc_auc, average_precision and "
        "mask_iou (null where undefined): Wilson intervals for precision and recall, bootstrap over the "
        "evaluated images for the others. Few images give wide intervals."
    )
    small_evaluation: bool = Field(
        description="True when fewer than 100 images were evaluated: the numbers prove little (see warning)."
    )
    warning: str | None = Field(
        description="For a small evaluation, what the numbers rest on and what to do, in words; null otherwise."
    )


class ModelOut(ModelSummaryOut):
    evaluation: Literal["test_dataset", "cross_validation"] | None = Field(
        description="How performance was measured: on the test dataset, or by cross-validation over the "
        "training dataset (each image scored by a model that did not train on it)."
    )
    performance: PerformanceOut | None = Field(description="At the current threshold; null until trained.")

    @staticmethod
    def resolve_evaluation(mv: ModelVersion) -> str | None:
        return mv.evaluation or None

    @staticmethod
    def resolve_performance(mv: ModelVersion) -> dict | None:
        return model_version_performance(model_version=mv)


class ThresholdIn(Schema):
    threshold: float = Field(gt=0, lt=1)


class ResultOut(Schema):
    id: int
    image_id: int | None = Field(description="The project image; null once it was deleted (the record stays).")
    name: str
    dataset: Literal["train", "test"]
    label: Literal["normal", "anomaly"]
    has_mask: bool
    score: float = Field(description="Anomaly score, 0..1; anomalous at or above the version's threshold.")
    has_heatmap: bool

    @staticmethod
    def resolve_name(row: ModelVersionImage) -> str:
        return row.original_name

    @staticmethod
    def resolve_dataset(row: ModelVersionImage) -> str:
        return row.split

    @staticmethod
    def resolve_has_heatmap(row: ModelVersionImage) -> bool:
        return bool(row.heatmap)


@router.post("/{name}/models", response={202: ModelStatusOut}, summary="Train a new model version")
def start_training(request, name: str, payload: TrainIn):
    """Queues the training of the next version on the project's labeled images. 400
    `not_enough_data` says exactly which images are missing. Poll GET .../models/{version}."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    mv = services.model_version_start_training(
        project=project, user=request.auth, description=payload.description, backbone=payload.backbone
    )
    return Status(202, mv)


@router.post("/{name}/models/{version}/cancel", response=ModelStatusOut, summary="Cancel a queued or running training")
def cancel_training(request, name: str, version: int):
    """The version ends TRAINING_FAILED, saying who cancelled it; 409 `not_training` when its
    training had already ended."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    mv = model_version_get(project=project, version=version)
    services.model_version_cancel_training(model_version=mv, user=request.auth)
    return model_version_get(project=project, version=version)


@router.get("/{name}/models", response=list[ModelSummaryOut], summary="List model versions, newest first")
def list_models(request, name: str):
    project = project_get_for_user(user=request.auth, name=name)
    return model_version_list(project=project)


@router.get("/{name}/models/{version}", response=ModelOut, summary="Get a model version with its performance")
def get_model(request, name: str, version: int):
    project = project_get_for_user(user=request.auth, name=name)
    return model_version_get(project=project, version=version)


@router.get(
    "/{name}/models/{version}/results",
    response=list[ResultOut],
    summary="A version's evaluated images with their scores (paged, highest score first)",
)
@paginate(BoundedPageNumberPagination, page_size=100, max_page_size=1000)
def list_results(request, name: str, version: int):
    """The images the performance numbers come from, as the version saw them when it trained."""
    project = project_get_for_user(user=request.auth, name=name)
    return model_version_results(model_version=model_version_get(project=project, version=version))


@router.get(
    "/{name}/models/{version}/results/{result_id}/heatmap",
    summary="Download the anomaly heatmap of an evaluated image",
    openapi_extra={
        "responses": {
            200: {
                "description": "An RGBA PNG of the image's size, to lay over the photo.",
                "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    },
)
def get_result_heatmap(request, name: str, version: int, result_id: int):
    project = project_get_for_user(user=request.auth, name=name)
    mv = model_version_get(project=project, version=version)
    return storage_file_response(model_version_result_get(model_version=mv, row_id=result_id).heatmap)


@router.patch("/{name}/models/{version}", response=ModelOut, summary="Change the decision threshold")
def update_model(request, name: str, version: int, payload: ThresholdIn):
    """Moves the threshold without retraining; performance is recomputed for it, and hosted
    models use it from the next detect call on."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    mv = model_version_get(project=project, version=version)
    return services.model_version_set_threshold(model_version=mv, threshold=payload.threshold, user=request.auth)


@router.delete("/{name}/models/{version}", response={204: None}, summary="Delete a model version")
def delete_model(request, name: str, version: int):
    """A hosted model answers 409 `hosted`: stop it first."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    services.model_version_delete(model_version=model_version_get(project=project, version=version), user=request.auth)
    return Status(204, None)

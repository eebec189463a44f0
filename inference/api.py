"""API v1: hosting, detection and trial detections. Lookout for Vision's own API: lookout/api.py."""

from datetime import datetime
from typing import Literal

from django.http import Http404, HttpResponse
from ninja import File, Form, Router, Schema, Status
from ninja.files import UploadedFile
from ninja.pagination import paginate
from pydantic import Field

from core.errors import Invalid, KenpinError, TooLarge
from core.files import storage_file_response
from core.pagination import BoundedPageNumberPagination
from core.timing import Stages, server_timing
from core.uploads import check_upload_length, upload_read
from inference import detection, hosting, lfv, trials
from inference.models import TrialDetection, TrialImage
from inference.selectors import trial_get, trial_image_file, trial_image_get, trial_images, trial_list
from projects.api import DatasetName
from projects.selectors import project_get_for_user
from training.api import ModelStatusOut
from training.selectors import model_version_get

router = Router(tags=["hosting and detection"])
trials_router = Router(tags=["trial detections"])


# --- Hosting ------------------------------------------------------------------------------------


@router.post("/{name}/models/{version}/start", response={202: ModelStatusOut}, summary="Start hosting a model")
def start_hosting(request, name: str, version: int):
    """STARTING_HOSTING, then HOSTED once an inference worker has loaded the model (a second or
    two); poll GET …/models/{version}. Starting a hosted model changes nothing."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    mv = model_version_get(project=project, version=version)
    return Status(202, hosting.model_version_start_hosting(model_version=mv, user=request.auth))


@router.post("/{name}/models/{version}/stop", response={202: ModelStatusOut}, summary="Stop hosting a model")
def stop_hosting(request, name: str, version: int):
    """STOPPING_HOSTING, then TRAINED once the inference workers have unloaded it."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    mv = model_version_get(project=project, version=version)
    return Status(202, hosting.model_version_stop_hosting(model_version=mv, user=request.auth))


# --- Detection ----------------------------------------------------------------------------------


class Source(Schema):
    Type: Literal["direct"]


class PixelAnomaly(Schema):
    TotalPercentageArea: float = Field(description="Share of the image's pixels, a fraction from 0 to 1.")
    Color: str = Field(description="This class's colour in AnomalyMask, #RRGGBB.")


class Anomaly(Schema):
    Name: str = Field(
        description='"background" (always first); then, for a segmentation model, every anomaly class it knows '
        '(areas summing to 1 with the background), or for a classification model "anomaly" when the mask has '
        "defect pixels."
    )
    PixelAnomaly: PixelAnomaly


class DetectAnomalyResult(Schema):
    Source: Source
    IsAnomalous: bool
    Confidence: float = Field(description="Confidence in IsAnomalous, 0 to 1.")
    AnomalyMask: str = Field(description="Base64 PNG of the image's size, each pixel coloured by its class.")
    Anomalies: list[Anomaly]
    UnlikeTrainingPhotos: bool | None = Field(
        description="Kenpin's addition: true when the photo's size, proportions, brightness or content is far "
        "from the photos the model was trained on, so that the verdict may not apply; null when the model "
        "cannot tell (trained before Kenpin measured its photos)."
    )
    UnlikeTrainingPhotosReason: str = Field(description="Kenpin's addition: what differs, in words; empty if nothing.")


class DetectOut(Schema):
    DetectAnomalyResult: DetectAnomalyResult


DETECT_DOC = {
    "requestBody": {
        "required": True,
        "description": "The image's bytes, as the whole body.",
        "content": {kind: {"schema": {"type": "string", "format": "binary"}} for kind in ("image/jpeg", "image/png")},
    }
}


def _detect(request, response: HttpResponse, name: str, version: int) -> dict:
    stages = Stages()
    # Viewers may detect: it reads the model and changes nothing in the project.
    project = project_get_for_user(user=request.auth, name=name)
    mv = model_version_get(project=project, version=version)
    # Refused from its declared length, before the body is read.
    check_upload_length(int(request.META.get("CONTENT_LENGTH") or 0))
    stages.mark("access")
    data = request.read()
    stages.mark("body")
    found = detection.model_version_detect(model_version=mv, data=data)
    # The inference worker's share of the call, then each stage, for whoever measures where the
    # time goes (scripts/detect_bench.py).
    response["Server-Timing"] = server_timing(
        {"inference": found.inference_ms, **found.stages, "access": stages.ms["access"], "body": stages.ms["body"]}
    )
    return {"DetectAnomalyResult": _detect_result(found)}


def _detect_result(found: detection.Detection) -> dict:
    result = lfv.detect_anomalies_response(found)["DetectAnomalyResult"]
    # Beside Lookout for Vision's fields (its own path, lookout.api, answers exactly as AWS does).
    result["UnlikeTrainingPhotos"] = found.unlike
    result["UnlikeTrainingPhotosReason"] = found.unlike_message
    return result


@router.post(
    "/{name}/models/{version}/detect",
    response=DetectOut,
    openapi_extra=DETECT_DOC,
    summary="Detect anomalies in one image (DetectAnomalies)",
)
def detect(request, response: HttpResponse, name: str, version: int):
    """Send the image as the raw body with `Content-Type: image/jpeg` or `image/png`. The model
    must be HOSTED (409 `not_hosted` otherwise); an unreadable image answers 400. The
    `Server-Timing` header says how long the inference worker took (`inference;dur=` ms)."""
    return _detect(request, response, name, version)


class PhotoError(Schema):
    error: str = Field(description="A stable code: not_an_image, corrupt, too_small, too_large, empty...")
    message: str = Field(description="What is wrong with this photo, for people.")


_OneResult = DetectAnomalyResult  # the field below, named as LFV names it, hides the class's name


class DetectBatchResult(Schema):
    File: str = Field(description="The part's file name, as sent.")
    DetectAnomalyResult: _OneResult | None = Field(description="As DetectAnomalies answers; null on error.")
    Error: PhotoError | None = Field(description="Why this photo could not be used; null when it was detected.")


class DetectBatchOut(Schema):
    Results: list[DetectBatchResult] = Field(description="One per photo, in the order of the request's parts.")


@router.post(
    "/{name}/models/{version}/detect-batch",
    response=DetectBatchOut,
    summary="Detect anomalies in several photos at once",
)
def detect_batch(request, response: HttpResponse, name: str, version: int, files: File[list[UploadedFile]]):
    """Multipart: up to 16 photos, each a part named `files` (a product shot from several sides).
    The answers come in the parts' order, each DetectAnomalies' result for its photo, or its
    error (`not_an_image`, `too_large`...) when that photo cannot be used; the others are still
    answered. A model that is not HOSTED answers 409 for the whole request, more than 16 photos
    400 `too_many_files`, no inference worker in time 503. Viewers may detect."""
    stages = Stages()
    project = project_get_for_user(user=request.auth, name=name)
    mv = model_version_get(project=project, version=version)
    stages.mark("access")
    detection.check_batch_size(len(files))  # before any photo is read
    images, errors = [], {}
    for n, upload in enumerate(files):
        try:
            images.append(upload_read(file=upload))
        except TooLarge as exc:  # answered in its place, not read
            images.append(b"")
            errors[n] = exc
    stages.mark("body")
    answers = detection.model_version_detect_batch(model_version=mv, images=images)
    results = []
    for n, (upload, found) in enumerate(zip(files, answers)):
        found = errors.get(n, found)
        if isinstance(found, KenpinError):
            results.append({"File": upload.name or "", "DetectAnomalyResult": None, "Error": _photo_error(found)})
        else:
            results.append({"File": upload.name or "", "DetectAnomalyResult": _detect_result(found), "Error": None})
    response["Server-Timing"] = server_timing({"access": stages.ms["access"], "body": stages.ms["body"]})
    return {"Results": results}


def _photo_error(exc: KenpinError) -> dict:
    return {"error": exc.code, "message": exc.message}


# --- Trial detections ---------------------------------------------------------------------------


class RejectedFile(Schema):
    name: str
    reason: str


class TrialOut(Schema):
    id: int
    name: str
    model_version: int
    threshold: float
    status: Literal["QUEUED", "RUNNING", "COMPLETED", "FAILED"]
    status_message: str
    progress: int = Field(description="0-100")
    image_count: int
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None

    @staticmethod
    def resolve_model_version(trial: TrialDetection) -> int:
        return trial.model_version.version

    @staticmethod
    def resolve_image_count(trial: TrialDetection) -> int:
        return trial.images.count()


class TrialCreatedOut(TrialOut):
    rejected: list[RejectedFile] = Field(description="Uploaded files left out of the trial, and why.")


class TrialImageOut(Schema):
    id: int
    name: str
    image_id: int | None = Field(description="The project image, when the trial used one.")
    width: int
    height: int
    is_anomalous: bool | None = Field(description="null until predicted.")
    confidence: float | None
    score: float | None
    anomalous_fraction: float | None
    error: str = Field(description="Why this image could not be predicted; empty when it was.")
    unlike: bool | None = Field(
        description="Unlike the photos the model was trained on (size, proportions, brightness or content): its "
        "verdict may not apply. null until predicted, or when the model cannot tell."
    )
    unlike_message: str = Field(description="What differs, in words; empty if nothing.")
    verdict: Literal["unverified", "correct", "incorrect"]
    verified_label: Literal["normal", "anomaly"] | None
    added_to_dataset: bool

    @staticmethod
    def resolve_name(row: TrialImage) -> str:
        return row.original_name


class VerdictIn(Schema):
    verdict: Literal["unverified", "correct", "incorrect"] = Field(
        description="Was the prediction right? `incorrect` gives the image the opposite label when added."
    )


class AddToDatasetIn(Schema):
    dataset: DatasetName = "train"


class AddReportOut(Schema):
    added: int = Field(description="Uploaded images added to the dataset with their verified label.")
    relabeled: int = Field(description="Project images (or duplicates of them) given their verified label.")
    skipped: list[RejectedFile]


@trials_router.post("/{name}/trials", response={202: TrialCreatedOut}, summary="Run a trial detection")
def create_trial(
    request,
    name: str,
    model_version: Form[int],
    trial_name: Form[str] = "",
    files: File[list[UploadedFile]] = None,
    image_ids: Form[list[int]] = None,
):
    """Multipart: `model_version`, any number of `files` (new images) and/or `image_ids`
    (the project's images), optional `trial_name`. Runs in the background; poll
    GET …/trials/{id}, then read …/trials/{id}/images."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    try:
        mv = model_version_get(project=project, version=model_version)
    except Http404:
        # The project exists; a version named in the body that it lacks is a bad field, not a missing page.
        raise Invalid(
            f"The project has no model version {model_version}; give the number of one of its versions.",
            code="unknown_model_version",
        ) from None
    uploads = [trials.TrialUpload(name=f.name or "", data=upload_read(file=f)) for f in files or ()]
    created = trials.trial_create(
        project=project,
        model_version=mv,
        user=request.auth,
        name=trial_name,
        uploads=uploads,
        image_ids=image_ids or (),
    )
    trial = created.trial
    trial.rejected = [{"name": n, "reason": r} for n, r in created.rejected]  # rendered beside the row's fields
    return Status(202, trial)


@trials_router.get("/{name}/trials", response=list[TrialOut], summary="List trial detections")
def list_trials(request, name: str):
    project = project_get_for_user(user=request.auth, name=name)
    return trial_list(project=project)


@trials_router.get("/{name}/trials/{trial_id}", response=TrialOut, summary="Get a trial's status and progress")
def get_trial(request, name: str, trial_id: int):
    project = project_get_for_user(user=request.auth, name=name)
    return trial_get(project=project, trial_id=trial_id)


@trials_router.get(
    "/{name}/trials/{trial_id}/images", response=list[TrialImageOut], summary="A trial's per-image results (paged)"
)
@paginate(BoundedPageNumberPagination, page_size=100, max_page_size=1000)
def list_trial_images(request, name: str, trial_id: int):
    project = project_get_for_user(user=request.auth, name=name)
    return trial_images(trial=trial_get(project=project, trial_id=trial_id))


@trials_router.get(
    "/{name}/trials/{trial_id}/images/{trial_image_id}/{kind}",
    summary="Download a trial image's photo, thumbnail or heatmap",
    openapi_extra={
        "responses": {
            200: {
                "description": "file: the photo as uploaded; thumbnail: a JPEG at most 320 px; heatmap: an RGBA "
                "PNG of the photo's size (404 until predicted).",
                "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    },
)
def get_trial_image_file(
    request, name: str, trial_id: int, trial_image_id: int, kind: Literal["file", "thumbnail", "heatmap"]
):
    project = project_get_for_user(user=request.auth, name=name)
    row = trial_image_get(trial=trial_get(project=project, trial_id=trial_id), trial_image_id=trial_image_id)
    return storage_file_response(trial_image_file(trial_image=row, kind=kind))


@trials_router.patch(
    "/{name}/trials/{trial_id}/images/{trial_image_id}", response=TrialImageOut, summary="Set a prediction's verdict"
)
def set_verdict(request, name: str, trial_id: int, trial_image_id: int, payload: VerdictIn):
    project = project_get_for_user(user=request.auth, name=name, write=True)
    row = trial_image_get(trial=trial_get(project=project, trial_id=trial_id), trial_image_id=trial_image_id)
    return trials.trial_image_set_verdict(trial_image=row, verdict=payload.verdict, user=request.auth)


@trials_router.post(
    "/{name}/trials/{trial_id}/add-to-dataset", response=AddReportOut, summary="Add the verified images to a dataset"
)
def add_to_dataset(request, name: str, trial_id: int, payload: AddToDatasetIn):
    """Each verified image goes in with its verified label (images already added are skipped,
    so calling this twice adds nothing twice)."""
    project = project_get_for_user(user=request.auth, name=name, write=True)
    trial = trial_get(project=project, trial_id=trial_id)
    report = trials.trial_add_verified_to_dataset(trial=trial, user=request.auth, split=payload.dataset)
    return {
        "added": report.added,
        "relabeled": report.relabeled,
        "skipped": [{"name": n, "reason": r} for n, r in report.skipped],
    }


@trials_router.delete("/{name}/trials/{trial_id}", response={204: None}, summary="Delete a trial detection")
def delete_trial(request, name: str, trial_id: int):
    project = project_get_for_user(user=request.auth, name=name, write=True)
    trials.trial_delete(trial=trial_get(project=project, trial_id=trial_id), user=request.auth)
    return Status(204, None)

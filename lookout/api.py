"""Amazon Lookout for Vision's API (version 2020-11-20) at its own REST paths: the 22 operations,
with the request and response shapes of its service model, SigV4 or bearer-token authentication
and AWS's error format, so that `boto3.client("lookoutvision", endpoint_url=KENPIN)` and
`aws lookoutvision --endpoint-url KENPIN` work unchanged.

Each operation parses (lookout.shapes, against the model), calls services and selectors of the
apps that own the rules, and answers in the operation's output shape. Plain Django views, not
the v1 API's ninja: the signature covers the raw path, query and body, and errors follow AWS's
format rather than Kenpin's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import path, re_path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from core.errors import Conflict, Invalid, KenpinError, TooLarge, Unavailable
from core.uploads import check_upload_length
from inference.detection import model_version_detect
from inference.hosting import model_version_start_hosting, model_version_stop_hosting
from inference.hosting import project_delete as project_delete_with_hosting
from inference.lfv import detect_anomalies_response
from lookout import arns, selectors, services, shapes, sigv4
from lookout.errors import (
    DATASET,
    MODEL,
    PROJECT,
    AccessDeniedException,
    AuthenticationError,
    ConflictException,
    InternalServerException,
    LookoutError,
    ResourceNotFoundException,
    UnknownOperation,
    ValidationException,
    error_response,
)
from lookout.models import ModelOptions
from lookout.pagination import paginate
from projects.models import Project
from projects.projects import project_create
from projects.selectors import dataset_counts, project_get_for_user, project_list_for_user
from projects.tokens import api_token_authenticate
from training.models import ModelVersion, Status
from training.selectors import model_version_performance
from training.services import model_version_delete, model_version_start_training

logger = logging.getLogger(__name__)

SERVICE = "lookoutvision"
PREFIX = "/2020-11-20/"
JSON_LIMIT = 16 * 1024 * 1024  # UpdateDatasetEntries' 10 MB of lines, base64-encoded, and then some


@dataclass
class Call:
    request: HttpRequest
    user: object
    region: str
    operation: str
    input: dict


# --- Authentication ---------------------------------------------------------------------------------


def _signed_path(request: HttpRequest) -> str:
    """The path as the client sent it, percent-encoding and all, which the signature covers.

    gunicorn passes the request line as received (RAW_URI); other servers give only the
    decoded path, which is encoded again as the AWS SDKs encode each URI label: a tag call's
    ARN is one label, so its slashes and colons were sent encoded.
    """
    raw = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    if raw:
        return urlsplit(raw).path
    path = request.path
    tags = PREFIX + "tags/"
    if path.startswith(tags):
        return tags + quote(path[len(tags) :], safe="-_.~")
    return "/".join(quote(segment, safe="-_.~") for segment in path.split("/"))


def _default_region() -> str:
    return getattr(settings, "KENPIN_AWS_REGION", "us-east-1")


def authenticate(request: HttpRequest, headers: dict[str, str], body: bytes):
    """(user, region) of the caller: a SigV4 signature by an access key, or a bearer token."""
    authorization = headers.get("authorization", "")
    if authorization.startswith("Bearer "):
        user = api_token_authenticate(token=authorization[len("Bearer ") :].strip())
        if user is None:
            raise AuthenticationError(
                "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        return user, _default_region()
    try:
        claimed = sigv4.parse_authorization(headers, service=SERVICE)
        found = services.access_key_authenticate(access_key_id=claimed.access_key_id)
        if found is None:
            raise AuthenticationError(
                "UnrecognizedClientException",
                "The security token included in the request is invalid: the access key is unknown or its API "
                "token was revoked.",
            )
        user, secret = found
        sigv4.verify_signature(
            authorization=claimed,
            secret=secret,
            method=request.method,
            path=_signed_path(request),
            query_string=request.META.get("QUERY_STRING", ""),
            headers=headers,
            body=body,
            now=timezone.now(),
        )
    except sigv4.SignatureError as exc:
        raise AuthenticationError(exc.code, exc.message) from None
    return user, claimed.region


# --- Dispatch ---------------------------------------------------------------------------------------


def _read_body(request: HttpRequest, operation: str) -> bytes:
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if operation == "DetectAnomalies":
        check_upload_length(length)
    elif length > JSON_LIMIT:
        raise ValidationException(f"The request body is {length} bytes; at most {JSON_LIMIT} are accepted.")
    # read(), not .body: Django's DATA_UPLOAD_MAX_MEMORY_SIZE is for form posts, and the limits
    # above are this API's own.
    return request.read()


def _kenpin_error(exc: KenpinError, *, resource_id: str = "", resource_type: str = "") -> LookoutError:
    where = {"resource_id": resource_id, "resource_type": resource_type}
    if isinstance(exc, Conflict):
        return ConflictException(exc.message, **where)
    if isinstance(exc, Unavailable):
        return InternalServerException(exc.message, retry_after=5)
    if isinstance(exc, (Invalid, TooLarge)):
        return ValidationException(exc.message)
    return ValidationException(exc.message)


def endpoint(routes: dict[str, tuple[str, Callable]]):
    """The view of one path: each HTTP method is one operation."""

    @csrf_exempt
    @login_not_required
    def view(request: HttpRequest, **uri):
        try:
            route = routes.get(request.method)
            if route is None:
                raise UnknownOperation(f"No Lookout for Vision operation is {request.method} {request.path}.")
            operation, handler = route
            body = _read_body(request, operation)
            headers = {name.lower(): value for name, value in request.headers.items()}
            user, region = authenticate(request, headers, body)
            query = parse_qs(request.META.get("QUERY_STRING", ""), keep_blank_values=True)
            try:
                values = shapes.parse_input(
                    operation, shapes.RawRequest(uri=uri, query=query, headers=headers, body=body)
                )
            except shapes.ShapeError as exc:
                raise ValidationException(exc.message) from None
            call = Call(request=request, user=user, region=region, operation=operation, input=values)
            default_status = shapes.operation(operation)["http"].get("responseCode", 200)

            def run():
                return default_status, shapes.render_output(operation, handler(call))

            client_token = values.get("ClientToken")
            if client_token:
                parameters = {k: v for k, v in values.items() if k != "ClientToken"}
                status, output = services.idempotent_call(
                    user=user, operation=operation, client_token=client_token, parameters=parameters, run=run
                )
            else:
                status, output = run()
            return JsonResponse(output, status=status)
        except LookoutError as exc:
            return error_response(exc)
        except KenpinError as exc:
            return error_response(_kenpin_error(exc))
        except PermissionDenied as exc:
            return error_response(AccessDeniedException(str(exc) or "You may not do this in this project."))
        except Http404:
            return error_response(ResourceNotFoundException("The resource does not exist, or you may not see it."))
        except Exception:
            logger.exception("Lookout for Vision call %s %s failed", request.method, request.path)
            return error_response(
                InternalServerException(
                    "Kenpin failed to answer because of an internal error, which it logged. Try again; if it fails "
                    "again, report it with the web server's log."
                )
            )

    return view


@csrf_exempt
@login_not_required
def unknown(request, rest=""):
    return error_response(UnknownOperation(f"No Lookout for Vision operation is {request.method} {request.path}."))


# --- Shared lookups ---------------------------------------------------------------------------------


def _project(call: Call, *, write: bool = False, owner: bool = False) -> Project:
    name = call.input["ProjectName"]
    try:
        return project_get_for_user(user=call.user, name=name, write=write, owner=owner)
    except Http404:
        raise ResourceNotFoundException(
            f"The project {name} does not exist, or your access key may not see it.",
            resource_id=name,
            resource_type=PROJECT,
        ) from None
    except PermissionDenied as exc:
        raise AccessDeniedException(str(exc)) from None


def _model(call: Call, project: Project) -> ModelVersion:
    return selectors.model_version_resolve(project=project, version=call.input["ModelVersion"])


def _project_metadata(call: Call, project: Project) -> dict:
    return {
        "ProjectArn": arns.project_arn(region=call.region, project=project.name),
        "ProjectName": project.name,
        "CreationTimestamp": project.created_at,
    }


LFV_STATUS = {Status.QUEUED: Status.TRAINING}  # Lookout for Vision had no queue: a queued model is training


def _performance(mv: ModelVersion) -> dict | None:
    performance = model_version_performance(model_version=mv)
    if performance is None:
        return None
    return {"F1Score": performance["f1"], "Recall": performance["recall"], "Precision": performance["precision"]}


def _model_metadata(call: Call, mv: ModelVersion) -> dict:
    return {
        "CreationTimestamp": mv.created_at,
        "ModelVersion": str(mv.version),
        "ModelArn": arns.model_arn(region=call.region, project=mv.project.name, version=mv.version),
        "Description": mv.description or None,
        "Status": LFV_STATUS.get(mv.status, mv.status),
        "StatusMessage": mv.status_message,
        "Performance": _performance(mv),
    }


# --- Projects -------------------------------------------------------------------------------------


def create_project(call: Call) -> dict:
    try:
        project = project_create(user=call.user, name=call.input["ProjectName"])
    except Conflict as exc:
        raise ConflictException(exc.message, resource_id=call.input["ProjectName"], resource_type=PROJECT) from None
    return {"ProjectMetadata": _project_metadata(call, project)}


def describe_project(call: Call) -> dict:
    project = _project(call)
    datasets = [
        {
            "DatasetType": view.split,
            "CreationTimestamp": view.created_at,
            "Status": view.status,
            "StatusMessage": view.status_message,
        }
        for view in selectors.dataset_views(project=project).values()
    ]
    return {"ProjectDescription": {**_project_metadata(call, project), "Datasets": datasets}}


def list_projects(call: Call) -> dict:
    page, token = paginate(
        project_list_for_user(user=call.user),
        key="name",
        next_token=call.input.get("NextToken"),
        max_results=call.input.get("MaxResults"),
    )
    return {"Projects": [_project_metadata(call, p) for p in page], "NextToken": token}


def delete_project(call: Call) -> dict:
    project = _project(call, owner=True)
    arn = arns.project_arn(region=call.region, project=project.name)
    project_delete_with_hosting(project=project)
    return {"ProjectArn": arn}


# --- Datasets -------------------------------------------------------------------------------------


def create_dataset(call: Call) -> dict:
    project = _project(call, write=True)
    split = call.input["DatasetType"]
    s3_object = call.input.get("DatasetSource", {}).get("GroundTruthManifest", {}).get("S3Object")
    uri = f"s3://{s3_object['Bucket']}/{s3_object['Key']}" if s3_object else ""
    job = services.dataset_create(
        project=project,
        split=split,
        user=call.user,
        manifest_s3_uri=uri,
        exists=split in selectors.dataset_views(project=project),
    )
    return {
        "DatasetMetadata": {
            "DatasetType": split,
            "CreationTimestamp": job.created_at,
            "Status": job.status,
            "StatusMessage": job.status_message,
        }
    }


def describe_dataset(call: Call) -> dict:
    project = _project(call)
    view = selectors.dataset_view_get(project=project, split=call.input["DatasetType"])
    counts = dataset_counts(project=project)[view.split]
    return {
        "DatasetDescription": {
            "ProjectName": project.name,
            "DatasetType": view.split,
            "CreationTimestamp": view.created_at,
            "LastUpdatedTimestamp": view.updated_at,
            "Status": view.status,
            "StatusMessage": view.status_message,
            "ImageStats": {
                "Total": counts.total,
                "Labeled": counts.labeled,
                "Normal": counts.normal,
                "Anomaly": counts.anomaly,
            },
        }
    }


def delete_dataset(call: Call) -> dict:
    project = _project(call, write=True)
    view = selectors.dataset_view_get(project=project, split=call.input["DatasetType"])
    services.dataset_delete(project=project, split=view.split)
    return {}


def list_dataset_entries(call: Call) -> dict:
    project = _project(call)
    view = selectors.dataset_view_get(project=project, split=call.input["DatasetType"])
    images = selectors.dataset_entries(
        project=project,
        split=view.split,
        labeled=call.input.get("Labeled"),
        anomaly_class=call.input.get("AnomalyClass"),
        created_before=call.input.get("BeforeCreationDate"),
        created_after=call.input.get("AfterCreationDate"),
        source_ref_contains=call.input.get("SourceRefContains"),
    )
    page, token = paginate(
        images, key="id", next_token=call.input.get("NextToken"), max_results=call.input.get("MaxResults")
    )
    return {"DatasetEntries": [selectors.image_manifest_line(image=image) for image in page], "NextToken": token}


def update_dataset_entries(call: Call) -> dict:
    project = _project(call, write=True)
    view = selectors.dataset_view_get(project=project, split=call.input["DatasetType"])
    job = services.dataset_update_entries(
        project=project, split=view.split, user=call.user, changes=call.input["Changes"]
    )
    return {"Status": job.status}


# --- Models ---------------------------------------------------------------------------------------


def create_model(call: Call) -> dict:
    project = _project(call, write=True)
    running = selectors.dataset_job_running(project=project)
    if running:
        raise ConflictException(
            f"The {running.split} dataset is still being imported ({running.status}); train once it is complete.",
            resource_id=running.split,
            resource_type=DATASET,
        )
    if not selectors.dataset_views(project=project):
        raise ValidationException(f"The project {project.name} has no dataset: create one with CreateDataset first.")
    try:
        mv = model_version_start_training(
            project=project, user=call.user, description=call.input.get("Description", "")
        )
    except Invalid as exc:
        raise ValidationException(exc.message) from None
    location = call.input["OutputConfig"]["S3Location"]
    services.model_options_set(
        model_version=mv,
        output_bucket=location["Bucket"],
        output_prefix=location.get("Prefix", ""),
        kms_key_id=call.input.get("KmsKeyId", ""),
        evaluation=ModelOptions.Evaluation.PENDING,
    )
    if call.input.get("Tags"):
        services.model_tags_set(model_version=mv, tags={t["Key"]: t["Value"] for t in call.input["Tags"]})
    return {"ModelMetadata": _model_metadata(call, mv)}


def describe_model(call: Call) -> dict:
    project = _project(call)
    mv = _model(call, project)
    options = selectors.model_options(model_version=mv)
    description = _model_metadata(call, mv)
    if options:
        description |= {
            "OutputConfig": {"S3Location": {"Bucket": options.output_bucket, "Prefix": options.output_prefix or None}}
            if options.output_bucket
            else None,
            "KmsKeyId": options.kms_key_id or None,
            "MinInferenceUnits": options.min_inference_units,
            "MaxInferenceUnits": options.max_inference_units,
            "EvaluationManifest": {"Bucket": options.output_bucket, "Key": options.evaluation_manifest_key}
            if options.evaluation_manifest_key
            else None,
            "EvaluationResult": {"Bucket": options.output_bucket, "Key": options.evaluation_result_key}
            if options.evaluation_result_key
            else None,
        }
    description["EvaluationEndTimestamp"] = mv.ended_at if mv.is_usable else None
    if options and options.evaluation == ModelOptions.Evaluation.FAILED:
        description["StatusMessage"] = f"{mv.status_message} {options.evaluation_message}".strip()
    return {"ModelDescription": description}


def list_models(call: Call) -> dict:
    project = _project(call)
    page, token = paginate(
        ModelVersion.objects.filter(project=project).select_related("project"),
        key="version",
        next_token=call.input.get("NextToken"),
        max_results=call.input.get("MaxResults"),
    )
    return {"Models": [_model_metadata(call, mv) for mv in page], "NextToken": token}


def delete_model(call: Call) -> dict:
    project = _project(call, write=True)
    mv = _model(call, project)
    arn = arns.model_arn(region=call.region, project=project.name, version=mv.version)
    try:
        model_version_delete(model_version=mv, user=call.user)
    except Conflict as exc:
        raise ConflictException(exc.message, resource_id=str(mv.version), resource_type=MODEL) from None
    return {"ModelArn": arn}


def start_model(call: Call) -> dict:
    project = _project(call, write=True)
    mv = _model(call, project)
    try:
        mv = model_version_start_hosting(model_version=mv, user=call.user)
    except Conflict as exc:
        raise ConflictException(exc.message, resource_id=str(mv.version), resource_type=MODEL) from None
    services.model_options_set(
        model_version=mv,
        min_inference_units=call.input["MinInferenceUnits"],
        max_inference_units=call.input.get("MaxInferenceUnits"),
    )
    return {"Status": mv.status}


def stop_model(call: Call) -> dict:
    project = _project(call, write=True)
    mv = _model(call, project)
    try:
        mv = model_version_stop_hosting(model_version=mv, user=call.user)
    except Conflict as exc:
        raise ConflictException(exc.message, resource_id=str(mv.version), resource_type=MODEL) from None
    return {"Status": mv.status}


IMAGE_TYPES = ("image/jpeg", "image/png")


def detect_anomalies(call: Call) -> dict:
    project = _project(call)
    mv = _model(call, project)
    content_type = call.input["ContentType"].split(";")[0].strip().lower()
    if content_type not in IMAGE_TYPES:
        raise ValidationException(
            f"ContentType {call.input['ContentType']} is not supported: send image/jpeg or image/png."
        )
    try:
        detection = model_version_detect(model_version=mv, data=call.input.get("Body", b""))
    except Conflict as exc:
        raise ConflictException(exc.message, resource_id=str(mv.version), resource_type=MODEL) from None
    return detect_anomalies_response(detection)


# --- Tags ---------------------------------------------------------------------------------------


def _tagged_model(call: Call, *, write: bool) -> ModelVersion:
    arn = call.input["ResourceArn"]
    parsed = arns.parse_arn(arn)
    if parsed is None or parsed.version is None:
        raise ValidationException(f"{arn} is not the ARN of a Lookout for Vision model (…:model/PROJECT/VERSION).")
    try:
        project = project_get_for_user(user=call.user, name=parsed.project, write=write)
    except Http404:
        raise ResourceNotFoundException(f"No model {arn}.", resource_id=arn, resource_type=MODEL) from None
    except PermissionDenied as exc:
        raise AccessDeniedException(str(exc)) from None
    mv = ModelVersion.objects.filter(project=project, version=parsed.version).first()
    if mv is None:
        raise ResourceNotFoundException(f"No model {arn}.", resource_id=arn, resource_type=MODEL)
    return mv


def tag_resource(call: Call) -> dict:
    mv = _tagged_model(call, write=True)
    services.model_tags_set(model_version=mv, tags={t["Key"]: t["Value"] for t in call.input["Tags"]})
    return {}


def untag_resource(call: Call) -> dict:
    mv = _tagged_model(call, write=True)
    services.model_tags_remove(model_version=mv, keys_=call.input["TagKeys"])
    return {}


def list_tags_for_resource(call: Call) -> dict:
    return {"Tags": selectors.model_tags(model_version=_tagged_model(call, write=False))}


# --- Model packaging ------------------------------------------------------------------------------


def start_model_packaging_job(call: Call) -> dict:
    project = _project(call, write=True)
    mv = _model(call, project)
    job = services.packaging_job_start(
        project=project,
        model_version=mv,
        user=call.user,
        name=call.input.get("JobName", ""),
        description=call.input.get("Description", ""),
        configuration=call.input["Configuration"],
    )
    return {"JobName": job.name}


def _packaging_output(job) -> dict:
    greengrass = job.configuration.get("Greengrass", {})
    return {
        "Greengrass": {
            "ComponentName": greengrass.get("ComponentName"),
            "ComponentVersion": greengrass.get("ComponentVersion"),
        }
    }


def describe_model_packaging_job(call: Call) -> dict:
    project = _project(call)
    job = selectors.packaging_job_get(project=project, name=call.input["JobName"])
    return {
        "ModelPackagingDescription": {
            "JobName": job.name,
            "ProjectName": project.name,
            "ModelVersion": str(job.model_version.version),
            "ModelPackagingConfiguration": job.configuration,
            "ModelPackagingJobDescription": job.description or None,
            "ModelPackagingMethod": "Kenpin",
            "ModelPackagingOutputDetails": _packaging_output(job),
            "Status": job.status,
            "StatusMessage": job.status_message,
            "CreationTimestamp": job.created_at,
            "LastUpdatedTimestamp": job.updated_at,
        }
    }


def list_model_packaging_jobs(call: Call) -> dict:
    project = _project(call)
    page, token = paginate(
        selectors.packaging_job_list(project=project),
        key="id",
        next_token=call.input.get("NextToken"),
        max_results=call.input.get("MaxResults"),
    )
    return {
        "ModelPackagingJobs": [
            {
                "JobName": job.name,
                "ProjectName": project.name,
                "ModelVersion": str(job.model_version.version),
                "ModelPackagingJobDescription": job.description or None,
                "ModelPackagingMethod": "Kenpin",
                "Status": job.status,
                "StatusMessage": job.status_message,
                "CreationTimestamp": job.created_at,
                "LastUpdatedTimestamp": job.updated_at,
            }
            for job in page
        ],
        "NextToken": token,
    }


ROUTES: list[tuple[str, dict[str, tuple[str, Callable]]]] = [
    ("projects", {"GET": ("ListProjects", list_projects), "POST": ("CreateProject", create_project)}),
    (
        "projects/<str:projectName>",
        {"GET": ("DescribeProject", describe_project), "DELETE": ("DeleteProject", delete_project)},
    ),
    ("projects/<str:projectName>/datasets", {"POST": ("CreateDataset", create_dataset)}),
    (
        "projects/<str:projectName>/datasets/<str:datasetType>",
        {"GET": ("DescribeDataset", describe_dataset), "DELETE": ("DeleteDataset", delete_dataset)},
    ),
    (
        "projects/<str:projectName>/datasets/<str:datasetType>/entries",
        {
            "GET": ("ListDatasetEntries", list_dataset_entries),
            "PATCH": ("UpdateDatasetEntries", update_dataset_entries),
        },
    ),
    ("projects/<str:projectName>/models", {"GET": ("ListModels", list_models), "POST": ("CreateModel", create_model)}),
    (
        "projects/<str:projectName>/models/<str:modelVersion>",
        {"GET": ("DescribeModel", describe_model), "DELETE": ("DeleteModel", delete_model)},
    ),
    ("projects/<str:projectName>/models/<str:modelVersion>/detect", {"POST": ("DetectAnomalies", detect_anomalies)}),
    ("projects/<str:projectName>/models/<str:modelVersion>/start", {"POST": ("StartModel", start_model)}),
    ("projects/<str:projectName>/models/<str:modelVersion>/stop", {"POST": ("StopModel", stop_model)}),
    (
        "projects/<str:projectName>/modelpackagingjobs",
        {
            "GET": ("ListModelPackagingJobs", list_model_packaging_jobs),
            "POST": ("StartModelPackagingJob", start_model_packaging_job),
        },
    ),
    (
        "projects/<str:projectName>/modelpackagingjobs/<str:jobName>",
        {"GET": ("DescribeModelPackagingJob", describe_model_packaging_job)},
    ),
    (
        "tags/<path:resourceArn>",
        {
            "GET": ("ListTagsForResource", list_tags_for_resource),
            "POST": ("TagResource", tag_resource),
            "DELETE": ("UntagResource", untag_resource),
        },
    ),
]


def urlpatterns() -> list:
    """The API's URL patterns, included at /2020-11-20/ by console/urls.py."""
    patterns = [path(route, endpoint(routes)) for route, routes in ROUTES]
    # Anything else under the prefix answers in AWS's error format too.
    return [*patterns, re_path(r"^.*$", unknown)]

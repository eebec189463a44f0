"""Writes for the Lookout for Vision API and the console's import, export and packaging pages.

Every rule about projects, images, training and hosting stays in the app that owns it: these
services translate Lookout for Vision's operations into calls of those services, and keep only
what Lookout for Vision has and Kenpin does not (dataset jobs, source references, tags, model
options, packaging jobs, ClientToken answers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import Conflict, Invalid
from lookout import keys
from lookout.errors import MODEL, MODEL_PACKAGE_JOB, ConflictException, ServiceQuotaExceededException
from lookout.importer import manifest_store
from lookout.manifests import split_s3_uri
from lookout.models import (
    IN_PROGRESS,
    AccessKey,
    DatasetJob,
    DatasetStatus,
    IdempotentRequest,
    ModelOptions,
    ModelTag,
    PackagingJob,
)
from lookout.selectors import dataset_views
from lookout.tasks import run_dataset_job, run_packaging_job
from projects.images import dataset_delete_test, dataset_get_or_create, images_delete
from projects.models import ApiToken, Image, Project, Split
from training.models import ModelVersion

logger = logging.getLogger(__name__)

# --- Access keys ----------------------------------------------------------------------------------


def access_key_create(*, token: ApiToken) -> tuple[AccessKey, str]:
    """Give an API token its AWS-style access key. Returns the row and the secret, shown once."""
    secret = keys.new_secret()
    for _ in range(5):
        access_key_id = keys.new_access_key_id()
        try:
            with transaction.atomic():
                row = AccessKey.objects.create(
                    token=token,
                    access_key_id=access_key_id,
                    secret_ciphertext=keys.seal(secret, access_key_id=access_key_id),
                )
            return row, secret
        except IntegrityError:
            if AccessKey.objects.filter(token=token).exists():
                raise Conflict("This token already has an access key.", code="has_access_key") from None
    raise RuntimeError("could not draw an unused access key id")  # 80 random bits: never in practice


def access_key_authenticate(*, access_key_id: str):
    """(user, secret) of an active access key, or None. Records when its token was last used.

    An unknown key, a revoked token, an inactive user and a secret that no current server key
    opens all answer None: the caller says the same to each (UnrecognizedClientException).
    """
    row = AccessKey.objects.select_related("token__user").filter(access_key_id=access_key_id).first()
    if row is None or row.token.revoked_at is not None or not row.token.user.is_active:
        return None
    secret = keys.open_sealed(row.secret_ciphertext, access_key_id=row.access_key_id)
    if secret is None:
        logger.warning(
            "the secret of access key %s cannot be opened: the server key was rotated without keeping the old "
            "one in the fallbacks; its owner must create a new token",
            row.access_key_id,
        )
        return None
    now = timezone.now()
    if row.token.last_used_at is None or (now - row.token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=row.token_id).update(last_used_at=now)
    return row.token.user, secret


# --- ClientToken idempotency ------------------------------------------------------------------------

IDEMPOTENCY_WINDOW = timedelta(hours=24)


def idempotent_call(
    *, user, operation: str, client_token: str, parameters: dict, run: Callable[[], tuple[int, dict]]
) -> tuple[int, dict]:
    """Run `run` once per (user, operation, ClientToken): a repeat gets the first answer again.

    The SDKs send a ClientToken with each creating call and keep it across their retries, so a
    retried call whose first try succeeded (its answer lost on the way) changes nothing twice.
    The same token with other parameters is a ConflictException, as in AWS. A call that failed
    leaves no trace, so that it can be retried with the same token.
    """
    digest = hashlib.sha256(json.dumps(parameters, sort_keys=True, default=str).encode()).hexdigest()
    IdempotentRequest.objects.filter(user=user, created_at__lt=timezone.now() - IDEMPOTENCY_WINDOW).delete()
    try:
        with transaction.atomic():
            row = IdempotentRequest.objects.create(
                user=user, operation=operation, client_token=client_token, request_hash=digest
            )
    except IntegrityError:
        first = IdempotentRequest.objects.get(user=user, operation=operation, client_token=client_token)
        if first.request_hash != digest:
            raise ConflictException(
                f"The ClientToken {client_token} was already used for a {operation} call with other parameters. "
                "Use a new ClientToken for a new request."
            ) from None
        if first.status is None:
            raise ConflictException(
                f"A {operation} call with the ClientToken {client_token} is still running; try again shortly."
            ) from None
        return first.status, first.response
    try:
        status, response = run()
    except BaseException:
        IdempotentRequest.objects.filter(pk=row.pk).delete()
        raise
    IdempotentRequest.objects.filter(pk=row.pk).update(status=status, response=response)
    return status, response


# --- Datasets -------------------------------------------------------------------------------------


def _refuse_while_importing(project: Project) -> None:
    job = DatasetJob.objects.filter(project=project, status__in=IN_PROGRESS).first()
    if job:
        raise ConflictException(
            f"The {job.split} dataset of {project.name} is being imported or updated ({job.status}); "
            "wait until DescribeDataset says CREATE_COMPLETE or UPDATE_COMPLETE.",
            resource_id=job.split,
            resource_type="DATASET",
        )


def dataset_create(
    *,
    project: Project,
    split: str,
    user,
    manifest_s3_uri: str = "",
    manifest: bytes | None = None,
    images_zip=None,
    exists: bool = False,
) -> DatasetJob:
    """Create a dataset (CreateDataset) and queue the import of its manifest, if one is given.

    `manifest_s3_uri` names a Ground Truth manifest on S3 (read by the worker, with the server's
    AWS credentials); `manifest` is one given directly (the console's import), with optionally
    a zip of the images it names. `exists` says whether Lookout for Vision would see the
    dataset already (ConflictException). Without a manifest the dataset is empty and complete.
    """
    if exists:
        raise ConflictException(
            f"The project {project.name} already has a {split} dataset. Delete it first, or add images with "
            "UpdateDatasetEntries.",
            resource_id=split,
            resource_type="DATASET",
        )
    _refuse_while_importing(project)
    if split == Split.TEST:
        dataset_get_or_create(project=project, split=Split.TEST)
    has_source = bool(manifest_s3_uri or manifest is not None)
    stored = []
    try:
        job = DatasetJob(
            project=project,
            split=split,
            kind=DatasetJob.Kind.CREATE,
            status=DatasetStatus.CREATE_IN_PROGRESS if has_source else DatasetStatus.CREATE_COMPLETE,
            status_message="Waiting for a worker to import the manifest." if has_source else "",
            source=manifest_s3_uri,
            created_by=user,
        )
        if not has_source:
            job.ended_at = timezone.now()
        if manifest is not None:
            job.manifest = manifest_store(project, manifest)
            stored.append(job.manifest.name)
        if images_zip is not None:
            job.images_zip = default_storage.save(f"projects/{project.pk}/imports/{uuid.uuid4().hex}.zip", images_zip)
            stored.append(job.images_zip.name)
        job.save()
    except BaseException:
        for name in stored:
            default_storage.delete(name)
        raise
    if has_source:
        _enqueue_import(job)
    return job


def dataset_import(
    *, project: Project, split: str, user, manifest: bytes | None = None, manifest_s3_uri: str = "", images_zip=None
) -> DatasetJob:
    """The console's import: a manifest (with a zip of the images it names) or an s3:// manifest,
    into a dataset that may already hold images (then its lines update those they name)."""
    if manifest is None and not manifest_s3_uri:
        raise Invalid("Give a manifest file, or the s3:// URI of one.", code="no_manifest")
    if manifest_s3_uri and split_s3_uri(manifest_s3_uri) is None:
        raise Invalid(f"{manifest_s3_uri} is not an s3://bucket/key URI.", code="invalid_uri")
    if split not in dataset_views(project=project):
        return dataset_create(
            project=project,
            split=split,
            user=user,
            manifest=manifest,
            manifest_s3_uri=manifest_s3_uri,
            images_zip=images_zip,
        )
    _refuse_while_importing(project)
    stored = []
    try:
        job = DatasetJob(
            project=project,
            split=split,
            kind=DatasetJob.Kind.UPDATE,
            status=DatasetStatus.UPDATE_IN_PROGRESS,
            status_message="Waiting for a worker to import the manifest.",
            source=manifest_s3_uri,
            created_by=user,
        )
        if manifest is not None:
            job.manifest = manifest_store(project, manifest)
            stored.append(job.manifest.name)
        if images_zip is not None:
            job.images_zip = default_storage.save(f"projects/{project.pk}/imports/{uuid.uuid4().hex}.zip", images_zip)
            stored.append(job.images_zip.name)
        job.save()
    except BaseException:
        for name in stored:
            default_storage.delete(name)
        raise
    _enqueue_import(job)
    return job


def dataset_update_entries(*, project: Project, split: str, user, changes: bytes) -> DatasetJob:
    """UpdateDatasetEntries: add the lines' images to the dataset, or relabel those it has."""
    _refuse_while_importing(project)
    job = DatasetJob.objects.create(
        project=project,
        split=split,
        kind=DatasetJob.Kind.UPDATE,
        status=DatasetStatus.UPDATE_IN_PROGRESS,
        status_message="Waiting for a worker to apply the changes.",
        manifest=manifest_store(project, changes),
        created_by=user,
    )
    _enqueue_import(job)
    return job


def _enqueue_import(job: DatasetJob) -> None:
    transaction.on_commit(lambda: run_dataset_job.delay(job.pk))


def dataset_delete(*, project: Project, split: str) -> None:
    """DeleteDataset: the dataset's images go (Kenpin keeps no image outside a dataset); the
    test dataset itself goes too, and the project is a single-dataset project again."""
    _refuse_while_importing(project)
    with transaction.atomic():
        ids = list(Image.objects.filter(project=project, dataset__split=split).values_list("pk", flat=True))
        images_delete(project=project, image_ids=ids)
        if split == Split.TEST:
            dataset_delete_test(project=project)
        names = [job.manifest.name for job in DatasetJob.objects.filter(project=project, split=split)]
        names += [job.images_zip.name for job in DatasetJob.objects.filter(project=project, split=split)]
        DatasetJob.objects.filter(project=project, split=split).delete()
        transaction.on_commit(lambda: [default_storage.delete(n) for n in names if n])


# --- Models -------------------------------------------------------------------------------------

MAX_TAGS = 200


def model_options_set(*, model_version: ModelVersion, **fields) -> ModelOptions:
    options, _ = ModelOptions.objects.get_or_create(model_version=model_version)
    for name, value in fields.items():
        setattr(options, name, value)
    options.save()
    return options


def model_tags_set(*, model_version: ModelVersion, tags: dict[str, str]) -> None:
    """Add or change tags (TagResource); at most MAX_TAGS per model, as in AWS."""
    with transaction.atomic():
        existing = set(ModelTag.objects.filter(model_version=model_version).values_list("key", flat=True))
        if len(existing | set(tags)) > MAX_TAGS:
            raise ServiceQuotaExceededException(
                f"A model has at most {MAX_TAGS} tags.",
                resource_id=str(model_version.version),
                resource_type="MODEL",
                QuotaCode="tags-per-model",
                ServiceCode="lookoutvision",
            )
        for key, value in tags.items():
            ModelTag.objects.update_or_create(model_version=model_version, key=key, defaults={"value": value})


def model_tags_remove(*, model_version: ModelVersion, keys_: list[str]) -> None:
    ModelTag.objects.filter(model_version=model_version, key__in=keys_).delete()


# --- Model packaging ----------------------------------------------------------------------------


def packaging_job_start(
    *, project: Project, model_version: ModelVersion, user, name: str = "", description: str = "", configuration: dict
) -> PackagingJob:
    """Queue the packaging of a trained version (lookout/packaging.py); the job's name is given
    or made up from the project and version."""
    if not model_version.is_usable:
        raise ConflictException(
            f"Model version {model_version.version} is {model_version.status}: only a trained model can be packaged.",
            resource_id=str(model_version.version),
            resource_type=MODEL,
        )
    name = name or f"{project.name[:40]}-{model_version.version}-{uuid.uuid4().hex[:8]}"
    name = re.sub(r"[^a-zA-Z0-9-]", "-", name)[:64]
    try:
        with transaction.atomic():
            job = PackagingJob.objects.create(
                project=project,
                model_version=model_version,
                name=name,
                description=description,
                configuration=configuration,
                created_by=user,
                status_message="Waiting for a worker to build the package.",
            )
    except IntegrityError:
        raise ConflictException(
            f"The project {project.name} already has a model packaging job named {name}.",
            resource_id=name,
            resource_type=MODEL_PACKAGE_JOB,
        ) from None
    transaction.on_commit(lambda: run_packaging_job.delay(job.pk))
    return job

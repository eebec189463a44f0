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
import time
import uuid
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone

from console.errors import Conflict, Invalid, KenpinError, TooLarge
from engine.images import ImageError, probe_image
from lookout import keys
from lookout.errors import ConflictException, ServiceQuotaExceededException
from lookout.manifests import (
    Entry,
    ManifestError,
    file_name,
    parse_manifest,
    parse_synthesized_ref,
    read_mask,
    split_s3_uri,
)
from lookout.models import (
    IN_PROGRESS,
    AccessKey,
    DatasetJob,
    DatasetStatus,
    IdempotentRequest,
    ImageSource,
    ModelOptions,
    ModelTag,
)
from lookout.selectors import dataset_views, evaluation_manifest_lines, evaluation_result, job_problems_text
from projects.masks import binary_png
from projects.models import ApiToken, Image, Project, Split
from projects.services import (
    DuplicateImage,
    check_upload_length,
    dataset_add_image,
    dataset_delete_test,
    image_set_mask,
    images_delete,
    images_move,
    images_set_label,
)
from training.models import USABLE_STATUSES, ModelVersion

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


def _store_lines(project: Project, data: bytes) -> str:
    return default_storage.save(f"projects/{project.pk}/imports/{uuid.uuid4().hex}.manifest", ContentFile(data))


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
        images_move(project=project, image_ids=[], split=Split.TEST)  # creates the test dataset
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
            job.manifest = _store_lines(project, manifest)
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
            job.manifest = _store_lines(project, manifest)
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
        manifest=_store_lines(project, changes),
        created_by=user,
    )
    _enqueue_import(job)
    return job


def _enqueue_import(job: DatasetJob) -> None:
    from lookout.tasks import run_dataset_job

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


# --- The import itself (run by lookout.tasks.run_dataset_job) ---------------------------------------


class _Fetcher:
    """Reads the files a manifest names: from S3 (the server's AWS credentials and endpoint
    settings), or from the console's zip of images, matched by the end of their path."""

    def __init__(self, images_zip=None):
        self._s3 = None
        self.archive = None
        self.members: dict[str, zipfile.ZipInfo] = {}
        if images_zip:
            self.archive = zipfile.ZipFile(images_zip.open("rb"))
            for info in self.archive.infolist():
                parts = PurePosixPath(info.filename).parts
                if info.is_dir() or any(p.startswith((".", "__MACOSX")) for p in parts):
                    continue
                self.members[info.filename] = info

    @property
    def s3(self):
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3

    def read(self, ref: str) -> bytes:
        if self.archive is not None:
            return self._from_zip(ref)
        location = split_s3_uri(ref)
        if location is None:
            raise ManifestError(f"{ref} is not an s3:// reference (s3://bucket/key).")
        return s3_read(self.s3, *location)

    def _from_zip(self, ref: str) -> bytes:
        location = split_s3_uri(ref)
        path = PurePosixPath(location[1] if location else ref.removeprefix("file://").lstrip("/"))
        # The longest tail of the reference's path that names a file of the zip: a zip of the
        # whole bucket prefix and a zip of one flat folder both work.
        for start in range(len(path.parts)):
            tail = "/".join(path.parts[start:])
            matches = [m for m in self.members if m == tail or m.endswith("/" + tail)]
            if len(matches) == 1:
                info = self.members[matches[0]]
                check_upload_length(info.file_size)
                return self.archive.read(info)
            if len(matches) > 1 and start == len(path.parts) - 1:
                raise ManifestError(f"{len(matches)} files of the zip are named {path.name}; keep their folders.")
        raise ManifestError(f"The zip has no file {path.name}.")

    def close(self):
        if self.archive is not None:
            self.archive.close()


def s3_read(client, bucket: str, key: str) -> bytes:
    """An S3 object's bytes, refused before reading when over the upload limit."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        obj = client.get_object(Bucket=bucket, Key=key)
        check_upload_length(obj["ContentLength"])
        return obj["Body"].read()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ManifestError(
            f"s3://{bucket}/{key} cannot be read: {error.get('Code', '')} {error.get('Message', '')}".strip()
        ) from None
    except BotoCoreError as exc:
        raise ManifestError(f"s3://{bucket}/{key} cannot be read: {exc}") from None


def _find_existing(project: Project, entry: Entry) -> Image | None:
    source = ImageSource.objects.filter(project=project, source_ref=entry.source_ref).select_related("image").first()
    if source:
        return source.image
    image_id = parse_synthesized_ref(entry.source_ref, project.name)
    return Image.objects.filter(project=project, pk=image_id).first() if image_id else None


def _mask_bytes(fetcher: _Fetcher, entry: Entry, *, width: int, height: int) -> bytes | None:
    if not entry.mask_ref:
        return None
    indices = read_mask(fetcher.read(entry.mask_ref), entry, width=width, height=height)
    if indices is None:
        return None
    # Anomaly classes: once the segmentation services store class-index masks, entry.classes
    # (the name and colour of each index) become the project's classes here; until then the
    # mask is stored as Kenpin's one-class (black and white) mask.
    return binary_png(indices)


def _apply(job: DatasetJob, fetcher: _Fetcher, entry: Entry) -> str:
    """Import or update one line's image; "added" or "updated". ManifestError/KenpinError say why not."""
    existing = _find_existing(job.project, entry)
    if existing is not None:
        mask = _mask_bytes(fetcher, entry, width=existing.width, height=existing.height)
        with transaction.atomic():
            if entry.label is not None:
                images_set_label(project=job.project, image_ids=[existing.pk], label=entry.label)
            images_move(project=job.project, image_ids=[existing.pk], split=job.split)
            if mask is not None:
                image_set_mask(image=Image.objects.get(pk=existing.pk), mask=mask)
        return "updated"
    data = fetcher.read(entry.source_ref)
    mask = None
    if entry.mask_ref:
        try:
            info = probe_image(data)
        except ImageError as exc:
            raise ManifestError(exc.message) from None
        mask = _mask_bytes(fetcher, entry, width=info.width, height=info.height)
    try:
        image = dataset_add_image(
            project=job.project,
            data=data,
            name=file_name(entry.source_ref),
            label=entry.label,
            split=job.split,
            user=job.created_by,
            mask=mask,
        )
    except DuplicateImage as exc:
        raise ManifestError(
            f"The same image is already in the project (as “{exc.existing}”); it was not added again."
        ) from None
    ImageSource.objects.create(
        image=image,
        project=job.project,
        source_ref=entry.source_ref[:1024],
        mask_ref=(entry.mask_ref or "")[:1024],
        label_attribute=entry.label_attribute[:128],
    )
    return "added"


def dataset_job_run(*, job_id: int) -> None:
    """Import a claimed dataset job's lines; every outcome is written to its row.

    A line that cannot be imported (bad JSON, an image that cannot be read, a mask of the wrong
    size or colours) becomes a problem with its line number, and the other lines go on. Images
    already in the project stay; the job fails as a whole only when no line could be used.
    """
    now = timezone.now()
    claimed = DatasetJob.objects.filter(pk=job_id, status__in=IN_PROGRESS, started_at__isnull=True).update(
        started_at=now, heartbeat_at=now, status_message="Importing."
    )
    if not claimed:
        return
    job = DatasetJob.objects.select_related("project", "created_by").get(pk=job_id)
    creating = job.kind == DatasetJob.Kind.CREATE
    fetcher = None
    try:
        fetcher = _Fetcher(job.images_zip if job.images_zip else None)
        if not job.manifest and job.source:
            bucket, key = split_s3_uri(job.source)
            try:
                data = s3_read(fetcher.s3, bucket, key)
            except (ManifestError, TooLarge) as exc:
                _finish(job, failed=True, message=f"The manifest {job.source} could not be read: {exc}")
                return
            job.manifest = _store_lines(job.project, data)
            job.save(update_fields=["manifest"])
        with job.manifest.open("rb") as f:
            entries, problems = parse_manifest(f.read())
        problems = [{"line": n, "source_ref": ref, "message": m} for n, ref, m in problems]
        DatasetJob.objects.filter(pk=job.pk).update(total_lines=len(entries) + len(problems), problems=problems)
        unreadable = len(problems)  # lines that were not even JSON: done already
        added = updated = 0
        last_write = 0.0
        for done, entry in enumerate(entries, start=1):
            try:
                outcome = _apply(job, fetcher, entry)
                added += outcome == "added"
                updated += outcome == "updated"
            except (ManifestError, KenpinError) as exc:
                problems.append({"line": entry.line, "source_ref": entry.source_ref, "message": exc.message})
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                problems.append(
                    {"line": entry.line, "source_ref": entry.source_ref, "message": f"The file is damaged ({exc})."}
                )
            if time.monotonic() - last_write > 0.5 or done == len(entries):
                last_write = time.monotonic()
                DatasetJob.objects.filter(pk=job.pk).update(
                    done_lines=unreadable + done,
                    added=added,
                    updated=updated,
                    problems=sorted(problems, key=lambda p: p["line"]),
                    heartbeat_at=timezone.now(),
                )
        job.refresh_from_db()
        job.problems = sorted(problems, key=lambda p: p["line"])
        job.added, job.updated = added, updated
        job.done_lines = job.total_lines
        used = added + updated
        if problems:
            summary = (
                f"{used} of {job.total_lines} lines imported; {len(problems)} could not be: {job_problems_text(job)}"
            )
        else:
            summary = f"{used} lines imported ({added} new images, {updated} updated)."
        _finish(job, failed=used == 0 and bool(problems), message=summary if creating or problems else "")
    except Exception as exc:
        logger.exception("dataset job %s failed", job_id)
        _finish(
            job,
            failed=True,
            message=f"The import failed because of an internal error ({type(exc).__name__}: {exc}). Images "
            "already imported stay; run it again, and report it with the worker's log if it fails again.",
        )
    finally:
        if fetcher is not None:
            fetcher.close()
        close_old_connections()


def _finish(job: DatasetJob, *, failed: bool, message: str) -> None:
    creating = job.kind == DatasetJob.Kind.CREATE
    if failed:
        status = DatasetStatus.CREATE_FAILED if creating else DatasetStatus.UPDATE_FAILED_ROLLBACK_COMPLETE
    else:
        status = DatasetStatus.CREATE_COMPLETE if creating else DatasetStatus.UPDATE_COMPLETE
    DatasetJob.objects.filter(pk=job.pk).update(
        status=status,
        status_message=message,
        ended_at=timezone.now(),
        problems=job.problems,
        added=job.added,
        updated=job.updated,
        done_lines=job.total_lines,
    )


def dataset_jobs_sweep_stale() -> int:
    """Declare failed every running import whose worker stopped beating (killed, out of memory)."""
    cutoff = timezone.now() - timedelta(seconds=settings.KENPIN_STALE_AFTER)
    stale = DatasetJob.objects.filter(status__in=IN_PROGRESS, started_at__isnull=False, heartbeat_at__lt=cutoff)
    message = (
        "The import stopped: its worker stopped responding (stopped, killed or out of memory). Images "
        "already imported stay; run it again."
    )
    return stale.filter(kind=DatasetJob.Kind.CREATE).update(
        status=DatasetStatus.CREATE_FAILED, status_message=message, ended_at=timezone.now()
    ) + stale.filter(kind=DatasetJob.Kind.UPDATE).update(
        status=DatasetStatus.UPDATE_FAILED_ROLLBACK_COMPLETE, status_message=message, ended_at=timezone.now()
    )


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


# --- CreateModel's OutputConfig: evaluation results written to S3 ----------------------------------


def evaluation_outputs_write() -> int:
    """Write the evaluation results of every newly trained model whose CreateModel named an
    OutputConfig (run every 30 s by the scheduler); returns how many were written.

    Each version is claimed with a conditional update, so two schedulers never write it twice.
    A version whose training failed has nothing to write and is left alone.
    """
    written = 0
    pending = ModelOptions.objects.filter(
        evaluation=ModelOptions.Evaluation.PENDING, model_version__status__in=USABLE_STATUSES
    ).values_list("pk", flat=True)
    for pk in list(pending):
        if not ModelOptions.objects.filter(pk=pk, evaluation=ModelOptions.Evaluation.PENDING).update(
            evaluation=ModelOptions.Evaluation.WRITING
        ):
            continue
        options = ModelOptions.objects.select_related("model_version__project").get(pk=pk)
        try:
            manifest_key, result_key = _write_evaluation(options)
        except Exception as exc:  # S3 unreachable, no credentials, no such bucket: said on the model
            logger.warning("evaluation results of model version %s not written: %s", options.model_version_id, exc)
            ModelOptions.objects.filter(pk=pk).update(
                evaluation=ModelOptions.Evaluation.FAILED,
                evaluation_message=f"The evaluation results could not be written to s3://{options.output_bucket}/"
                f"{options.output_prefix} ({type(exc).__name__}: {exc}).",
            )
            continue
        ModelOptions.objects.filter(pk=pk).update(
            evaluation=ModelOptions.Evaluation.WRITTEN,
            evaluation_manifest_key=manifest_key,
            evaluation_result_key=result_key,
            evaluation_written_at=timezone.now(),
        )
        written += 1
    return written


def _write_evaluation(options: ModelOptions) -> tuple[str, str]:
    import boto3

    mv = options.model_version
    prefix = options.output_prefix
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    base = f"{prefix}{mv.project.name}/model-{mv.version}"
    manifest_key, result_key = f"{base}/evaluation-manifest.jsonl", f"{base}/evaluation-result.json"
    s3 = boto3.client("s3")
    lines = evaluation_manifest_lines(model_version=mv)
    s3.put_object(Bucket=options.output_bucket, Key=manifest_key, Body=("\n".join(lines) + "\n").encode())
    result = json.dumps(evaluation_result(model_version=mv), indent=2).encode()
    s3.put_object(Bucket=options.output_bucket, Key=result_key, Body=result)
    return manifest_key, result_key

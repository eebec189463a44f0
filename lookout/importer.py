"""The worker's side of dataset jobs (lookout.tasks.run_dataset_job): Ground Truth manifest
lines imported into a project's dataset, each line on its own, with progress and problems
written to the job's row."""

from __future__ import annotations

import logging
import time
import uuid
import zipfile
from datetime import timedelta
from pathlib import PurePosixPath

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import close_old_connections, transaction
from django.utils import timezone

from core.errors import KenpinError, TooLarge
from core.uploads import check_upload_length
from engine.images import ImageError, probe_image
from lookout.manifests import (
    Entry,
    ManifestError,
    file_name,
    parse_manifest,
    parse_synthesized_ref,
    read_mask,
    split_s3_uri,
)
from lookout.models import IN_PROGRESS, DatasetJob, DatasetStatus, ImageSource
from lookout.selectors import job_problems_text
from projects.classes import anomaly_classes_ensure, image_set_mask
from projects.images import DuplicateImage, dataset_add_image, images_move, images_set_label
from projects.masks import binary_png, color_png
from projects.models import IMPLICIT_CLASS_NAME, AnomalyClass, Image, Project
from projects.selectors import mask_classes

logger = logging.getLogger(__name__)


def manifest_store(project: Project, data: bytes) -> str:
    """Keep manifest lines as a file of the project's, for a worker to read through storage."""
    return default_storage.save(f"projects/{project.pk}/imports/{uuid.uuid4().hex}.manifest", ContentFile(data))


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


def _mask_bytes(fetcher: _Fetcher, entry: Entry, project: Project, *, width: int, height: int) -> bytes | None:
    if not entry.mask_ref:
        return None
    indices = read_mask(fetcher.read(entry.mask_ref), entry, width=width, height=height)
    if indices is None:
        return None
    if _implicit_only(entry, project):
        return binary_png(indices)
    # The colour map's classes become the project's (matched by name, created when missing), and
    # the mask is redrawn in their colours for the services to read like any colour mask.
    classes = anomaly_classes_ensure(project=project, wanted=[(c.name, c.color) for c in entry.classes])
    lut = np.zeros(256, dtype=np.uint8)
    for k, anomaly_class in enumerate(classes, start=1):
        lut[k] = anomaly_class.index
    return color_png(lut[indices], mask_classes(project=project))


def _implicit_only(entry: Entry, project: Project) -> bool:
    """A one-class map naming "anomaly" (what classification exports write) in a project without
    classes: the mask keeps the project's implicit class, and no class is created."""
    names = [c.name.lower() for c in entry.classes]
    return names in ([], [IMPLICIT_CLASS_NAME]) and not AnomalyClass.objects.filter(project=project).exists()


def _apply(job: DatasetJob, fetcher: _Fetcher, entry: Entry) -> str:
    """Import or update one line's image; "added" or "updated". ManifestError/KenpinError say why not."""
    existing = _find_existing(job.project, entry)
    if existing is not None:
        mask = _mask_bytes(fetcher, entry, job.project, width=existing.width, height=existing.height)
        with transaction.atomic():
            if entry.label is not None:
                images_set_label(project=job.project, image_ids=[existing.pk], label=entry.label, user=job.created_by)
            images_move(project=job.project, image_ids=[existing.pk], split=job.split, user=job.created_by)
            if mask is not None:
                image_set_mask(image=Image.objects.get(pk=existing.pk), mask=mask, user=job.created_by)
        return "updated"
    data = fetcher.read(entry.source_ref)
    mask = None
    if entry.mask_ref:
        try:
            info = probe_image(data)
        except ImageError as exc:
            raise ManifestError(exc.message) from None
        mask = _mask_bytes(fetcher, entry, job.project, width=info.width, height=info.height)
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
            job.manifest = manifest_store(job.project, data)
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

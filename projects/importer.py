"""The worker's side of a zip import (projects.tasks.import_zip): claim the queued row, read the
zip through default_storage, add its images one by one, and write progress, the images added and
each entry refused (by its name in the zip) to the row."""

import logging
import time
import zipfile
from datetime import timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from core.errors import KenpinError
from core.uploads import check_upload_length
from projects.activity import activity_record, plural
from projects.images import dataset_add_image
from projects.models import Action, ImportStatus, Label, Split, ZipImport
from projects.zipcheck import zip_open, zip_plan

logger = logging.getLogger(__name__)

PROGRESS_SECONDS = 0.5  # how often progress (and the heartbeat) is written while importing


class ImportGone(Exception):
    """The row left IMPORTING while the worker was busy: the project was deleted, or the sweep
    declared this worker dead."""


def _is_stale(heartbeat_at, now) -> bool:
    return heartbeat_at is None or heartbeat_at < now - timedelta(seconds=settings.KENPIN_STALE_AFTER)


def _claim(import_id: int) -> bool:
    """Take the queued row for this worker; False when there is nothing to do.

    A conditional UPDATE is race-free: of two deliveries of the same task, one claims the row.
    The other decides from the row: an import with a fresh heartbeat runs elsewhere; one with a
    stale heartbeat lost its worker and is reported as failed, never run again (its images
    would be reported as duplicates, hiding what the first run did).
    """
    now = timezone.now()
    claimed = ZipImport.objects.filter(pk=import_id, status=ImportStatus.QUEUED).update(
        status=ImportStatus.IMPORTING, started_at=now, heartbeat_at=now, status_message="Importing."
    )
    if claimed:
        return True
    row = ZipImport.objects.filter(pk=import_id).first()
    if row and row.status == ImportStatus.IMPORTING and _is_stale(row.heartbeat_at, now):
        _fail_stale(ZipImport.objects.filter(pk=row.pk, heartbeat_at=row.heartbeat_at))
    return False


def zip_import_run(*, import_id: int) -> None:
    """Import a queued zip; every outcome is written to its row, and the stored zip is deleted.

    An entry that cannot be added (not an image, damaged, too large, already in the project, a
    mask of the wrong size) is reported by its name in the zip, and the others go on. The
    import fails as a whole only when the zip itself cannot be read or Kenpin fails; images
    added until then stay.
    """
    if not _claim(import_id):
        return
    job = ZipImport.objects.select_related("project", "created_by").get(pk=import_id)
    counts = dict.fromkeys(Label.values, 0)  # plain strings: the rows' labels
    rejected: list[dict] = []
    done = 0

    def write(**extra) -> None:
        updated = ZipImport.objects.filter(pk=job.pk, status=ImportStatus.IMPORTING).update(
            done=done,
            added_normal=counts["normal"],
            added_anomaly=counts["anomaly"],
            added_unlabeled=counts["unlabeled"],
            rejected=rejected,
            heartbeat_at=timezone.now(),
            **extra,
        )
        if not updated:
            raise ImportGone

    try:
        try:
            handle = job.file.open("rb")
        except FileNotFoundError:
            _finish(job, status=ImportStatus.FAILED, message="The stored zip is gone; upload it again.")
            return
        with handle, zip_open(handle) as archive:
            plan = zip_plan(archive)
            rejected = [{"name": name, "message": message} for name, message in plan.rejected]
            write(total=len(plan.images))
            last_write = time.monotonic()
            for entry, label in plan.images:
                try:
                    check_upload_length(entry.file_size)
                    mask_entry = plan.masks.get(PurePosixPath(entry.filename).stem) if label == Label.ANOMALY else None
                    image = dataset_add_image(
                        project=job.project,
                        data=archive.read(entry),
                        name=entry.filename,
                        label=label,
                        split=job.split,
                        user=job.created_by,
                        mask=archive.read(mask_entry) if mask_entry else None,
                        record=False,  # the import is one entry of the activity log
                    )
                    counts[image.label] += 1
                except KenpinError as exc:
                    rejected.append({"name": entry.filename, "message": exc.message})
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    rejected.append({"name": entry.filename, "message": f"The file is damaged inside the zip ({exc})."})
                done += 1
                if time.monotonic() - last_write > PROGRESS_SECONDS:
                    write()
                    last_write = time.monotonic()
        write()
        added = sum(counts.values())
        message = f"{added} of {len(plan.images)} files of the zip added."
        if rejected:
            message += f" {len(rejected)} files were not: each is listed with the reason."
        _record(job, added=added, refused=len(rejected))
        _finish(job, status=ImportStatus.COMPLETE, message=message)
    except ImportGone:
        logger.info("zip import %s stopped: its row is no longer importing", import_id)
    except KenpinError as exc:  # the stored zip no longer opens or meets the limits
        _finish(job, status=ImportStatus.FAILED, message=exc.message)
    except Exception as exc:
        logger.exception("zip import %s failed", import_id)
        if sum(counts.values()):
            _record(job, added=sum(counts.values()), refused=len(rejected), failed=True)
        _finish(
            job,
            status=ImportStatus.FAILED,
            message=f"The import failed because of an internal error ({type(exc).__name__}). The {done} "
            "images handled until then stay; import the zip again (images already added are reported as "
            "such, not added twice), and report it with the worker's log if it fails again.",
        )


def _record(job: ZipImport, *, added: int, refused: int, failed: bool = False) -> None:
    activity_record(
        project=job.project,
        user=job.created_by,
        action=Action.IMAGES_IMPORTED,
        summary=f"imported {plural(added, 'image')} from {job.original_name or 'a zip'} into the "
        f"{'test' if job.split == Split.TEST else 'training'} dataset"
        + (f" ({refused} refused)" if refused else "")
        + (" before the import failed" if failed else ""),
        detail={"import": job.pk, "added": added, "refused": refused, "split": job.split},
    )


def _finish(job: ZipImport, *, status: str, message: str) -> None:
    ZipImport.objects.filter(pk=job.pk, status=ImportStatus.IMPORTING).update(
        status=status, status_message=message, ended_at=timezone.now(), file=""
    )
    if job.file:
        default_storage.delete(job.file.name)


STALE_MESSAGE = (
    "The import stopped: its worker has not reported for {minutes} minutes (stopped, killed or out "
    "of memory). The images added until then stay; import the zip again to add the rest (images "
    "already in the project are reported as such, not added twice)."
)


def _fail_stale(rows) -> int:
    """Mark `rows` (still IMPORTING) failed and delete their stored zips; returns how many."""
    minutes = max(1, round(settings.KENPIN_STALE_AFTER / 60))
    failed = 0
    for row in rows.filter(status=ImportStatus.IMPORTING):
        failed += ZipImport.objects.filter(
            pk=row.pk, status=ImportStatus.IMPORTING, heartbeat_at=row.heartbeat_at
        ).update(
            status=ImportStatus.FAILED,
            status_message=STALE_MESSAGE.format(minutes=minutes),
            ended_at=timezone.now(),
            file="",
        )
        if row.file:
            default_storage.delete(row.file.name)
    return failed


def zip_imports_sweep_stale() -> int:
    """Declare failed every running import whose worker stopped beating."""
    cutoff = timezone.now() - timedelta(seconds=settings.KENPIN_STALE_AFTER)
    return _fail_stale(ZipImport.objects.filter(status=ImportStatus.IMPORTING, heartbeat_at__lt=cutoff))


def zip_imports_queued_too_long() -> list[int]:
    """Imports still queued well after they were created: their message may be lost (a broker
    restarted without persistence); the sweep sends them again, and claiming makes a copy harmless."""
    cutoff = timezone.now() - timedelta(seconds=settings.KENPIN_STALE_AFTER)
    return list(
        ZipImport.objects.filter(status=ImportStatus.QUEUED, created_at__lt=cutoff).values_list("pk", flat=True)
    )

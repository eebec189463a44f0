"""What a hosted model has been seeing: every detect call is recorded here by the web process
(inference.detection), and the operations view reads the records back (inference.selectors).

A record costs one row; only the latest anomalous calls of a version also keep a small preview
of the photo and its mask, so that storage stays bounded however busy the line: the latest
KEEP_PHOTOS always, at most TRIM_PHOTOS_AT (older photos are forgotten in batches).
Records older than KENPIN_DETECTION_DAYS are pruned by the scheduler (detection_records_prune).
"""

import base64
import binascii
import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.utils import timezone

from core.files import storage_delete_on_commit
from engine.images import ImageError, thumbnail_jpeg
from inference.models import DetectionRecord
from projects.models import project_files_prefix
from training.models import ModelVersion

logger = logging.getLogger(__name__)

KEEP_PHOTOS = 12  # latest anomalous photos always kept per version, with their masks
# Once more than this many records of a version keep their photo, all but the latest KEEP_PHOTOS
# forget theirs: a batch every KEEP_PHOTOS anomalous calls instead of an UPDATE and two file
# deletions on every one: 2.0 -> 1.6 ms of web CPU per anomalous call (docs/benchmarks.md).
TRIM_PHOTOS_AT = 2 * KEEP_PHOTOS
PRUNE_BATCH = 5000  # rows deleted per statement, so that pruning never holds long locks


def detection_record(*, model_version: ModelVersion, detection, latency_ms: float, data: bytes) -> None:
    """Record one answered detect call (an inference.detection.Detection).

    Never fails the call it records: the answer matters more than its statistics, so a database
    or storage error is logged and the call is answered all the same.
    """
    photo = mask = ""
    try:
        if detection.is_anomalous:
            prefix = f"{project_files_prefix(model_version.project_id)}detections/{model_version.pk}/{uuid.uuid4().hex}"
            # The worker's thumbnail when it made one (it has the photo decoded already).
            thumbnail = base64.b64decode(detection.thumbnail_jpeg) if detection.thumbnail_jpeg else thumbnail_jpeg(data)
            photo = default_storage.save(f"{prefix}.jpg", ContentFile(thumbnail))
            mask = default_storage.save(f"{prefix}-mask.png", ContentFile(base64.b64decode(detection.mask_png)))
        with transaction.atomic():
            DetectionRecord.objects.create(
                model_version=model_version,
                at=timezone.now(),
                is_anomalous=detection.is_anomalous,
                score=detection.score,
                anomalous_fraction=detection.anomalous_fraction,
                latency_ms=round(latency_ms, 2),
                inference_ms=detection.inference_ms,
                unlike=detection.unlike,
                photo=photo,
                mask=mask,
            )
            if photo:
                _forget_older_photos(model_version)
    except (DatabaseError, OSError, ImageError, binascii.Error):
        logger.warning("detect call of model version %s answered but not recorded", model_version.pk, exc_info=True)
        for name in (photo, mask):
            if name:
                default_storage.delete(name)


def _forget_older_photos(model_version: ModelVersion) -> None:
    """Once more than TRIM_PHOTOS_AT records keep their photo, keep only the latest KEEP_PHOTOS
    photos; older records keep their numbers."""
    with_photo = DetectionRecord.objects.filter(model_version=model_version).exclude(photo="")
    if not with_photo.order_by()[TRIM_PHOTOS_AT:].exists():
        return
    older = list(with_photo.order_by("-at", "-id").values_list("pk", "photo", "mask")[KEEP_PHOTOS:])
    if older:
        DetectionRecord.objects.filter(pk__in=[pk for pk, _, _ in older]).update(photo="", mask="")
        storage_delete_on_commit([name for _, photo, mask in older for name in (photo, mask) if name])


def detection_records_prune(*, now=None) -> int:
    """Delete records (and their files) older than KENPIN_DETECTION_DAYS; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.KENPIN_DETECTION_DAYS)
    deleted = 0
    while True:
        batch = list(DetectionRecord.objects.filter(at__lt=cutoff).values_list("pk", "photo", "mask")[:PRUNE_BATCH])
        if not batch:
            return deleted
        with transaction.atomic():
            DetectionRecord.objects.filter(pk__in=[pk for pk, _, _ in batch]).delete()
            storage_delete_on_commit([name for _, photo, mask in batch for name in (photo, mask) if name])
        deleted += len(batch)
